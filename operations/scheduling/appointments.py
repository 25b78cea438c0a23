"""What `$find`, `$hold` and `$book` share: proposal and hold marks, loading the target, slot
filling, the response Bundle and the taken-time outcome (IHE ITI-115/116/117).

- A `$find` proposal is a `proposed` Appointment carrying our `proposal-expires` extension,
  kept as a record (`PROPOSAL_KIND`, expiring then) and never as an Appointment version: `$find`
  writes no resource and no history, `appointment-reference` (and `GET Appointment/{id}`)
  resolve it until it expires, and plain Appointment search and history never show it
  (IHE ITI-118).
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
from fhir_server.model import StoredResource
from fhir_server.repository import Prepared, Repository, load_json
from operations.scheduling.claims import MINUTE_US, SCHEDULED_ACTOR_TYPES, hold_expiry
from operations.scheduling.extensions import (
    DEFAULT_BASE,
    HOLD_EXPIRES,
    PROPOSAL_EXPIRES,
    extension_url,
    slot_capacity,
)
from operations.scheduling.parameters import literal_id
from operations.scheduling.service import SchedulingService
from operations.scheduling.slots import parse_rule_slot_id
from resources.errors import Conflict, Invalid, NotFound, StoreConflict, Unprocessable
from resources.fhir_dates import format_instant, now_us

PROPOSAL_KIND = "appointment-proposal"
"""The record kind of `$find` proposals (`Repository.records`, keyed by the proposal's id)."""


@dataclass(frozen=True, slots=True)
class SchedulingConfig:
    """The settings the scheduling operations use (`fhir_server.config.Settings`: hold and
    proposal lifetimes in seconds, extension base).

    Attributes:
        hold_seconds: how long a `$hold` keeps its time (s).
        proposal_seconds: how long a `$find` proposal resolves (s).
        extension_base: the canonical base of our extensions.
    """

    hold_seconds: int = 300
    proposal_seconds: int = 1800
    extension_base: str = DEFAULT_BASE

    @classmethod
    def of(cls, repository: Repository) -> SchedulingConfig:
        """The settings of `repository`'s server."""
        settings = repository.settings
        return cls(settings.hold_seconds, settings.proposal_seconds, settings.extension_base)

    @property
    def hold_url(self) -> str:
        """The URL of our `hold-expires` extension."""
        return extension_url(HOLD_EXPIRES, self.extension_base)

    @property
    def proposal_url(self) -> str:
        """The URL of our `proposal-expires` extension."""
        return extension_url(PROPOSAL_EXPIRES, self.extension_base)


def scheduling(repository: Repository) -> tuple[SchedulingService, SchedulingConfig]:
    """The SchedulingService of `repository` and the scheduling settings."""
    return SchedulingService(repository), SchedulingConfig.of(repository)


def instant_text(us: int) -> str:
    """A FHIR instant for µs UTC, without a fraction when it is whole seconds."""
    text = format_instant(us)
    return text.replace(".000000Z", "Z")


def http_date(us: int) -> str:
    """An RFC 7231 IMF-fixdate (`Expires` header) for µs UTC."""
    return formatdate(us / 1_000_000, usegmt=True)


def _extension_instant(appointment: dict[str, Any], url: str) -> int | None:
    try:
        return hold_expiry(appointment, url)
    except ValueError:
        return None


def as_proposal(
    appointment: dict[str, Any], expires: int, config: SchedulingConfig
) -> dict[str, Any]:
    """The Appointment marked as a proposal until `expires` (µs UTC), with `meta.versionId`
    "1" (it is never stored as a version)."""
    extension = {"url": config.proposal_url, "valueInstant": format_instant(expires)}
    meta = {**(appointment.get("meta") or {}), "versionId": "1"}
    return {
        **appointment,
        "meta": meta,
        "extension": [*_others(appointment, (config.proposal_url,)), extension],
    }


async def save_proposals(
    repository: Repository, proposals: Sequence[dict[str, Any]], expires: int
) -> None:
    """Keep `$find` proposals (with ids) as records until `expires` (µs UTC)."""
    for proposal in proposals:
        await repository.records.put_record(PROPOSAL_KIND, str(proposal["id"]), proposal, expires)


async def read_proposal(repository: Repository, id: str) -> dict[str, Any] | None:
    """The live `$find` proposal `id`, or None (the Repository's computed `Appointment`
    reader: asked only when no Appointment `id` is stored)."""
    return await repository.records.get_record(PROPOSAL_KIND, id)


def _others(appointment: dict[str, Any], urls: Sequence[str]) -> list[Any]:
    return [
        e
        for e in appointment.get("extension") or []
        if not (isinstance(e, dict) and e.get("url") in urls)
    ]


def clear_marks(appointment: dict[str, Any], config: SchedulingConfig) -> dict[str, Any]:
    """The Appointment without proposal expiry and hold expiry (volatile `meta` dropped
    too)."""
    out = {k: v for k, v in appointment.items() if k not in ("meta", "extension")}
    meta = {
        k: v
        for k, v in (appointment.get("meta") or {}).items()
        if k in ("profile", "security", "tag")
    }
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
) -> tuple[StoredResource | None, dict[str, Any]]:
    """The Appointment `id` for `$hold`/`$book`: `(stored version, content)`, or `(None,
    proposal)` for a live `$find` proposal (not stored).

    Raises:
        NotFound: (404) unknown or deleted, or an expired proposal or hold (SCHEDULING.md).
        Forbidden: (403) a stored Appointment the caller may not read.
    """
    stored = await repository.lookup.read("Appointment", id)
    if stored is None:
        proposal = await read_proposal(repository, id)
        if proposal is None:
            raise NotFound(f"Appointment/{id} is not known (or its proposal expired)")
        return None, proposal
    if stored.deleted:
        raise NotFound(f"Appointment/{id} is not known")
    await repository.check_read(stored)  # what read would check, on the version in hand
    appointment = load_json(stored.content)
    if appointment.get("status") == "pending":
        expires = _extension_instant(appointment, config.hold_url)
        if expires is not None and expires < now_us():
            raise NotFound(f"The hold on Appointment/{id} has expired")
    return stored, appointment


