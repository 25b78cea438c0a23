"""`Slot/$find-slots` and `Schedule/{id}/$find-slots`: the free Slots of Schedules in a window.

Our own operation (SCHEDULING.md "Operations"; its OperationDefinition is `slot-find-slots` in
`conformance.operation_definitions`). GET with query parameters or POST with a Parameters body
(R4 `operations.html#request`); both are read the same way:

- `start`, `end` (1..1): dateTimes with seconds and a UTC offset; `end > start`, at most 31
  days apart.
- `schedule` (a Schedule reference or id), `actor` (a reference to a Practitioner,
  PractitionerRole, Location, HealthcareService or Device), `location`, `organization`
  (references or ids), `service-type`, `specialty` (tokens `system|code`): repeats (or
  comma-separated values) of one parameter OR, different parameters AND
  (`SchedulingService.schedules`).
- `duration`: the visit length of rule-derived slots in minutes (1..1440).
- `_count`: how many Slots to return (default 100, at most 1000; `total` counts them all).

Returns a `searchset` Bundle: the free Slots by start, then Schedule id (`search.mode` match;
stored ones with their ids and the seats left, rule-derived ones with deterministic ids that
`GET Slot/{id}` and `$book` resolve while free), then the Schedules of the Slots returned
(`search.mode` include) when the caller may read Schedules. Every failure is a 400
OperationOutcome whose `expression` names the parameter (SCHEDULING.md "Errors"); an unknown
Schedule in `Schedule/{id}/$find-slots` is 404.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlencode

from fhir_server.messages import FhirRequest, FhirResult, Operation, OperationCall
from fhir_server.repository import load_json
from fhir_server.search.query import TokenValue
from fhir_server.search.values import parse_token, split_or, unescape
from operations.scheduling.claims import SCHEDULED_ACTOR_TYPES
from operations.scheduling.service import SchedulingService
from resources.errors import Invalid, IssueType, NotFound, TooCostly
from resources.fhir_dates import format_instant, now_us, parse_instant
from resources.references import parse_reference
from resources.types import FHIR_ID_RE

__all__ = ["DEFAULT_COUNT", "MAX_COUNT", "MAX_WINDOW_DAYS", "OPERATION", "FindSlotsRequest"]

MAX_WINDOW_DAYS: Final = 31
DEFAULT_COUNT: Final = 100
MAX_COUNT: Final = 1000
MAX_DURATION_MINUTES: Final = 1440
MAX_SCHEDULES: Final = 1000
"""The most Schedules one call may cover (narrow the search beyond that: 400 too-costly)."""
_MINUTE_US: Final = 60_000_000
_SINGLE: Final = ("start", "end", "duration", "_count")
_REPEATING: Final = ("schedule", "actor", "service-type", "specialty", "location", "organization")
_GENERAL: Final = frozenset({"_format", "_pretty"})
_DEFAULT_TYPE: Final = {
    "schedule": "Schedule",
    "location": "Location",
    "organization": "Organization",
}


@dataclass(frozen=True, slots=True)
class FindSlotsRequest:
    """The parameters of one `$find-slots` call, checked.

    Attributes:
        start, end: the window, µs UTC.
        schedules, actors, locations, organizations: references as `Type/id`.
        service_types, specialties: token values.
        duration_us: the visit length of rule slots (µs), or None for each Schedule's own.
        count: the most Slots to return.
        echo: the parameters understood, in order, for the `self` link.
    """

    start: int
    end: int
    schedules: tuple[str, ...]
    actors: tuple[str, ...]
    service_types: tuple[TokenValue, ...]
    specialties: tuple[TokenValue, ...]
    locations: tuple[str, ...]
    organizations: tuple[str, ...]
    duration_us: int | None
    count: int
    echo: tuple[tuple[str, str], ...]

    @property
    def narrowed(self) -> bool:
        """True when a parameter other than `schedule` narrows the Schedules."""
        return any(
            (self.actors, self.service_types, self.specialties, self.locations, self.organizations)
        )


def _bad(name: str, message: str, code: IssueType = "invalid") -> Invalid:
    return Invalid(f"$find-slots parameter '{name}': {message}", code=code, expression=[name])


def _escape(text: Any) -> str:
    """A value made safe for `split_or`/`parse_token` (R4 `search.html#escaping`)."""
    return re.sub(r"([\\,|$])", r"\\\1", str(text or ""))


def _text(param: Mapping[str, Any]) -> list[str]:
    """The values of one `Parameters.parameter` as query-style texts."""
    name = str(param.get("name"))
    keys = [k for k in param if k.startswith("value")]
    if len(keys) != 1 or "part" in param or "resource" in param:
        raise _bad(name, "each parameter needs exactly one value[x]")
    key, value = keys[0], param[keys[0]]
    if key in ("valueReference", "valueCoding", "valueCodeableConcept"):
        if not isinstance(value, Mapping):
            raise _bad(name, f"{key} must be an object")
        if key == "valueReference":
            return [_escape(value.get("reference"))]
        codings = value.get("coding") if key == "valueCodeableConcept" else [value]
        return [
            f"{_escape(c.get('system'))}|{_escape(c.get('code'))}"
            for c in codings or ()
            if isinstance(c, Mapping)
        ]
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _bad(name, f"{key} is not a value this parameter takes")
    return [str(value)]


def operation_parameters(request: FhirRequest) -> list[tuple[str, str]]:
    """The `(name, value)` pairs of a call: the query string, then a POSTed Parameters body.

    Raises:
        Invalid: (400) a body that is not a Parameters resource, or a parameter without
            exactly one usable `value[x]`.
    """
    pairs = list(request.query)
    body = request.body
    if request.method == "POST" and body is not None:
        if not isinstance(body, Mapping) or body.get("resourceType") != "Parameters":
            raise Invalid("$find-slots takes a Parameters resource as its body", code="structure")
        for param in body.get("parameter") or ():
            if not isinstance(param, Mapping) or not isinstance(param.get("name"), str):
                raise Invalid("Every Parameters.parameter needs a name", code="structure")
            pairs.extend((param["name"], text) for text in _text(param))
    return pairs


def _instant(name: str, values: Sequence[str]) -> int:
    if not values:
        raise _bad(name, "is required", "required")
    try:
        return parse_instant(values[0])
    except ValueError as exc:
        raise _bad(name, f"needs a dateTime with seconds and a UTC offset ({exc})") from exc


def _number(name: str, values: Sequence[str], default: int | None, low: int) -> int | None:
    if not values:
        return default
    text = values[0].strip()
    if not text.lstrip("-").isdigit() or int(text) < low:
        raise _bad(name, f"must be an integer of at least {low}, not {values[0]!r}")
    return int(text)


def _references(name: str, values: Sequence[str], bases: tuple[str, ...]) -> tuple[str, ...]:
    """Canonical `Type/id` of each reference value (a bare id takes the parameter's type);
    references to another server are refused."""
    out: list[str] = []
    default = _DEFAULT_TYPE.get(name)
    for raw in (unescape(v).strip() for value in values for v in split_or(value)):
        pair = parse_reference(raw, bases).pair
        if pair is None and default and FHIR_ID_RE.fullmatch(raw):
            pair = (default, raw)
        allowed = {default} if default else SCHEDULED_ACTOR_TYPES
        if pair is None or pair[0] not in allowed:
            kinds = " or ".join(sorted(t for t in allowed if t))
            raise _bad(name, f"{raw!r} is not a reference to a {kinds} on this server")
        out.append(f"{pair[0]}/{pair[1]}")
    return tuple(out)


def _tokens(name: str, values: Sequence[str]) -> tuple[TokenValue, ...]:
    try:
        return tuple(parse_token(v) for value in values for v in split_or(value))
    except ValueError as exc:
        raise _bad(name, str(exc)) from exc


def parse_request(request: FhirRequest, bases: tuple[str, ...] = ()) -> FindSlotsRequest:
    """Read and check the parameters of a `$find-slots` call (module docstring); references
    are read against this server's `bases`.

    Unknown parameters are ignored and left out of the `self` link, or refused (400) under
    `Prefer: handling=strict`, as for search.

    Raises:
        Invalid: (400 `required`/`invalid`, `expression` = the parameter) a missing or
            malformed parameter, a time without an offset, `end <= start`, a window over 31
            days, a single parameter given twice.
    """
    values: dict[str, list[str]] = {name: [] for name in (*_SINGLE, *_REPEATING)}
    echo: list[tuple[str, str]] = []
    for name, value in operation_parameters(request):
        if name in values:
            values[name].append(value)
            echo.append((name, value))
        elif request.strict and name not in _GENERAL:
            raise _bad(name, "is not a parameter of $find-slots")
    for name in _SINGLE:
        if len(values[name]) > 1:
            raise _bad(name, "may be given only once")
    start, end = _instant("start", values["start"]), _instant("end", values["end"])
    if end <= start:
        raise _bad("end", "must be after start")
    if end - start > MAX_WINDOW_DAYS * 1440 * _MINUTE_US:
        raise _bad("end", f"the window may span at most {MAX_WINDOW_DAYS} days")
    duration = _number("duration", values["duration"], None, 1)
    if duration is not None and duration > MAX_DURATION_MINUTES:
        raise _bad("duration", f"may be at most {MAX_DURATION_MINUTES} minutes")
    count = _number("_count", values["_count"], DEFAULT_COUNT, 0) or 0
    return FindSlotsRequest(
        start=start,
        end=end,
        schedules=_references("schedule", values["schedule"], bases),
        actors=_references("actor", values["actor"], bases),
        service_types=_tokens("service-type", values["service-type"]),
        specialties=_tokens("specialty", values["specialty"]),
        locations=_references("location", values["location"], bases),
        organizations=_references("organization", values["organization"], bases),
        duration_us=None if duration is None else duration * _MINUTE_US,
        count=min(count, MAX_COUNT),
        echo=tuple(echo),
    )


async def _schedules(
    call: OperationCall, service: SchedulingService, args: FindSlotsRequest
) -> list[dict[str, Any]]:
    """The Schedules the call covers (the one of the URL, narrowed by the parameters)."""
    ids: tuple[str, ...] = args.schedules
    if call.id is not None:
        target = call.target or await call.repository.read("Schedule", call.id)
        schedule = load_json(target.content)
        if args.schedules and f"Schedule/{call.id}" not in args.schedules:
            return []
        if not args.narrowed:
            return [schedule] if schedule.get("active") is not False else []
        ids = (call.id,)
    found = await service.matcher.schedules(
        schedule_ids=ids,
        actors=args.actors,
        service_types=args.service_types,
        specialties=args.specialties,
        location_refs=args.locations,
        organization_refs=args.organizations,
    )
    if len(found) > MAX_SCHEDULES:
        raise TooCostly(
            f"$find-slots would cover {len(found)} Schedules (at most {MAX_SCHEDULES}): "
            "narrow it with schedule, actor, service-type, specialty, location or organization"
        )
    return found


async def find_slots(call: OperationCall) -> FhirResult:
    """`Slot/$find-slots` (type level) or `Schedule/{id}/$find-slots` (instance level).

    Raises:
        NotFound: (404) invoked on another level or type, or an unknown Schedule id.
        Invalid: (400) see `parse_request`.
    """
    if (call.resource_type, call.id is None) not in (("Slot", True), ("Schedule", False)):
        where = "/".join(p for p in (call.resource_type, call.id) if p)
        raise NotFound(
            f"$find-slots is invoked as Slot/$find-slots or Schedule/[id]/$find-slots, "
            f"not on {where}",
            code="not-supported",
        )
    args = parse_request(call.request, call.repository.bases)
    service = SchedulingService(call.repository)
    schedules = await _schedules(call, service, args)
    shown, total = await service.free_slot_page(
        schedules, args.start, args.end, args.count, duration_us=args.duration_us
    )
    base = call.request.base_url
    entries: list[dict[str, Any]] = [
        {
            "fullUrl": f"{base}/Slot/{slot.slot_id}",
            "resource": service.slot_resource(slot),
            "search": {"mode": "match"},
        }
        for slot in shown
    ]
    by_id = {str(s.get("id")): s for s in schedules if call.repository.sees("Schedule")}
    entries += [
        {"fullUrl": f"{base}/Schedule/{sid}", "resource": by_id[sid], "search": {"mode": "include"}}
        for sid in dict.fromkeys(slot.schedule_id for slot in shown)
        if sid in by_id
    ]
    path = "Slot/$find-slots" if call.id is None else f"Schedule/{call.id}/$find-slots"
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "meta": {"lastUpdated": format_instant(now_us())},
        "total": total,
        "link": [{"relation": "self", "url": f"{base}/{path}?{urlencode(args.echo)}"}],
    }
    if entries:
        bundle["entry"] = entries
    return FhirResult(200, bundle)


OPERATION = Operation(
    name="find-slots",
    handler=find_slots,
    type_level=True,
    instance=True,
    resource_types=frozenset({"Slot", "Schedule"}),
    definition={"url": "https://fhir-scheduling.example.org/OperationDefinition/slot-find-slots"},
    requires=(("Slot", "s"),),  # SMART.md scopes
)
"""Registered for Slot and Schedule at both levels (one `Operation` per name cannot say "type
level on Slot, instance level on Schedule"); `find_slots` answers 404 on the other two."""
