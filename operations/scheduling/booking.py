"""The steps of `Appointment/$book` (IHE ITI-117) the operation composes
(`operations.appointment_book`): the booking's deterministic id, the booked and the cancelled
content, the write of the target on the version read, the cancellation of the Appointment a
reschedule replaces, and the AuditEvent of each change, all prepared for one atomic apply."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from fhir_server.model import StoredResource
from fhir_server.repository import Prepared, Repository, load_json
from operations.scheduling.appointments import (
    SchedulingConfig,
    clear_marks,
    load_appointment,
    patient_ids,
)
from operations.scheduling.audit import audit_event
from operations.scheduling.waitlist import booked_entry, offer_entry_id, parse_entry
from resources.errors import Conflict, Invalid, PreconditionFailed, StoreConflict, Unprocessable

__all__ = [
    "BookInput",
    "audit_write",
    "booked_content",
    "booking_id",
    "cancel_replaced",
    "cancelled_content",
    "close_offered_entry",
    "illegal_change",
    "patient_reference",
    "prepare_target",
]

_ACCEPTING = frozenset({"needs-action", "tentative"})


@dataclass(slots=True)
class BookInput:
    """The `$book` inputs besides the target (see the module docstring)."""

    patients: list[str]
    patient_resources: list[dict[str, Any]]
    comment: str | None
    cancelled_id: str | None
    if_match: str | None
    ops: list[Prepared] = field(default_factory=list)


def illegal_change(id: str, before: Any, after: str) -> Conflict:
    return Conflict(f"Appointment/{id} is {before}: it cannot become {after}", code="business-rule")


async def booking_id(
    repository: Repository, resource: dict[str, Any], inputs: BookInput
) -> tuple[str, StoredResource | None, dict[str, Any] | None]:
    """A deterministic id for a new booking (a hash of the whole input), so a retry finds the
    booking it made; a fresh id when that one ended cancelled (booking the same again)."""
    material = {
        "appointment": {k: v for k, v in resource.items() if k not in ("id", "meta", "status")},
        "patients": inputs.patients,
        "patient_resources": inputs.patient_resources,
        "comment": inputs.comment,
        "cancelled": inputs.cancelled_id,
    }
    digest = hashlib.sha256(orjson.dumps(material, option=orjson.OPT_SORT_KEYS)).hexdigest()
    id = f"bk-{digest[:40]}"
    existing = await repository.lookup.read("Appointment", id)
    if existing is None or existing.deleted:
        return id, None, None
    current = load_json(existing.content)
    if current.get("status") == "cancelled":
        return repository.new_id(), None, None
    return id, existing, current


async def booked_content(
    repository: Repository,
    wanted: dict[str, Any],
    id: str,
    inputs: BookInput,
    config: SchedulingConfig,
    status: str = "booked",
) -> dict[str, Any]:
    """The booked Appointment (or, with `status` `waitlist`, the waitlist entry): marks
    removed, participants accepted, patients and comment added (new `patient-resource`s are
    created in the same apply).

    Raises:
        Unprocessable: (422) no Patient participant.
    """
    content = {**clear_marks(wanted, config), "resourceType": "Appointment", "status": status}
    accepting = _ACCEPTING if status == "booked" else frozenset()
    participants = [
        {**p, "status": "accepted"} if p.get("status") in accepting else p
        for p in content.get("participant") or []
        if isinstance(p, dict)
    ]
    refs = list(inputs.patients)
    for n, patient in enumerate(inputs.patient_resources):
        refs.append(await patient_reference(repository, patient, f"{id}-p{n}"[:64], inputs))
    named = {(p.get("actor") or {}).get("reference") for p in participants}
    for ref in refs:
        if ref not in named:
            named.add(ref)
            actor = {"reference": ref}
            participants.append({"actor": actor, "required": "required", "status": "accepted"})
    content["participant"] = participants
    if inputs.comment is not None:
        content["comment"] = inputs.comment
    if not patient_ids(content, repository):
        raise Unprocessable(
            f"A {status} Appointment needs a Patient participant (appointment participant, "
            "'patient-reference' or 'patient-resource')",
            code="business-rule",
            expression=["Appointment.participant"],
        )
    return content


async def patient_reference(
    repository: Repository, patient: dict[str, Any], new_id: str, inputs: BookInput
) -> str:
    """`Patient/id` of a `patient-resource`: an existing Patient as is, else created with the
    booking (its own id, or `new_id`)."""
    pid = patient.get("id") if isinstance(patient.get("id"), str) else None
    if pid is not None:
        existing = await repository.lookup.read("Patient", pid)
        if existing is not None and not existing.deleted:
            return f"Patient/{pid}"
    pid = pid or new_id
    prepared = await repository.prepare_update("Patient", pid, {**patient, "id": pid})
    if prepared.op is not None:
        inputs.ops.append(prepared)
    return f"Patient/{pid}"


def cancelled_content(
    current: dict[str, Any],
    wanted: dict[str, Any],
    comment: str | None,
    config: SchedulingConfig,
) -> dict[str, Any]:
    """The stored Appointment, `cancelled`, with the input's `cancelationReason` and the
    `comment`; its time is released by the claims (a cancelled Appointment holds none)."""
    content = {**clear_marks(current, config), "status": "cancelled"}
    if wanted.get("cancelationReason"):
        content["cancelationReason"] = wanted["cancelationReason"]
    if comment is not None:
        content["comment"] = comment
    return content


async def prepare_target(
    repository: Repository,
    id: str,
    content: dict[str, Any],
    stored: StoredResource | None,
    if_match: str | None,
) -> Prepared:
    """The write of the target: its read version expected (a concurrent change makes it a
    StoreConflict, decided again), `If-Match` when the client sent one (412 on mismatch).
    `op` None when nothing changes (an idempotent retry)."""
    expected = if_match or (str(stored.version_id) if stored is not None else None)
    try:
        prepared = await repository.prepare_update(
            "Appointment", id, {**content, "id": id}, if_match=expected
        )
    except PreconditionFailed:
        if if_match is not None:
            raise
        raise StoreConflict(f"Appointment/{id} changed concurrently") from None
    op = prepared.op
    if op is not None and stored is None and op.expected_version not in (0, None):
        raise StoreConflict(f"Appointment/{id} was created concurrently")
    return prepared


async def cancel_replaced(
    repository: Repository, inputs: BookInput, new_id: str, config: SchedulingConfig
) -> None:
    """Cancel the `cancelled-appt-id` Appointment in the same apply (atomic reschedule).

    Raises:
        Invalid: (400) it is the Appointment being booked.
        NotFound: (404) unknown. Conflict: (409) not booked or held.
    """
    old_id = inputs.cancelled_id
    assert old_id is not None
    if old_id == new_id:
        raise Invalid("'cancelled-appt-id' names the Appointment being booked")
    stored, old = await load_appointment(repository, old_id, config)
    status = old.get("status")
    if status == "cancelled":
        return  # a retry: already cancelled by the booking that replaced it
    if status not in ("pending", "booked"):
        raise illegal_change(old_id, status, "cancelled")
    content = cancelled_content(old, {}, None, config)
    prepared = await prepare_target(repository, old_id, content, stored, None)
    if prepared.op is not None:
        inputs.ops.append(prepared)
        await audit_write(repository, inputs, old_id, content, "U")


async def audit_write(
    repository: Repository,
    inputs: BookInput,
    id: str,
    content: dict[str, Any],
    action: Literal["C", "U"],
) -> None:
    event = audit_event(
        transaction="ITI-117",
        action=action,
        appointment_id=id,
        patients=patient_ids(content, repository),
        base_url=repository.base_url,
        requestor=repository.policy.requestor(),
    )
    inputs.ops.append(await repository.prepare_audit(event))


async def close_offered_entry(
    repository: Repository, current: dict[str, Any] | None, id: str, inputs: BookInput
) -> None:
    """Booking a waitlist offer (a hold with `waitlist-offer`) closes its entry in the same
    apply (`waitlist.closed_entry`, code `waitlist-booked`) and, unless the call names one,
    cancels the Appointment the entry replaces (`inputs.cancelled_id`)."""
    if current is None:
        return
    entry_id = offer_entry_id(repository, current)
    if entry_id is None:
        return
    stored = await repository.lookup.read("Appointment", entry_id)
    entry = load_json(stored.content) if stored is not None and stored.content else None
    if stored is None or entry is None or entry.get("status") != "waitlist":
        return
    offered_to = patient_ids(current, repository)
    if not set(patient_ids(entry, repository)) <= set(offered_to):
        return  # an offer names the entry of another patient: it closes nothing
    closed = booked_entry(entry, id)
    prepared = await repository.prepare_update(
        "Appointment", entry_id, closed, if_match=str(stored.version_id)
    )
    if prepared.op is not None:
        inputs.ops.append(prepared)
    if inputs.cancelled_id is None:
        inputs.cancelled_id = _replaced(repository, entry)


def _replaced(repository: Repository, entry: dict[str, Any]) -> str | None:
    try:
        return parse_entry(repository, str(entry.get("id")), entry).replaces
    except Unprocessable:
        return None  # no longer a readable entry: it replaces nothing