async def fill_from_slots(
    appointment: dict[str, Any],
    service: SchedulingService,
    repository: Repository,
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
    present = {service.pair(p.get("actor")) for p in participants if isinstance(p, dict)}
    for ref in out.get("slot") or []:
        slot_id = literal_id(ref if isinstance(ref, dict) else {}, "Slot", repository.bases)
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
            claimed = await repository.lookup.claims_in(
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
        schedule_id = literal_id({"reference": schedule_ref}, "Schedule", repository.bases)
        if shared or schedule_id is None:
            continue
        stored = await repository.lookup.read("Schedule", schedule_id)
        if stored is None or stored.content is None:
            raise NotFound(f"Schedule/{schedule_id} of Slot/{slot_id} is not known")
        for actor in load_json(stored.content).get("actor") or []:
            pair = service.pair(actor)
            if pair is not None and pair not in present:
                present.add(pair)
                participants.append({"actor": actor, "required": "required", "status": "accepted"})
    if participants:
        out["participant"] = participants
    return out


class Participants:
    """The Appointment's participants that take part (not `declined`), canonical."""

    def __init__(self, appointment: dict[str, Any], repository: Repository) -> None:
        self.actors: list[tuple[str, str]] = []
        self.patients: list[str] = []
        for participant in appointment.get("participant") or []:
            if not isinstance(participant, dict) or participant.get("status") == "declined":
                continue
            text = (participant.get("actor") or {}).get("reference")
            pair = repository.reference(text).pair if isinstance(text, str) else None
            if pair is None:
                continue
            if pair[0] == "Patient" and pair[1] not in self.patients:
                self.patients.append(pair[1])
            elif pair[0] in SCHEDULED_ACTOR_TYPES and pair not in self.actors:
                self.actors.append(pair)


def patient_ids(appointment: dict[str, Any], repository: Repository) -> list[str]:
    """The ids of the Appointment's Patient participants on this server that take part (not
    `declined`), in order (`Participants`)."""
    return Participants(appointment, repository).patients


_UNAVAILABLE = frozenset({"slot-unavailable", "outside-availability"})


@contextmanager
def time_unavailable_is_fatal() -> Iterator[None]:
    """Turn the Repository's 409 for time that cannot be had (`slot-unavailable`: taken;
    `outside-availability`: not offered) into the IHE outcome: 409 with `severity=fatal`,
    `code=not-found` and that detail code (IHE ITI-116 §2:3.116.4.2.3). Version races
    (StoreConflict) and `patient-conflict` pass through unchanged."""
    try:
        yield
    except StoreConflict:
        raise
    except Conflict as exc:
        detail = next((i.details_code for i in exc.issues if i.details_code in _UNAVAILABLE), None)
        if detail is None:
            raise
        raise Conflict(
            exc.diagnostics, code="not-found", severity="fatal", details_code=detail
        ) from exc


def require_claims(prepared: Prepared, action: str) -> None:
    """Refuse a hold or booking that would claim no time at all.

    Raises:
        Unprocessable: (422 `business-rule`) no participant is the actor of an active
            Schedule and no Slot is referenced, so nothing would guard the time.
    """
    op = prepared.op
    keys = op.claims.keys if op is not None and op.claims is not None else ()
    if not any(not key.scope.startswith("Patient/") for key in keys):
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
