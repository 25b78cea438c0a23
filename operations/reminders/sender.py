"""Sending due reminders, each exactly once (R4 `communication.html`).

Each round looks for `active` reminder and notice (`notices.py`) CommunicationRequests
whose `occurrenceDateTime` has come and, for each one:

1. if its window has closed (a reminder's when its Appointment is no longer `booked` or has
   started; a notice's a day after it was due; a waitlist offer's message's when the offer
   is no longer held), records a `not-done` Communication
   (`statusReason` says why) and revokes it;
2. otherwise records a Communication (id `communication_id(request)`, deterministic per
   request and time) `in-progress`, `basedOn` the request, before sending;
3. sends it: email (`outbound.send_mail`, Message-ID `{communication id}@fhir-server`) or
   SMS (`outbound.send_sms`, idempotency key = the Communication id) to the recipient's
   best-ranked address for the request's medium;
4. on success writes, in one atomic write, the Communication `completed` (with `sent`) and
   the request `completed`; a temporary failure is retried with backoff (RETRY_FIRST_S
   doubling up to RETRY_MAX_S, record RETRY) inside the window; a permanent one (no address,
   gateway 4xx, recipient refused) ends as `not-done` with the reason, the request revoked.

A Communication already `completed` means the message went out: the request is completed
without sending again. Only a crash between sending and step 4 repeats a message, with the
same Message-ID / idempotency key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import httpx
import orjson

from fhir_server.metrics import REMINDER_LATENESS
from fhir_server.repository import Repository
from fhir_server.search.query import (
    DateCondition,
    RangeValue,
    StoreQuery,
    TokenCondition,
    TokenValue,
)
from operations.leased import Holding
from operations.outbound import SendFailed, send_mail, send_sms
from operations.reminders.notices import is_offer
from operations.reminders.requests import MEDIUM_SYSTEM, address_for
from operations.scheduling.appointments import SchedulingConfig
from operations.scheduling.claims import hold_expiry
from resources.fhir_dates import US, format_instant, now_us, parse_instant
from resources.index_values import DATE_MIN

__all__ = ["RETRY", "ReminderSender", "communication_id"]

RETRY = "reminder-retry"
"""Record kind, keyed by CommunicationRequest id: `{attempts, at}` (the next try, µs UTC)."""
RETRY_FIRST_S = 15.0
RETRY_MAX_S = 120.0
TIMEOUT_S = 20.0
PAGE = 200
NOTICE_WINDOW_US = 86_400 * US
"""How long a confirmation or change notice may still be sent after it was due."""


def communication_id(request: dict[str, Any]) -> str:
    """The id of the Communication recording a reminder request's delivery at its time."""
    key = f"{request['id']}|{request.get('occurrenceDateTime')}"
    return f"reminder-sent-{hashlib.sha256(key.encode()).hexdigest()[:36]}"


def _is_notice(request: dict[str, Any]) -> bool:
    return any(
        c.get("code") == "notification"
        for category in request.get("category") or []
        for c in category.get("coding") or []
    )


def _subject(request: dict[str, Any]) -> str:
    if is_offer(request):
        return "A time has become free for you"
    return "Appointment notice" if _is_notice(request) else "Appointment reminder"


def _medium(request: dict[str, Any]) -> str:
    for medium in request.get("medium") or []:
        for coding in medium.get("coding") or []:
            if coding.get("system") == MEDIUM_SYSTEM:
                return str(coding.get("code"))
    return ""


