"""`Appointment/$hold` (IHE ITI-116 Hold Appointment): keep a proposed time for a short while.

Request (IHE ITI-116 §2:3.116.4.1; OperationDefinition `appointment-hold`): POST only (GET is 405),
with `appointment-reference` (a `$find` proposal, still resolvable) or, as Argonaut Scheduling
allows, `appointment-resource` (a new Appointment, e.g. built from a Slot of `$find-slots`; a
rule-derived `slot` fills its time and the Schedule's actors).

Expected actions (IHE ITI-116 §2:3.116.4.2.3; SCHEDULING.md "`$hold` marks the time
busy-tentative"): the Appointment becomes `pending` with our `hold-expires` extension at now +
`hold_seconds`, written through the Repository so its time claims (`operations.scheduling.claims`)
are taken atomically, with an expiry: nobody else can hold or book that time until then, and the
hold lapses by itself afterwards (`operations.scheduling.holds`). The response is a `searchset`
Bundle with the held Appointment and an `Expires` header (RFC 7231 date; Argonaut "An `Expires`
header Should be included"). An AuditEvent (ITI-116) is written in the same atomic apply.

Errors (SCHEDULING.md "Errors"): 404 unknown or expired proposal; 409 the time is taken
(`severity=fatal`, `code=not-found`, detail `slot-unavailable`), the Appointment is already held,
or it is not in a status that can be held (booked, cancelled, ...); 412 `If-Match` mismatch; 422
no Schedule or Slot whose time it could hold, or Appointment invariants broken.
"""

from __future__ import annotations

from typing import Any

from fhir_server.messages import FhirResult, Operation, OperationCall
from fhir_server.model import StoredResource
from fhir_server.repository import Prepared, Repository
from operations.scheduling.appointments import (
    appointment_bundle,
    fill_from_slots,
    http_date,
    load_appointment,
    patient_ids,
    require_claims,
    scheduling,
    time_unavailable_is_fatal,
    with_hold,
)
from operations.scheduling.audit import audit_event
from operations.scheduling.parameters import (
    OperationParams,
    operation_definition,
    target_of,
)
from resources.errors import Conflict, PreconditionFailed, StoreConflict
from resources.fhir_dates import now_us

HOLDABLE = frozenset({"proposed", "pending"})
"""The statuses an `appointment-resource` may carry into `$hold`."""


async def hold(call: OperationCall) -> FhirResult:
    """`POST [base]/Appointment/$hold` (IHE ITI-116).

    Raises:
        Invalid: (400) no or both target parameters, or a malformed one.
        NotFound: (404) unknown or expired proposal.
        Conflict: (409) time taken, already held, or a status that cannot be held.
        PreconditionFailed: (412) `If-Match` does not match the proposal's version.
        Unprocessable: (422) nothing to hold, or invariants broken.
    """
    request = call.request
    params = OperationParams.of(request, bare_resource="appointment-resource")
    repository = call.repository.strict()  # $hold always applies availability
    target_id, resource = target_of(params, repository.bases)
    if resource is not None:
        if resource.get("status") not in HOLDABLE:
            raise Conflict(
                f"An Appointment with status {resource.get('status')!r} cannot be held; "
                "send it as proposed or pending",
                code="business-rule",
            )
        target_id = resource.get("id") if isinstance(resource.get("id"), str) else None
    expires = now_us() + repository.settings.hold_seconds * 1_000_000
    held = await place_hold(repository, resource, target_id, expires, if_match=request.if_match)
    bundle = appointment_bundle(held, request.base_url)
    return FhirResult(200, bundle, headers={"Expires": http_date(expires)})


