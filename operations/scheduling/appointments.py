"""What `$find`, `$hold` and `$book` share: proposal and hold marks, loading the target, slot
filling, the response Bundle and the taken-time outcome (IHE ITI-115/116/117).

- A `$find` proposal is a stored Appointment (`status=proposed`) tagged `PROPOSAL_TAG` and
  carrying our `proposal-expires` extension: `appointment-reference` resolves it until then, and
  plain Appointment search never shows it (`exclude_proposals`; IHE ITI-118).
- A hold is a `pending` Appointment with our `hold-expires` extension (valueInstant); its claims
  lapse then (`operations.scheduling.claims`), and `holds.sweep_expired_holds` cancels it.
- An unavailable time on `$hold`/`$book` is a 409 OperationOutcome with `severity=fatal`,
  `code=not-found` (IHE ITI-116 §2:3.116.4.2.3) and our detail code `slot-unavailable`
  (SCHEDULING.md "Errors").

Parameters are read by `operations.scheduling.parameters`; every hold, book and cancel is
audited (`operations.scheduling.audit`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any

from fhir_server.bundle_builder import embed
from fhir_server.repository import Repository, load_json
from fhir_server.search.query import TokenCondition, TokenValue
from fhir_server.storage.base import StoredResource, WriteOp
from operations.scheduling.claims import MINUTE_US, hold_expiry
from operations.scheduling.extensions import (
    DEFAULT_BASE,
    HOLD_EXPIRES,
    PROPOSAL_EXPIRES,
    extension_url,
    slot_capacity,
)
from operations.scheduling.parameters import literal_id, split_reference
from operations.scheduling.service import SchedulingService
from operations.scheduling.slots import parse_rule_slot_id
from resources.errors import Conflict, Gone, Invalid, NotFound, StoreConflict, Unprocessable
from resources.fhir_dates import format_instant, now_us

"""Our extension id: when a `$find` proposal stops resolving (valueInstant)."""
PROPOSAL_TAG = {"system": "urn:fhir-scheduling-server:appointment", "code": "proposal"}
"""The `meta.tag` of a stored `$find` proposal (never shown by plain Appointment search)."""


@dataclass(frozen=True, slots=True)
class SchedulingConfig:
    """The settings the scheduling operations use, as wired into the `SchedulingService`
    (`fhir_server.config.Settings`: hold and proposal lifetimes in seconds, extension base).

    Attributes:
        hold_seconds: how long a `$hold` keeps its time (s).
        proposal_seconds: how long a `$find` proposal resolves (s).
        extension_base: the canonical base of our extensions.
    """

    hold_seconds: int = 300
    proposal_seconds: int = 1800
    extension_base: str = DEFAULT_BASE

    @classmethod
    def of(cls, service: SchedulingService) -> SchedulingConfig:
        """The settings `service` was wired with."""
        return cls(service.hold_seconds, service.proposal_seconds, service.extension_base)

    @property
    def hold_url(self) -> str:
        """The URL of our `hold-expires` extension."""
        return extension_url(HOLD_EXPIRES, self.extension_base)

    @property
    def proposal_url(self) -> str:
        """The URL of our `proposal-expires` extension."""
        return extension_url(PROPOSAL_EXPIRES, self.extension_base)


def scheduling(repository: Repository) -> tuple[SchedulingService, SchedulingConfig]:
    """The SchedulingService wired for `repository` (`fhir_server.app`) and its settings."""
    service = SchedulingService.for_repository(repository)
    return service, SchedulingConfig.of(service)


def instant_text(us: int) -> str:
    """A FHIR instant for µs UTC, without a fraction when it is whole seconds."""
    text = format_instant(us)
    return text.replace(".000000Z", "Z")


def http_date(us: int) -> str:
    """An RFC 7231 IMF-fixdate (`Expires` header) for µs UTC."""
    return formatdate(us / 1_000_000, usegmt=True)


def exclude_proposals() -> TokenCondition:
    """The search condition keeping stored `$find` proposals out of Appointment search."""
    value = TokenValue(PROPOSAL_TAG["system"], PROPOSAL_TAG["code"])
    return TokenCondition("_tag", (value,), negate=True)


def _has_tag(appointment: dict[str, Any]) -> bool:
    tags = (appointment.get("meta") or {}).get("tag") or []
    return any(
        isinstance(t, dict)
        and t.get("system") == PROPOSAL_TAG["system"]
        and t.get("code") == PROPOSAL_TAG["code"]
        for t in tags
    )


def is_proposal(appointment: dict[str, Any]) -> bool:
    """Whether a stored Appointment is a `$find` proposal (status proposed and tagged)."""
    return appointment.get("status") == "proposed" and _has_tag(appointment)


def _extension_instant(appointment: dict[str, Any], url: str) -> int | None:
    try:
        return hold_expiry(appointment, url)
    except ValueError:
        return None


def proposal_expiry(appointment: dict[str, Any], config: SchedulingConfig) -> int | None:
    """When a proposal stops resolving (µs UTC), or None."""
    return _extension_instant(appointment, config.proposal_url)


def as_proposal(
    appointment: dict[str, Any], expires: int, config: SchedulingConfig
) -> dict[str, Any]:
    """The Appointment marked as a stored proposal until `expires` (µs UTC)."""
    meta = dict(appointment.get("meta") or {})
    meta["tag"] = [*(meta.get("tag") or []), dict(PROPOSAL_TAG)]
    extension = {"url": config.proposal_url, "valueInstant": format_instant(expires)}
    return {**appointment, "meta": meta, "extension": [*_others(appointment, ()), extension]}


def _others(appointment: dict[str, Any], urls: Sequence[str]) -> list[Any]:
    return [
        e
        for e in appointment.get("extension") or []
        if not (isinstance(e, dict) and e.get("url") in urls)
    ]


def clear_marks(appointment: dict[str, Any], config: SchedulingConfig) -> dict[str, Any]:
    """The Appointment without proposal tag, proposal expiry and hold expiry (volatile `meta`
    dropped too)."""
    out = {k: v for k, v in appointment.items() if k not in ("meta", "extension")}
    meta = {
        k: v for k, v in (appointment.get("meta") or {}).items() if k in ("profile", "security")
    }
    tags = [t for t in (appointment.get("meta") or {}).get("tag") or [] if t != PROPOSAL_TAG]
    if tags:
        meta["tag"] = tags
    if meta:
        out["meta"] = meta
    extensions = _others(appointment, (config.hold_url, config.proposal_url))
    if extensions:
        out["extension"] = extensions
    return out


def with_hold(
    appointment: dict[str, Any], expires: int, config: SchedulingConfig
) -> dict[str, Any]:
    """The Appointment `pending` with our `hold-expires` extension at `expires` (µs UTC)."""
    out = clear_marks(appointment, config)
    out["status"] = "pending"
    hold = {"url": config.hold_url, "valueInstant": format_instant(expires)}
    out["extension"] = [*(out.get("extension") or []), hold]
    return out


async def load_appointment(
    repository: Repository, id: str, config: SchedulingConfig
) -> tuple[StoredResource, dict[str, Any]]:
    """The current Appointment `id` for `$hold`/`$book`.

    Raises:
        NotFound: (404) unknown or deleted, or an expired proposal or hold (SCHEDULING.md).
    """
    try:
        stored = await repository.read("Appointment", id)
    except (NotFound, Gone):
        raise NotFound(f"Appointment/{id} is not known (or its proposal expired)") from None
    appointment = load_json(stored.content)
    now = now_us()
    if is_proposal(appointment):
        expires = proposal_expiry(appointment, config)
        if expires is not None and expires < now:
            raise NotFound(f"The proposal Appointment/{id} has expired; run $find again")
    if appointment.get("status") == "pending":
        expires = _extension_instant(appointment, config.hold_url)
        if expires is not None and expires < now:
            raise NotFound(f"The hold on Appointment/{id} has expired")
    return stored, appointment


async def fill_from_slots(
    appointment: dict[str, Any],
    service: SchedulingService,
    repository: Repository,
    base_url: str = "",
) -> dict[str, Any]:
    """Fill `start`/`end` (when absent) and the Schedule's actors from the Appointment's
    `slot` references: stored Slots, or rule-derived ones (SCHEDULING.md "`$find-slots`").

    A rule Slot that is no longer free because it is booked or held still names its time and
    Schedule (its id says so); the claims then decide whether the time can be taken (the same
    Appointment may re-book its own hold). One that is no longer offered for any other reason
    (new hours, time off, a block) is refused. Actors are not added for a shared Slot
    (`slot-capacity` > 1), whose seats are the claims.

    Raises:
        NotFound: (404) an unknown Slot or Schedule.
        Invalid: (400) a slot that is not a `Slot/id` reference.
        Conflict: (409 `slot-unavailable`) a rule Slot its Schedule no longer offers.
    """
    out = dict(appointment)
    participants = list(out.get("participant") or [])
    present = {((p.get("actor") or {}).get("reference")) for p in participants}
    for ref in out.get("slot") or []:
        slot_id = literal_id(ref if isinstance(ref, dict) else {}, "Slot", base_url)
        if slot_id is None:
            raise Invalid("Appointment.slot must reference a Slot", expression=["Appointment.slot"])
        slot = await service.resolve_slot(slot_id)
        if slot is not None:
            start, end = slot.get("start"), slot.get("end")
            schedule_ref = (slot.get("schedule") or {}).get("reference", "")
            shared = slot_capacity(slot) > 1
        else:
            rule = parse_rule_slot_id(slot_id)
            if rule is None:
                raise NotFound(f"Slot/{slot_id} is not known")
            claimed = await repository.store.claims_in(
                f"Schedule/{rule.schedule_id}", rule.start // MINUTE_US, -(-rule.end // MINUTE_US)
            )
            if not claimed:  # not booked or held, yet not offered: the hours or time off changed
                raise Conflict(
                    f"The time is no longer free: Slot/{slot_id} is no longer offered by "
                    f"Schedule/{rule.schedule_id} (its hours or time off changed)",
                    details_code="slot-unavailable",
                )
            start, end = instant_text(rule.start), instant_text(rule.end)
            schedule_ref, shared = f"Schedule/{rule.schedule_id}", False
        out.setdefault("start", start)
        out.setdefault("end", end)
        schedule_id = literal_id({"reference": schedule_ref}, "Schedule", base_url)
        if shared or schedule_id is None:
            continue
        schedule = load_json((await repository.read("Schedule", schedule_id)).content)
        for actor in schedule.get("actor") or []:
            if isinstance(actor, dict) and actor.get("reference") not in present:
                present.add(actor.get("reference"))
                participants.append({"actor": actor, "required": "required", "status": "accepted"})
    if participants:
        out["participant"] = participants
    return out


def patient_ids(appointment: dict[str, Any], base_url: str = "") -> list[str]:
    """The ids of the Appointment's Patient participants (literal references), in order."""
    out: list[str] = []
    for participant in appointment.get("participant") or []:
        actor = participant.get("actor") if isinstance(participant, dict) else None
        text = actor.get("reference") if isinstance(actor, dict) else None
        found = split_reference(text, base_url) if isinstance(text, str) else None
        if found is not None and found[0] == "Patient" and found[1] not in out:
            out.append(found[1])
    return out


