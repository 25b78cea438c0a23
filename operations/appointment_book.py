"""`Appointment/$book` (IHE ITI-117 Book Appointment): book, move or cancel an Appointment.

Request (IHE ITI-117 §2:3.117.4.1; OperationDefinition `appointment-book`): POST only (GET is
405) with `appointment-reference` (a proposal or a hold) or `appointment-resource`, plus
`patient-resource` (0..*, created with the booking unless it names an existing Patient),
`comment` (-> `Appointment.comment`), and ours: `patient-reference` (0..*),
`cancelled-appt-id` (Argonaut: the Appointment this booking replaces) and
`override-availability` (boolean: book even outside the actors' availability; only for callers
not confined to a patient — an EHR's `user/`/`system/` token — and recorded as an AuditEvent).

Modes, by the input Appointment's status (IHE `appointment-book` description; SCHEDULING.md):

- `proposed`/`pending` (or a reference): **book**. The proposal or hold (same id) becomes
  `booked`, its proposal/hold marks removed; a resource without id is a new Appointment, given a
  deterministic id from its content so that a retry finds it.
- `booked` with an existing id: **move** in place; one update, so the old time is released and
  the new one claimed atomically (the claims are the owner's complete set).
- `cancelled` with an existing id: **cancel**, releasing the time (`cancelationReason` kept).
- `cancelled-appt-id`: **reschedule**: the old Appointment is cancelled and the new one booked in
  ONE `Repository.apply`, so a taken new time leaves the old one booked.

A retry of a successful booking (same input) returns the same Appointment, unchanged
(idempotent). Every book, move and cancel writes an AuditEvent (ITI-117) in the same apply. The
response is a `searchset` Bundle with the Appointment (IHE ITI-117 §2:3.117.4.2.2).

The booking rules (`operations.scheduling.booking_rules`) apply to every write, availability
included unless overridden.

Errors (SCHEDULING.md "Errors"): 400 bad parameters; 403 an override from a patient-confined
token; 404 unknown or expired proposal or hold; 409 the time is taken or not offered
(`severity=fatal`, `code=not-found`, detail `slot-unavailable` / `outside-availability`), the
patient is booked then (`patient-conflict`) or an illegal status change (e.g. booking a
cancelled Appointment); 412 `If-Match` is not the target's version; 422 no patient participant,
nothing to book, or Appointment invariants (app-2..app-4).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from fhir_server.access import denied
from fhir_server.messages import FhirResult, Operation, OperationCall
from fhir_server.model import StoredResource
from fhir_server.repository import MAX_RETRIES, Prepared, Repository, load_json
from operations.scheduling.appointments import (
    SchedulingConfig,
    appointment_bundle,
    clear_marks,
    fill_from_slots,
    load_appointment,
    patient_ids,
    require_claims,
    scheduling,
    time_unavailable_is_fatal,
)
from operations.scheduling.audit import audit_event
from operations.scheduling.parameters import (
    OperationParams,
    operation_definition,
    reference_id,
    target_of,
)
from resources.errors import Conflict, Invalid, PreconditionFailed, StoreConflict, Unprocessable

Mode = Literal["book", "move", "cancel"]
BOOKABLE = frozenset({"proposed", "pending"})
"""Statuses a booking starts from (a `$find` proposal or a `$hold`)."""
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


async def book(call: OperationCall) -> FhirResult:
    """`POST [base]/Appointment/$book` (IHE ITI-117).

    Raises:
        Invalid, NotFound, Conflict, PreconditionFailed, Unprocessable: see the module docstring.
    """
    request = call.request
    params = OperationParams.of(request, bare_resource="appointment-resource")
    repository = _with_override(call.repository, params)
    bases = repository.bases
    target_id, resource = target_of(params, bases)
    cancelled = params.references("cancelled-appt-id")
    if len(cancelled) > 1:
        raise Invalid("'cancelled-appt-id' may appear only once", expression=["cancelled-appt-id"])
    inputs = BookInput(
        patients=[
            f"Patient/{reference_id(r, 'Patient', bases)}"
            for r in params.references("patient-reference")
        ],
        patient_resources=params.resources("patient-resource", "Patient"),
        comment=params.text("comment"),
        cancelled_id=reference_id(cancelled[0], "Appointment", bases) if cancelled else None,
        if_match=request.if_match,
    )
    for _ in range(MAX_RETRIES):
        inputs.ops = []
        try:
            with time_unavailable_is_fatal():
                stored = await _book_once(repository, target_id, resource, inputs)
        except StoreConflict:
            if inputs.if_match is not None:
                raise PreconditionFailed("The Appointment changed concurrently") from None
            continue  # a concurrent write won the version race: decide again on what is now
        return FhirResult(200, appointment_bundle(stored, request.base_url))
    raise Conflict("The Appointment is being changed concurrently; retry")


def _with_override(repository: Repository, params: OperationParams) -> Repository:
    """The repository `$book` writes with: availability enforced, unless the caller asks
    `override-availability=true` and is not confined to a patient (an EHR's token).

    Raises:
        Invalid: (400) not a boolean. Forbidden: (403) an override from a patient's token.
    """
    text = params.text("override-availability")
    if text not in (None, "true", "false"):
        raise Invalid(
            "'override-availability' must be true or false", expression=["override-availability"]
        )
    if text != "true":
        return repository.strict()
    if any(repository.patient_confined("Appointment", p) for p in ("c", "u")):
        raise denied(
            "'override-availability' needs a user/ or system/ scope: a token confined to a "
            "patient always books within the actors' availability"
        )
    return repository


async def _book_once(
    repository: Repository,
    target_id: str | None,
    resource: dict[str, Any] | None,
    inputs: BookInput,
) -> StoredResource:
    service, config = scheduling(repository)
    stored: StoredResource | None = None
    current: dict[str, Any] | None = None
    if resource is None:
        assert target_id is not None
        stored, current = await load_appointment(repository, target_id, config)
        wanted = dict(current)
    else:
        wanted = dict(resource)
        target_id = resource.get("id") if isinstance(resource.get("id"), str) else None
        if target_id is not None:
            stored, current = await load_appointment(repository, target_id, config)
        else:
            target_id, stored, current = await _new_id(repository, resource, inputs)
    mode = _mode(wanted.get("status") if resource is not None else None, current, target_id)
    if mode == "cancel":
        if inputs.cancelled_id is not None:
            raise Invalid("'cancelled-appt-id' goes with a booking, not with a cancellation")
        assert current is not None
        content = _cancelled(current, wanted, inputs.comment, config)
    else:
        wanted = await fill_from_slots(wanted, service, repository)
        content = await _booked(repository, wanted, target_id, inputs, config)
    prepared = await _prepare(repository, target_id, content, stored, inputs.if_match)
    if inputs.cancelled_id is not None:
        await _cancel_old(repository, inputs, target_id, config)
    if prepared.op is not None:
        if mode != "cancel":
            require_claims(prepared, "book")
        inputs.ops.insert(0, prepared)
        await _audit(repository, inputs, target_id, content, "C" if mode == "book" else "U")
    if inputs.ops:
        await repository.apply(inputs.ops)
    if prepared.op is not None:
        return prepared.op.version
    assert stored is not None
    return stored


def _mode(status: Any, current: dict[str, Any] | None, id: str) -> Mode:
    """The `$book` mode from the input status (None: a reference) and the stored status.

    Raises:
        Invalid: (400) a cancellation of nothing stored, or no usable status.
        Conflict: (409) an illegal status change.
    """
    stored = None if current is None else current.get("status")
    if status == "cancelled":
        if current is None:
            raise Invalid("A cancellation needs the id of an existing Appointment")
        if stored not in (*BOOKABLE, "booked", "cancelled"):
            raise _illegal(id, stored, "cancelled")
        return "cancel"
    if status not in (None, *BOOKABLE, "booked"):
        raise Conflict(
            f"$book books (proposed, pending, booked) or cancels (cancelled), not {status!r}",
            code="business-rule",
        )
    if stored is None or stored in BOOKABLE:
        return "book"
    if stored == "booked":
        return "move"
    raise _illegal(id, stored, "booked")


def _illegal(id: str, before: Any, after: str) -> Conflict:
    return Conflict(f"Appointment/{id} is {before}: it cannot become {after}", code="business-rule")


async def _new_id(
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


async def _booked(
    repository: Repository,
    wanted: dict[str, Any],
    id: str,
    inputs: BookInput,
    config: SchedulingConfig,
) -> dict[str, Any]:
    """The booked Appointment: marks removed, participants accepted, patients and comment
    added (new `patient-resource`s are created in the same apply).

    Raises:
        Unprocessable: (422) no Patient participant.
    """
    content = {**clear_marks(wanted, config), "resourceType": "Appointment", "status": "booked"}
    participants = [
        {**p, "status": "accepted"} if p.get("status") in _ACCEPTING else p
        for p in content.get("participant") or []
        if isinstance(p, dict)
    ]
    refs = list(inputs.patients)
    for n, patient in enumerate(inputs.patient_resources):
        refs.append(await _patient(repository, patient, f"{id}-p{n}"[:64], inputs))
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
            "A booked Appointment needs a Patient participant (appointment participant, "
            "'patient-reference' or 'patient-resource')",
            code="business-rule",
            expression=["Appointment.participant"],
        )
    return content


async def _patient(
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


def _cancelled(
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


async def _prepare(
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


async def _cancel_old(
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
        raise _illegal(old_id, status, "cancelled")
    content = _cancelled(old, {}, None, config)
    prepared = await _prepare(repository, old_id, content, stored, None)
    if prepared.op is not None:
        inputs.ops.append(prepared)
        await _audit(repository, inputs, old_id, content, "U")


async def _audit(
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


DEFINITION = operation_definition(
    "appointment-book",
    "book",
    "Book, move or cancel an appointment (IHE ITI-117)",
    "Books a proposal, a hold or a new Appointment (status proposed or pending), moves a booked "
    "one in place (status booked, existing id) or cancels one (status cancelled), atomically; "
    "cancelled-appt-id cancels the Appointment this booking replaces in the same write. A retry "
    "of a successful booking returns the same Appointment. POST only. Errors: 404 unknown or "
    "expired proposal or hold; 409 time no longer free (severity fatal, code not-found, detail "
    "slot-unavailable) or an illegal status change; 412 If-Match mismatch; 422 no patient "
    "participant, nothing to book, or invariants broken.",
    [
        ("appointment-reference", "Reference(Appointment)", "0..1", "A proposal or a hold."),
        ("appointment-resource", "Appointment", "0..1", "The Appointment to book, move or cancel."),
        (
            "patient-resource",
            "Patient",
            "0..*",
            "Patient(s) to add (created unless stored).",
        ),
        ("patient-reference", "Reference(Patient)", "0..*", "Ours: existing patient(s) to add."),
        ("comment", "string", "0..1", "Copied to Appointment.comment."),
        (
            "cancelled-appt-id",
            "Reference(Appointment)",
            "0..1",
            "Ours: the Appointment it replaces.",
        ),
        (
            "override-availability",
            "boolean",
            "0..1",
            "Ours: book outside availability (user/ or system/ tokens; audited).",
        ),
        ("return", "out:Bundle", "1..1", "searchset with the Appointment."),
    ],
)
"""Our OperationDefinition `appointment-book` (IHE parameter names plus ours)."""

OPERATION = Operation(
    name="book",
    handler=book,
    type_level=True,
    resource_types=frozenset({"Appointment"}),
    methods=frozenset({"POST"}),
    requires=(("Appointment", "c"), ("Appointment", "u")),  # SMART.md scopes
)
