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
- `waitlist`: **join the waitlist**: a waitlist entry (`operations.scheduling.waitlist`) is
  created (deterministic id, as a booking) or, with the id of one, updated; it takes no time;
  `cancelled-appt-id` here names the Appointment an offer would replace (kept as the entry's
  `waitlist-replaces`; nothing is cancelled now). A stored entry can also be booked
  (`booked` with its id and a time) or cancelled.
- booking a waitlist **offer** (a hold with `waitlist-offer`) closes its entry in the same
  apply and cancels the Appointment the entry replaces (`booking.close_offered_entry`).
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

from typing import Any, Literal

from fhir_server.access import denied
from fhir_server.messages import FhirResult, Operation, OperationCall
from fhir_server.model import StoredResource
from fhir_server.repository import MAX_RETRIES, Repository
from operations.scheduling.appointments import (
    appointment_bundle,
    fill_from_slots,
    load_appointment,
    require_claims,
    scheduling,
    time_unavailable_is_fatal,
)
from operations.scheduling.booking import (
    BookInput,
    audit_write,
    booked_content,
    booking_id,
    cancel_replaced,
    cancelled_content,
    close_offered_entry,
    illegal_change,
    prepare_target,
)
from operations.scheduling.extensions import WAITLIST_REPLACES, extension_url
from operations.scheduling.parameters import (
    OperationParams,
    operation_definition,
    reference_id,
    target_of,
)
from resources.errors import Conflict, Invalid, PreconditionFailed, StoreConflict

Mode = Literal["book", "move", "cancel", "waitlist"]
BOOKABLE = frozenset({"proposed", "pending"})
"""Statuses a booking starts from (a `$find` proposal or a `$hold`)."""


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
    stored = await run_book(repository, target_id, resource, inputs)
    return FhirResult(200, appointment_bundle(stored, request.base_url))


async def run_book(
    repository: Repository,
    target_id: str | None,
    resource: dict[str, Any] | None,
    inputs: BookInput,
) -> StoredResource:
    """`$book` of the Appointment `target_id` (a reference) or of `resource` (module
    docstring), decided again after a lost version race; the version written (or found, for
    an idempotent retry). The waitlist's accept link books through it too.

    Raises:
        Invalid, NotFound, Conflict, PreconditionFailed, Unprocessable: see the module
            docstring.
    """
    cancelled_id = inputs.cancelled_id
    for _ in range(MAX_RETRIES):
        inputs.ops = []
        inputs.cancelled_id = cancelled_id
        try:
            with time_unavailable_is_fatal():
                return await _book_once(repository, target_id, resource, inputs)
        except StoreConflict:
            if inputs.if_match is not None:
                raise PreconditionFailed("The Appointment changed concurrently") from None
            continue  # a concurrent write won the version race: decide again on what is now
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
            target_id, stored, current = await booking_id(repository, resource, inputs)
    mode = _mode(wanted.get("status") if resource is not None else None, current, target_id)
    if mode == "cancel":
        if inputs.cancelled_id is not None:
            raise Invalid("'cancelled-appt-id' goes with a booking, not with a cancellation")
        assert current is not None
        content = cancelled_content(current, wanted, inputs.comment, config)
    elif mode == "waitlist":
        content = await booked_content(repository, wanted, target_id, inputs, config, "waitlist")
        content = _with_replaces(repository, content, inputs)
    else:
        wanted = await fill_from_slots(wanted, service, repository)
        content = await booked_content(repository, wanted, target_id, inputs, config)
        await close_offered_entry(repository, current, target_id, inputs)
    prepared = await prepare_target(repository, target_id, content, stored, inputs.if_match)
    if inputs.cancelled_id is not None:
        await cancel_replaced(repository, inputs, target_id, config)
    if prepared.op is not None:
        if mode in ("book", "move"):
            require_claims(prepared, "book")
        inputs.ops.insert(0, prepared)
        await audit_write(repository, inputs, target_id, content, "C" if mode == "book" else "U")
    if inputs.ops:
        await repository.apply(inputs.ops)
    if prepared.op is not None:
        return prepared.op.version
    assert stored is not None
    return stored


def _with_replaces(
    repository: Repository, content: dict[str, Any], inputs: BookInput
) -> dict[str, Any]:
    """A waitlist entry's `cancelled-appt-id` is the Appointment it would replace: kept as
    its `waitlist-replaces` extension (nothing is cancelled now)."""
    if inputs.cancelled_id is None:
        return content
    url = extension_url(WAITLIST_REPLACES, repository.settings.extension_base)
    replaces = {"url": url, "valueReference": {"reference": f"Appointment/{inputs.cancelled_id}"}}
    inputs.cancelled_id = None
    kept = [e for e in content.get("extension") or [] if e.get("url") != url]
    return {**content, "extension": [*kept, replaces]}


def _mode(status: Any, current: dict[str, Any] | None, id: str) -> Mode:
    """The `$book` mode from the input status (None: a reference) and the stored status.

    Raises:
        Invalid: (400) a cancellation of nothing stored, or no usable status.
        Conflict: (409) an illegal status change.
    """
    stored = None if current is None else current.get("status")
    if status == "waitlist":
        if stored not in (None, "waitlist"):
            raise illegal_change(id, stored, "waitlist")
        return "waitlist"
    if status == "cancelled":
        if current is None:
            raise Invalid("A cancellation needs the id of an existing Appointment")
        if stored not in (*BOOKABLE, "booked", "cancelled", "waitlist"):
            raise illegal_change(id, stored, "cancelled")
        return "cancel"
    if status not in (None, *BOOKABLE, "booked"):
        raise Conflict(
            f"$book books (proposed, pending, booked), cancels (cancelled) or puts on the "
            f"waitlist (waitlist), not {status!r}",
            code="business-rule",
        )
    if stored is None or stored in (*BOOKABLE, "waitlist"):
        return "book"
    if stored == "booked":
        return "move"
    raise illegal_change(id, stored, "booked")


DEFINITION = operation_definition(
    "appointment-book",
    "book",
    "Book, move or cancel an appointment (IHE ITI-117)",
    "Books a proposal, a hold or a new Appointment (status proposed or pending), moves a booked "
    "one in place (status booked, existing id), cancels one (status cancelled) or puts a "
    "patient on the waitlist (status waitlist, requestedPeriod, priority), atomically; "
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