class ReminderSender:
    """Sends due reminders (module docstring).

    Args:
        repository: a job repository.
        client: the HTTP client of the SMS gateway.
        clock: the current time, µs UTC.
    """

    def __init__(
        self, repository: Repository, client: httpx.AsyncClient, clock: Callable[[], int] = now_us
    ) -> None:
        self.repository = repository
        self.client = client
        self.clock = clock
        self.settings = repository.settings

    async def round(self, holding: Holding | None = None) -> int:
        """Send every reminder due now, a page at a time, while `holding` holds; return how
        many were sent."""
        now = self.clock()
        due = (
            TokenCondition("status", (TokenValue("*", "active"),)),
            TokenCondition(
                "category", (TokenValue("*", "reminder"), TokenValue("*", "notification"))
            ),
            DateCondition("occurrence", (RangeValue("le", DATE_MIN, now + 1),)),
        )
        seen: set[str] = set()  # handled this round (those left active wait for a retry)
        sent = 0
        while holding is None or holding.held:
            query = StoreQuery("CommunicationRequest", due, count=PAGE + len(seen))
            page = await self.repository.lookup.search(query)
            waiting = [r for r in page.resources if r.content is not None and r.id not in seen]
            if not waiting:
                return sent
            for stored in waiting:
                assert stored.content is not None
                seen.add(stored.id)
                sent += await self.send(orjson.loads(stored.content))
        return sent

    async def send(self, request: dict[str, Any]) -> int:
        """Deliver one due request (module docstring); 1 if a message went out now."""
        repo, now = self.repository, self.clock()
        retry = await repo.records.get_record(RETRY, request["id"])
        if retry and int(retry["at"]) > now:
            return 0
        comm_id = communication_id(request)
        stored = await repo.lookup.read("Communication", comm_id)
        comm = orjson.loads(stored.content) if stored and stored.content else None
        if comm is not None and comm.get("status") == "completed":
            await self._finish(request, comm, "completed", None)
            return 0
        reason = await self._why_not(request, now)
        if reason is not None:
            await self._finish(
                request, comm or self._communication(request, comm_id), "not-done", reason
            )
            return 0
        if comm is None:
            comm = self._communication(request, comm_id)
            await repo.update("Communication", comm_id, comm)
        try:
            await self._deliver(request, comm_id)
        except SendFailed as exc:
            if exc.permanent:
                await self._finish(request, comm, "not-done", str(exc))
            else:
                await self._later(request, retry, str(exc))
            return 0
        await self._finish(request, comm, "completed", None)
        await repo.records.delete_record(RETRY, request["id"])
        due = parse_instant(str(request.get("occurrenceDateTime")))
        REMINDER_LATENESS.observe(max(0, self.clock() - due) / 1_000_000)
        return 1

    async def _why_not(self, request: dict[str, Any], now: int) -> str | None:
        """Why the request's window is closed, or None: a reminder's ends when its
        Appointment is no longer booked or starts; a notice's NOTICE_WINDOW_US after it was
        due."""
        based = (request.get("basedOn") or [{}])[0].get("reference", "")
        pair = self.repository.reference(str(based)).pair
        if is_offer(request):
            found = await self.repository.lookup.read_json([pair]) if pair else {}
            offer = found.get(pair) if pair else None
            config = SchedulingConfig.of(self.repository)
            expires = hold_expiry(offer, config.hold_url) if offer is not None else None
            if offer is None or offer.get("status") != "pending" or (expires or 0) <= now:
                return "The offer ended before it could be sent"
            return None
        if _is_notice(request):
            due = parse_instant(str(request.get("occurrenceDateTime")))
            return "The notice could not be sent in time" if now > due + NOTICE_WINDOW_US else None
        found = await self.repository.lookup.read_json([pair]) if pair else {}
        appointment = found.get(pair) if pair else None
        if appointment is None or appointment.get("status") != "booked":
            return "The appointment is no longer booked"
        if parse_instant(str(appointment["start"])) <= now:
            return "The appointment started before the reminder could be sent"
        return None

    def _communication(self, request: dict[str, Any], comm_id: str) -> dict[str, Any]:
        comm = {
            "resourceType": "Communication",
            "id": comm_id,
            "status": "in-progress",
            "basedOn": [{"reference": f"CommunicationRequest/{request['id']}"}],
            "category": request.get("category") or [],
            "medium": request.get("medium") or [],
            "subject": request.get("subject"),
            "recipient": request.get("recipient") or [],
            "about": request.get("basedOn") or [],
            "payload": request.get("payload") or [],
        }
        return {k: v for k, v in comm.items() if v not in (None, [])}

    async def _deliver(self, request: dict[str, Any], comm_id: str) -> None:
        recipient = ((request.get("recipient") or [{}])[0]).get("reference", "")
        pair = self.repository.reference(str(recipient)).pair
        found = await self.repository.lookup.read_json([pair]) if pair else {}
        person = found.get(pair) if pair else None
        medium = _medium(request)
        address = address_for(person, medium) if person else None
        if address is None:
            raise SendFailed(f"{recipient} has no address for {medium}", permanent=True)
        text = " ".join(str(p.get("contentString") or "") for p in request.get("payload") or [])
        if medium == "EMAILWRIT":
            await send_mail(
                smtp_url=self.settings.smtp_url,
                sender=self.settings.mail_from,
                to=address,
                subject=_subject(request),
                lines=[text],
                message_id=f"{comm_id}@fhir-server",
                timeout_s=TIMEOUT_S,
            )
        else:
            await send_sms(
                self.client,
                url=self.settings.sms_url,
                account=self.settings.sms_account,
                token=self.settings.sms_token,
                sender=self.settings.sms_from,
                to=address,
                body=text,
                idempotency_key=comm_id,
                timeout_s=TIMEOUT_S,
            )

    async def _finish(
        self, request: dict[str, Any], comm: dict[str, Any], status: str, reason: str | None
    ) -> None:
        """The Communication `completed` (sent now) or `not-done` (with the reason) and the
        request `completed` or `revoked`, in one atomic write."""
        repo = self.repository
        done = {**comm, "status": status}
        if status == "completed":
            done.setdefault("sent", format_instant(self.clock()))
        else:
            done["statusReason"] = {"text": reason}
        closed = {**request, "status": "completed" if status == "completed" else "revoked"}
        writes = [
            await repo.prepare_update("Communication", done["id"], done),
            await repo.prepare_update("CommunicationRequest", closed["id"], closed),
        ]
        await repo.apply(writes)

    async def _later(
        self, request: dict[str, Any], retry: dict[str, Any] | None, reason: str
    ) -> None:
        attempts = int((retry or {}).get("attempts", 0)) + 1
        delay = min(RETRY_FIRST_S * 2 ** (attempts - 1), RETRY_MAX_S)
        doc = {"attempts": attempts, "at": self.clock() + int(delay * US), "reason": reason}
        await self.repository.records.put_record(RETRY, request["id"], doc)
