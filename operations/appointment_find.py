"""`Appointment/$find` (IHE ITI-115 Find Potential Appointments): proposed Appointments for the
times when every requested kind of actor is free.

Request (IHE ITI-115 §2:3.115.4.1; OperationDefinition `appointment-find`), by GET or by POST
with a `Parameters` body: `start`, `end` (1..1, dateTime with an offset, `end > start`, at most
31 days apart); `practitioner`, `organization`, `location-reference`, `patient-reference`
(References: `Type/id`, this server's absolute URL, or a logical `identifier`); `specialty`,
`visit-type`, `reason` (tokens `system|code`); `_count`; and ours: `schedule` (Schedule ids),
`actor` (any scheduled actor), `service-type` (like `visit-type`) and `duration` (minutes).

Matching (IHE "Find_Appointments_Operation" comment; SCHEDULING.md "Operations"): different
kinds of actor combine with AND, repeats of one kind with OR. The first kind given drives (its
free slots are the candidates); each other kind must have a Schedule free over the whole
candidate (the union of its free slots covers it). `specialty`, `visit-type`/`service-type`,
`organization` narrow the driving Schedules. A Location that has no Schedule of its own narrows
the driving Schedules to those at that Location instead (and so does `location-reference`
alone). Several patients make a group appointment.

Response (IHE ITI-115 §2:3.115.4.2): a `searchset` Bundle of `proposed` Appointments, `total`
all the options found, entries at most `_count` (default the server's search default, at most
100). `$find` is a read: it writes no resource and no history. Each proposal is kept as a record
for `proposal_seconds` (`appointments.save_proposals`) so `$hold`/`$book`
`appointment-reference` and `GET Appointment/{id}` resolve it; Appointment search and history
never show it (IHE ITI-118). Held and booked time is never offered (its claims are live), nor
a time the patient is already booked or held at. A caller confined to one patient finds times
for that patient only (its own `patient-reference`, or none given).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

from fhir_server.messages import FhirResult, Operation, OperationCall
from fhir_server.repository import Repository
from fhir_server.search.query import TokenValue
from operations.scheduling.appointments import (
    SchedulingConfig,
    as_proposal,
    instant_text,
    save_proposals,
    scheduling,
)
from operations.scheduling.claims import SCHEDULED_ACTOR_TYPES
from operations.scheduling.find_request import FindRequest, read_find_request
from operations.scheduling.intervals import Interval, normalize, overlaps_any
from operations.scheduling.parameters import (
    OperationParams,
    operation_definition,
)
from operations.scheduling.service import SchedulingService
from operations.scheduling.slots import CandidateSlot
from operations.scheduling.taken import claimed_intervals
from resources.fhir_dates import now_us


async def find(call: OperationCall) -> FhirResult:
    """`GET|POST [base]/Appointment/$find` (IHE ITI-115).

    Raises:
        Invalid: (400) a missing or malformed parameter, a time without an offset,
            `end <= start`, or a window over 31 days.
    """
    params = OperationParams.of(call.request)
    repository = call.repository
    service, config = scheduling(repository)
    request = await read_find_request(params, repository)
    groups = await _groups(service, request)
    matches = await _matches(service, groups, request) if groups else []
    matches = await _without_patient_conflicts(repository, matches, request)
    expires = now_us() + config.proposal_seconds * 1_000_000
    proposals = [
        {
            **_proposal(service, candidate, chosen, request, config, expires),
            "id": repository.new_id(),
        }
        for candidate, chosen in matches[: request.count]
    ]
    await save_proposals(repository, proposals, expires)
    base = call.request.base_url
    query = f"?{urlencode(call.request.query)}" if call.request.query else ""
    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(matches),
        "link": [{"relation": "self", "url": f"{base}/Appointment/$find{query}"}],
        "entry": [
            {
                "fullUrl": f"{base}/Appointment/{proposal['id']}",
                "resource": proposal,
                "search": {"mode": "match"},
            }
            for proposal in proposals
        ],
    }
    return FhirResult(200, bundle)


async def _without_patient_conflicts(
    repository: Repository,
    matches: list[tuple[CandidateSlot, list[dict[str, Any]]]],
    request: FindRequest,
) -> list[tuple[CandidateSlot, list[dict[str, Any]]]]:
    """The matches none of the patients is already booked or held at (their claims)."""
    busy: list[Interval] = []
    for patient in request.patients:
        claimed = await claimed_intervals(repository.lookup, patient, request.start, request.end)
        busy.extend(interval for _owner, interval in claimed)
    if not busy:
        return matches
    taken = normalize(busy)
    return [m for m in matches if not overlaps_any(taken, m[0].interval)]


async def _groups(service: SchedulingService, request: FindRequest) -> list[list[dict[str, Any]]]:
    """The Schedules of each requested kind, the driving kind first; [] when a kind has none."""
    kinds = dict(request.kinds)
    site_filter: list[str] = []
    locations = kinds.get("Location", [])
    if locations and (len(kinds) == 1 or not await service.matcher.schedules(actors=locations)):
        site_filter = kinds.pop("Location")
    narrowing: dict[str, Any] = {
        "service_types": request.service_types,
        "specialties": request.specialties,
        "organization_refs": request.organizations,
        "location_refs": site_filter,
    }
    groups: list[list[dict[str, Any]]] = []
    if request.schedule_ids:
        groups.append(
            await service.matcher.schedules(schedule_ids=request.schedule_ids, **narrowing)
        )
        narrowing = {}
    for refs in kinds.values():
        found = await service.matcher.schedules(actors=refs, **narrowing)
        groups.append(sorted(found, key=lambda schedule: _rank(schedule, refs)))
        narrowing = {}
    if not groups:
        groups.append(await service.matcher.schedules(**narrowing))
    return groups if all(groups) else []


def _rank(schedule: dict[str, Any], refs: Sequence[str]) -> int:
    """The preference of a Schedule: the position of the first given reference it names."""
    named = {(a or {}).get("reference") for a in schedule.get("actor") or []}
    return next((i for i, ref in enumerate(refs) if ref in named), len(refs))


async def _matches(
    service: SchedulingService, groups: list[list[dict[str, Any]]], request: FindRequest
) -> list[tuple[CandidateSlot, list[dict[str, Any]]]]:
    """Each driving candidate with the Schedule chosen from every other kind (all free)."""
    window = (request.start, request.end)
    driving, others = groups[0], groups[1:]
    by_id = {str(s.get("id")): s for s in driving}
    free_of: list[list[tuple[dict[str, Any], list[Interval]]]] = []
    for group in others:
        per_schedule: dict[str, list[Interval]] = {}
        for slot in await service.free_slots(group, *window, duration_us=request.duration_us):
            per_schedule.setdefault(slot.schedule_id, []).append(slot.interval)
        free_of.append([(s, normalize(per_schedule.get(str(s.get("id")), []))) for s in group])
    matches = []
    for candidate in await service.free_slots(driving, *window, duration_us=request.duration_us):
        chosen = [by_id[candidate.schedule_id]]
        for group_free in free_of:
            pick = next(
                (
                    schedule
                    for schedule, free in group_free
                    if schedule.get("id") == candidate.schedule_id
                    or any(item.contains(candidate.interval) for item in free)
                ),
                None,
            )
            if pick is None:
                break
            chosen.append(pick)
        else:
            matches.append((candidate, chosen))
    return matches


def _codings(tokens: Sequence[TokenValue]) -> list[dict[str, Any]]:
    out = []
    for token in tokens:
        coding = {"code": token.code} if token.code else {}
        if token.system not in (None, "*"):
            coding["system"] = str(token.system)
        out.append({"coding": [coding]})
    return out


def _proposal(
    service: SchedulingService,
    candidate: CandidateSlot,
    chosen: list[dict[str, Any]],
    request: FindRequest,
    config: SchedulingConfig,
    expires: int,
) -> dict[str, Any]:
    """A proposed Appointment (IHE `ihe-sched-appt`) for one match, marked as a proposal."""
    slot = service.slot_resource(candidate)
    participants: list[dict[str, Any]] = []
    seen: set[str] = set()
    # a shared Slot's seats are its claims; its Schedule's actors take no minutes (claims.py)
    for schedule in chosen:
        for actor in schedule.get("actor") or []:
            ref = (actor or {}).get("reference")
            if isinstance(ref, str) and service.pair(actor) and ref not in seen:
                seen.add(ref)
                participants.append(
                    {"actor": actor, "required": "required", "status": "needs-action"}
                )
    for ref in request.patients:
        participants.append(
            {"actor": {"reference": ref}, "required": "required", "status": "needs-action"}
        )
    appointment: dict[str, Any] = {"resourceType": "Appointment", "status": "proposed"}
    if slot.get("serviceCategory"):
        appointment["serviceCategory"] = slot["serviceCategory"]
    service_types = _codings(request.service_types) or slot.get("serviceType")
    specialties = _codings(request.specialties) or slot.get("specialty")
    if service_types:
        appointment["serviceType"] = service_types
    if specialties:
        appointment["specialty"] = specialties
    if request.reasons:
        appointment["reasonCode"] = _codings(request.reasons)
    minutes, rest = divmod(candidate.end - candidate.start, 60_000_000)
    appointment.update(
        start=instant_text(candidate.start),
        end=instant_text(candidate.end),
        slot=[{"reference": f"Slot/{candidate.slot_id}"}],
        participant=participants,
        requestedPeriod=[{"start": instant_text(request.start), "end": instant_text(request.end)}],
    )
    if not rest:
        appointment["minutesDuration"] = minutes
    return as_proposal(appointment, expires, config)


_SCHEDULED = "|".join(sorted(SCHEDULED_ACTOR_TYPES))
DEFINITION = operation_definition(
    "appointment-find",
    "find",
    "Find potential appointments (IHE ITI-115)",
    "Proposed Appointments for the times in [start, end) when every requested kind of actor is "
    "free (different kinds AND, repeats of one kind OR). Each proposal is stored for a short "
    "while so $hold and $book can reference it, and never appears in Appointment search. "
    "Errors: 400 for a missing or malformed parameter, a time without an offset, end not after "
    "start, or a window over 31 days.",
    [
        ("start", "dateTime", "1..1", "Window start, with an offset."),
        ("end", "dateTime", "1..1", "Window end (exclusive), at most 31 days after start."),
        ("specialty", "token", "0..*", "Specialty, system|code."),
        ("visit-type", "token", "0..*", "Visit (service) type, system|code."),
        ("service-type", "token", "0..*", "Ours: the same as visit-type."),
        ("practitioner", "Reference(Practitioner|PractitionerRole)", "0..*", "Who is booked (OR)."),
        ("organization", "Reference(Organization)", "0..*", "The Organization of the actors (OR)."),
        ("location-reference", "Reference(Location)", "0..*", "Where (OR)."),
        ("patient-reference", "Reference(Patient)", "0..*", "Patient(s); several: a group visit."),
        ("reason", "token", "0..*", "Reason for the visit, system|code (copied)."),
        ("schedule", "Reference(Schedule)", "0..*", "Ours: Schedules to search (OR)."),
        ("actor", f"Reference({_SCHEDULED})", "0..*", "Ours: any scheduled actor; kinds AND."),
        ("duration", "positiveInt", "0..1", "Ours: visit length in minutes."),
        ("_count", "integer", "0..1", "Most proposals returned (at most 100)."),
        ("return", "out:Bundle", "1..1", "searchset of proposed Appointments; total counts all."),
    ],
)
"""Our OperationDefinition `appointment-find` (IHE parameter names plus ours)."""

OPERATION = Operation(
    name="find",
    handler=find,
    type_level=True,
    resource_types=frozenset({"Appointment"}),
    methods=frozenset({"GET", "POST"}),
    requires=(("Appointment", "s"),),  # SMART.md scopes
)
