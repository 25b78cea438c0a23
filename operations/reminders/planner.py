"""Keeping each Appointment's reminders in step with it, from the event log (ARCHITECTURE.md
"Events and background work"): whatever path booked, moved or cancelled an Appointment, its
event reaches the planner, which makes the CommunicationRequests (`requests.py`) what they
should be now.

For an Appointment that is `booked` with a `start`, one reminder per Patient participant
with a usable telecom on a channel the server sends on (email with `FHIR_SERVER_SMTP_URL`,
SMS with `FHIR_SERVER_SMS_URL`; neither: no reminders at all) and per offset is `active`
at start - offset; an offset whose time had passed when the Appointment was booked or moved
is skipped (booked too late for it); one that came due while the planner was down is
planned all the same and sent late. A moved Appointment's reminders are re-timed (active
again, even if the earlier time's reminder was sent); a cancelled, no-longer-booked or
deleted one's active reminders are `revoked`. Requests get deterministic ids, so planning
again (after a crash, a replay of the log) changes nothing.
The cursor (record CURSOR) moves past events once planned; it starts at the end of the log
when a server first starts with reminders (`start`; Appointments booked before get none).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from fhir_server.repository import Repository
from fhir_server.search.query import ReferenceCondition, ReferenceValue, StoreQuery
from operations.reminders.notices import plan_notices
from operations.reminders.requests import (
    OFFSET_SYSTEM,
    channels_of,
    medium_for,
    parse_offsets,
    reminder_id,
    reminder_request,
)
from operations.reminders.text import appointment_zone, describe
from operations.scheduling.appointments import Participants
from resources.fhir_dates import format_instant, now_us, parse_instant

__all__ = ["CURSOR", "ReminderPlanner"]

CURSOR = ("reminder-planner", "cursor")
"""The record `(kind, key)` holding the planner's place in the event log: `{cursor}`."""
BATCH = 500
KEPT = ("active", "completed")
"""Statuses of a reminder at the wanted time that planning leaves alone."""


def _same(old: dict[str, Any], new: dict[str, Any]) -> bool:
    return old.get("occurrenceDateTime") == new.get("occurrenceDateTime")


def _is_reminder(request: dict[str, Any]) -> bool:
    """A reminder (it names its offset), not a notice."""
    return any(i.get("system") == OFFSET_SYSTEM for i in request.get("identifier") or [])


class ReminderPlanner:
    """Plans reminders from the event log (module docstring).

    Args:
        repository: a job repository.
        clock: the current time, µs UTC.

    Raises:
        ValueError: (at construction) `reminder_offsets` is not a list of ISO 8601 durations.
    """

    def __init__(self, repository: Repository, clock: Callable[[], int] = now_us) -> None:
        self.repository = repository
        self.clock = clock
        self.offsets = parse_offsets(repository.settings.reminder_offsets)

    async def start(self) -> dict[str, int]:
        """The cursor, started at the end of the event log if there is none yet (a server
        calls this before it serves, so no booking made after the start is missed)."""
        lookup, records = self.repository.lookup, self.repository.records
        await lookup.seal_events()
        state = await records.get_record(*CURSOR)
        if state is None:
            state = {"cursor": await lookup.latest_event()}
            await records.put_record(*CURSOR, state)
        return state

    async def round(self) -> int:
        """Plan the Appointments of the events since the cursor; return how many."""
        lookup, records = self.repository.lookup, self.repository.records
        state = await self.start()
        events = await lookup.events_after(int(state["cursor"]), BATCH)
        appointments = [e.version for e in events if e.version.resource_type == "Appointment"]
        for version in appointments:
            await plan_notices(self.repository, version, self.clock())
        ids = list(dict.fromkeys(v.id for v in appointments))
        for appointment_id in ids:
            await self.plan(appointment_id)
        if events:
            await records.put_record(*CURSOR, {"cursor": events[-1].number})
        return len(ids)

    async def plan(self, appointment_id: str) -> None:
        """Make Appointment `appointment_id`'s reminders what they should be now."""
        repo = self.repository
        stored = await repo.lookup.read("Appointment", appointment_id)
        appointment = orjson.loads(stored.content) if stored and stored.content else None
        existing = await self._existing(appointment_id)
        # Offsets are skipped by when the appointment was booked or moved (its version's
        # time), not by when the planner got to it: a planner that was down still plans a
        # reminder that came due meanwhile, and the sender sends it late rather than never.
        booked_at = min(self.clock(), stored.last_updated) if stored else self.clock()
        wanted = await self._wanted(appointment_id, appointment, existing, booked_at)
        for rid, body in wanted.items():
            old = existing.get(rid)
            same_time = (
                old is not None and old.get("occurrenceDateTime") == body["occurrenceDateTime"]
            )
            if old is not None and same_time and old.get("status") in ("active", "completed"):
                continue
            await repo.update("CommunicationRequest", rid, body)
        for rid, old in existing.items():
            if rid not in wanted and old.get("status") == "active":
                await repo.update("CommunicationRequest", rid, {**old, "status": "revoked"})

    async def _existing(self, appointment_id: str) -> dict[str, dict[str, Any]]:
        ref = ReferenceValue(ref_type="Appointment", ref_id=appointment_id)
        query = StoreQuery(
            "CommunicationRequest", (ReferenceCondition("based-on", (ref,)),), count=1000
        )
        page = await self.repository.lookup.search(query)
        found = {r.id: orjson.loads(r.content) for r in page.resources if r.content}
        return {rid: body for rid, body in found.items() if _is_reminder(body)}

    async def _wanted(
        self,
        appointment_id: str,
        appointment: dict[str, Any] | None,
        existing: dict[str, dict[str, Any]],
        booked_at: int,
    ) -> dict[str, dict[str, Any]]:
        if (
            appointment is None
            or appointment.get("status") != "booked"
            or not appointment.get("start")
        ):
            return {}
        repo = self.repository
        start_us = parse_instant(str(appointment["start"]))
        now = self.clock()
        patients = Participants(appointment, repo).patients
        zone = await appointment_zone(repo, appointment)
        channels = channels_of(repo.settings)
        found = await repo.lookup.read_json([("Patient", p) for p in patients])
        text: str | None = None
        wanted: dict[str, dict[str, Any]] = {}
        for patient_id in patients:
            patient = found.get(("Patient", patient_id))
            medium = (
                medium_for(patient, repo.settings.extension_base, format_instant(now), channels)
                if patient
                else None
            )
            if medium is None:
                continue
            for offset in self.offsets:
                at = offset.before(start_us, zone)
                rid = reminder_id(appointment_id, patient_id, offset.text)
                old = existing.get(rid)
                planned = old is not None and old.get("occurrenceDateTime") == format_instant(at)
                if planned and old is not None and old.get("status") in KEPT:
                    wanted[rid] = old  # planned (or sent) for this time already
                    continue
                if at <= booked_at:
                    continue  # booked (or moved) later than this offset: skipped
                text = text or await describe(repo, appointment)
                wanted[rid] = reminder_request(
                    id=rid,
                    appointment_id=appointment_id,
                    patient_id=patient_id,
                    offset=offset.text,
                    occurrence_us=at,
                    medium=medium,
                    text=text,
                    authored_us=now,
                )
        return wanted