async def place_hold(
    repository: Repository,
    resource: dict[str, Any] | None,
    target_id: str | None,
    expires: int,
    *,
    if_match: str | None = None,
    new_id: str | None = None,
) -> StoredResource:
    """Hold an Appointment until `expires` (µs UTC), with its AuditEvent, in one apply: the
    stored proposal or Appointment `target_id` (`resource`, when given, is what to hold), or
    the new Appointment `resource` (id `new_id`, or a server-assigned one). `repository`
    should be strict (availability enforced). The waitlist's offers are holds too.

    Raises:
        NotFound, Conflict, PreconditionFailed, Unprocessable: as `hold`.
    """
    service, config = scheduling(repository)
    stored: StoredResource | None = None
    if target_id is not None:
        stored, current = await load_appointment(repository, target_id, config)
        _check_holdable(current, target_id)
        resource = resource or current
    assert resource is not None
    content = await fill_from_slots(resource, service, repository)
    held = {**with_hold(content, expires, config), "resourceType": "Appointment"}
    with time_unavailable_is_fatal():
        prepared = await _prepare(repository, held, stored, target_id or new_id, if_match)
        require_claims(prepared, "hold")
        assert prepared.op is not None
        id = prepared.op.version.id
        audit = audit_event(
            transaction="ITI-116",
            action="C",
            appointment_id=id,
            patients=patient_ids(held, repository),
            base_url=repository.base_url,
            requestor=repository.policy.requestor(),
        )
        try:
            await repository.apply([prepared, await repository.prepare_audit(audit)])
        except StoreConflict:
            raise _taken_by_other(id) from None
    return prepared.op.version


def _check_holdable(current: dict[str, Any], id: str) -> None:
    status = current.get("status")
    if status == "pending":
        raise Conflict(
            f"Appointment/{id} is already held; book it with $book, or wait for the hold to end"
        )
    if status != "proposed":
        raise Conflict(
            f"Appointment/{id} is {status}: only a proposed Appointment can be held",
            code="business-rule",
        )


async def _prepare(
    repository: Repository,
    held: dict[str, Any],
    stored: StoredResource | None,
    proposal_id: str | None,
    if_match: str | None,
) -> Prepared:
    """The write of the held Appointment: an update of the stored one read (its version
    expected, so a concurrent hold or book makes this one fail), or the creation of a new one
    (with the `$find` proposal's id, which only one hold can create)."""
    if stored is None:
        return await repository.prepare_create(held, id=proposal_id)
    try:
        prepared = await repository.prepare_update(
            "Appointment",
            stored.id,
            {**held, "id": stored.id},
            if_match=if_match or str(stored.version_id),
        )
    except PreconditionFailed:
        if if_match is not None:
            raise
        raise _taken_by_other(stored.id) from None
    assert prepared.op is not None  # a proposal always changes when held
    return prepared


def _taken_by_other(id: str) -> Conflict:
    return Conflict(f"Appointment/{id} was held or booked by another request meanwhile")


DEFINITION = operation_definition(
    "appointment-hold",
    "hold",
    "Hold an appointment (IHE ITI-116)",
    "Holds a proposed Appointment (or a new one) for a short while: status pending with our "
    "hold-expires extension and an Expires header; nobody else can hold or book that time until "
    "then. POST only. Errors: 404 unknown or expired proposal; 409 time no longer free "
    "(severity fatal, code not-found, detail slot-unavailable), already held, or a status that "
    "cannot be held; 412 If-Match mismatch; 422 nothing to hold or invariants broken.",
    [
        ("appointment-reference", "Reference(Appointment)", "0..1", "A proposal from $find."),
        (
            "appointment-resource",
            "Appointment",
            "0..1",
            "Ours: a new Appointment to hold.",
        ),
        ("return", "out:Bundle", "1..1", "searchset with the held Appointment."),
    ],
)
"""Our OperationDefinition `appointment-hold` (IHE parameter names plus ours)."""

OPERATION = Operation(
    name="hold",
    handler=hold,
    type_level=True,
    resource_types=frozenset({"Appointment"}),
    methods=frozenset({"POST"}),
    requires=(("Appointment", "c"), ("Appointment", "u")),  # SMART.md scopes
)