@contextmanager
def time_unavailable_is_fatal() -> Iterator[None]:
    """Turn the Repository's 409 `slot-unavailable` into the IHE outcome: 409 with
    `severity=fatal`, `code=not-found`, detail `slot-unavailable` (IHE ITI-116
    §2:3.116.4.2.3). Version races (StoreConflict) pass through unchanged."""
    try:
        yield
    except StoreConflict:
        raise
    except Conflict as exc:
        if all(issue.details_code != "slot-unavailable" for issue in exc.issues):
            raise
        raise Conflict(
            exc.diagnostics, code="not-found", severity="fatal", details_code="slot-unavailable"
        ) from exc


def require_claims(op: WriteOp, action: str) -> None:
    """Refuse a hold or booking that would claim no time at all.

    Raises:
        Unprocessable: (422 `business-rule`) no participant is the actor of an active
            Schedule and no Slot is referenced, so nothing would guard the time.
    """
    if op.claims is None or not op.claims.keys:
        raise Unprocessable(
            f"Nothing to {action}: the Appointment needs a start and end and names no actor of "
            "an active Schedule and no Slot",
            code="business-rule",
            expression=["Appointment.participant"],
        )


def appointment_bundle(stored: StoredResource, base_url: str) -> dict[str, Any]:
    """The `searchset` Bundle with the one Appointment (IHE `ihe-sched-avail-bundle`)."""
    entry = {
        "fullUrl": f"{base_url}/Appointment/{stored.id}",
        "resource": embed(stored),
        "search": {"mode": "match"},
    }
    return {"resourceType": "Bundle", "type": "searchset", "total": 1, "entry": [entry]}
