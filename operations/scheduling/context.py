"""What one availability computation reads: a Schedule's context and its taken time.

SCHEDULING.md "Resources and where availability comes from" and "Never double-book". The pure
engine (`operations.scheduling.rules`, `slots`) needs, per Schedule: its actors and their sites
(`ScheduleContext`: time zone, weekly rules, visit length and buffers, read once per call with
`read_many`), its stored Slots (free ones with their seats, blocking ones), and its booked and held
time, which is exactly the set of live claims (`Lookup.claims_in`): minute claims
`Schedule/{id}#{minute}` and seat claims `Slot/{id}#{seat}` (holds are claims with an expiry, so
a held time is never offered). Instants are µs since the epoch (UTC), intervals half-open.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from fhir_server.repository import Lookup
from fhir_server.search.query import (
    Condition,
    DateCondition,
    RangeValue,
    ReferenceCondition,
    ReferenceValue,
    StoreQuery,
    TokenCondition,
    TokenValue,
)
from operations.scheduling.claims import HOLDING_STATUSES, MINUTE_US, hold_expiry
from operations.scheduling.extensions import (
    DEFAULT_BASE,
    HOLD_EXPIRES,
    BookingParameters,
    ExtensionError,
    booking_parameters,
    extension_url,
    slot_capacity,
)
from operations.scheduling.intervals import FOREVER, NEVER, Interval
from operations.scheduling.rules import period_interval
from operations.scheduling.sources import WeeklyRules, rules_for
from operations.scheduling.timezones import local_date, location_references, schedule_timezone, zone
from resources.fhir_dates import date_range, now_us
from resources.references import parse_reference

__all__ = [
    "BLOCKING_STATUSES",
    "ScheduleContext",
    "StoredSlots",
    "TakenTime",
    "bookings_per_day",
    "build_context",
    "claimed_intervals",
    "load_contexts",
    "planning_horizon",
    "reference_parts",
    "seat_owners",
    "stored_slots",
    "taken_time",
]

log = logging.getLogger(__name__)

BLOCKING_STATUSES: Final = frozenset({"busy-unavailable", "busy", "busy-tentative"})
"""Stored Slot statuses whose time is never offered (blocked, or booked outside this server)."""


@dataclass(frozen=True, slots=True)
class ScheduleContext:
    """Everything availability needs to know about one Schedule, read once per call.

    Attributes:
        schedule: the Schedule as FHIR JSON.
        actors: the resources `Schedule.actor` references that exist, in actor order.
        locations: the actors' sites (`PractitionerRole.location`, `HealthcareService.location`).
        services: the HealthcareService actors (visit length and buffers may sit there).
        tz: the IANA zone its wall-clock rules are read in (SCHEDULING.md "Time zone").
        params: visit length, buffers and daily limit (µs; SCHEDULING.md "Visit length").
        weekly: its weekly rules, or None (then only stored Slots are offered).
        problems: malformed data found while reading (an unreadable rule source or extension);
            the part concerned is left out, never guessed.
        bases: this server's base URLs (absolute references on them are local).
    """

    schedule: dict[str, Any]
    actors: tuple[dict[str, Any], ...]
    locations: tuple[dict[str, Any], ...]
    services: tuple[dict[str, Any], ...]
    tz: str
    params: BookingParameters
    weekly: WeeklyRules | None
    problems: tuple[str, ...] = ()
    bases: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        """The Schedule's id."""
        return str(self.schedule.get("id", ""))

    @property
    def reference(self) -> str:
        """`Schedule/{id}`, the scope of its minute claims."""
        return f"Schedule/{self.id}"

    @property
    def active(self) -> bool:
        """False when `Schedule.active` is false: it then offers nothing at all."""
        return self.schedule.get("active") is not False


@dataclass(frozen=True, slots=True)
class StoredSlots:
    """The stored Slots of one Schedule that matter to a search window.

    Attributes:
        free: `(slot id, interval, seats)` of its `status=free` Slots (`slots.StoredSlot`).
        blocked: the intervals of its Slots in `BLOCKING_STATUSES`.
        content: the free Slots as FHIR JSON, by id (served with their seats left).
    """

    free: list[tuple[str, Interval, int]]
    blocked: list[Interval]
    content: dict[str, dict[str, Any]]


@dataclass(frozen=True, slots=True)
class TakenTime:
    """The booked and held time of one Schedule, as `slots.free_slots` takes it.

    Attributes:
        busy: booked and held visit times (live minute claims, each owner's run merged),
            except those of a seat holder inside its shared Slot (counted in `seats`).
        seats: the live seat claims per shared stored Slot id.
        per_day: bookings per local date when the Schedule has `max-bookings-per-day`.
    """

    busy: list[Interval]
    seats: dict[str, int]
    per_day: dict[dt.date, int] | None


def reference_parts(text: str, default_type: str | None = None) -> tuple[str, str] | None:
    """`(type, id)` of a reference written `Type/id` (an absolute URL's last two parts), or of
    a bare `id` when `default_type` is given; None for anything else."""
    rtype, _, rid = text.strip().rpartition("/")
    rtype = rtype.rsplit("/", 1)[-1] or (default_type or "")
    return (rtype, rid) if rtype and rid else None


def planning_horizon(context: ScheduleContext) -> Interval:
    """`Schedule.planningHorizon` as an interval (open sides unbounded; `rules.period_interval`).

    Raises:
        ValueError: a malformed planningHorizon.
    """
    horizon = context.schedule.get("planningHorizon")
    if not isinstance(horizon, Mapping):
        return Interval(NEVER, FOREVER)
    return period_interval(horizon.get("start"), horizon.get("end"), context.tz)


def _literal(reference: Any, bases: tuple[str, ...] = ()) -> tuple[str, str] | None:
    """`(type, id)` of a Reference to a resource of this server (`resources.references`)."""
    text = reference.get("reference") if isinstance(reference, Mapping) else None
    if not isinstance(text, str):
        return None
    return parse_reference(text, bases).pair


def build_context(
    schedule: dict[str, Any],
    resources: Mapping[tuple[str, str], dict[str, Any]],
    extension_base: str,
    default_tz: str,
    bases: tuple[str, ...] = (),
) -> ScheduleContext:
    """The context of one Schedule from resources already read (pure).

    Args:
        schedule: the Schedule as FHIR JSON.
        resources: actors and sites by `(type, id)`; missing ones are skipped.
        extension_base: the canonical base of our extensions.
        default_tz: the server default zone (`FHIR_SERVER_DEFAULT_TIMEZONE`).

    Raises:
        ValueError: no source names a known zone and `default_tz` is unknown too.
    """
    refs = [_literal(actor, bases) for actor in schedule.get("actor") or ()]
    actors = tuple(resources[ref] for ref in refs if ref is not None and ref in resources)
    sites = [_literal({"reference": text}, bases) for text in location_references(actors)]
    locations = tuple(resources[ref] for ref in sites if ref is not None and ref in resources)
    services = tuple(a for a in actors if a.get("resourceType") == "HealthcareService")
    tz = schedule_timezone(schedule, actors, locations, default_tz)
    problems: list[str] = []
    try:
        params = booking_parameters(schedule, services, extension_base)
    except ExtensionError as exc:
        params = BookingParameters()
        problems.append(str(exc))
    try:
        weekly = rules_for(schedule, actors, extension_base, locations)
    except ValueError as exc:
        weekly = None
        problems.append(str(exc))
    for problem in problems:
        log.warning("Schedule/%s: %s", schedule.get("id"), problem)
    return ScheduleContext(
        schedule, actors, locations, services, tz, params, weekly, tuple(problems), bases
    )


async def load_contexts(
    lookup: Lookup,
    schedules: Sequence[dict[str, Any]],
    extension_base: str,
    default_tz: str,
    bases: tuple[str, ...] = (),
) -> list[ScheduleContext]:
    """The contexts of several Schedules with two `read_many` calls (actors, then their sites).

    Returns:
        One context per Schedule, in order (see `build_context`).
    """
    actor_refs = [
        ref
        for schedule in schedules
        for ref in (_literal(actor, bases) for actor in schedule.get("actor") or ())
        if ref is not None
    ]
    resources = await lookup.read_json(actor_refs)
    site_refs = {
        ref
        for ref in (
            _literal({"reference": t}, bases) for t in location_references(resources.values())
        )
        if ref is not None and ref not in resources
    }
    resources.update(await lookup.read_json(sorted(site_refs)))
    return [build_context(s, resources, extension_base, default_tz, bases) for s in schedules]


def _instant(text: Any, tz: str) -> int | None:
    if not isinstance(text, str):
        return None
    try:
        return date_range(text, tz)[0]
    except ValueError:
        return None


def _interval(slot: Mapping[str, Any], tz: str) -> Interval | None:
    start, end = _instant(slot.get("start"), tz), _instant(slot.get("end"), tz)
    if start is None or end is None or end < start:
        return None
    return Interval(start, end)


async def stored_slots(
    lookup: Lookup, contexts: Sequence[ScheduleContext], low: int, high: int
) -> dict[str, StoredSlots]:
    """The stored Slots of the Schedules starting in `[low, high)` (µs UTC), one search in all.

    A free Slot's seats come from `slot-capacity` (a malformed one counts as 1 seat and is
    logged). Slots without a readable start and end are skipped.

    Returns:
        `StoredSlots` by Schedule id (every context present, possibly empty).
    """
    found: dict[str, StoredSlots] = {c.id: StoredSlots([], [], {}) for c in contexts}
    if not found:
        return found
    bases = contexts[0].bases
    tz_of = {c.id: c.tz for c in contexts}
    conditions: tuple[Condition, ...] = (
        ReferenceCondition("schedule", tuple(ReferenceValue("Schedule", i) for i in found)),
        DateCondition("start", (RangeValue("ge", low, low + 1),)),
        DateCondition("start", (RangeValue("lt", high, high + 1),)),
    )
    for slot in await lookup.search_all(StoreQuery("Slot", conditions)):
        ref = _literal(slot.get("schedule"), bases)
        if ref is None or ref[0] != "Schedule" or ref[1] not in found:
            continue
        interval = _interval(slot, tz_of[ref[1]])
        status, into = slot.get("status"), found[ref[1]]
        if interval is None:
            continue
        if status in BLOCKING_STATUSES:
            into.blocked.append(interval)
        elif status == "free":
            try:
                seats = slot_capacity(slot)
            except ExtensionError as exc:
                log.warning("Slot/%s: %s", slot.get("id"), exc)
                seats = 1
            into.free.append((str(slot.get("id")), interval, seats))
            into.content[str(slot.get("id"))] = slot
    return found


async def claimed_intervals(
    lookup: Lookup, scope: str, low: int, high: int
) -> list[tuple[str, Interval]]:
    """The booked and held time of `scope` (`Schedule/{id}`) in `[low, high)` µs UTC.

    Reads the live minute claims (expired holds are left out by the store) and merges each
    owner's consecutive minutes into one interval.

    Returns:
        `(owner, interval)` pairs, e.g. `("Appointment/7", [09:00Z, 09:30Z))`, by start.
    """
    first, last = low // MINUTE_US, -(-high // MINUTE_US)
    runs: dict[str, list[list[int]]] = defaultdict(list)
    for claim in await lookup.claims_in(scope, first, last):
        owned = runs[claim.owner]
        minute = claim.key.quantum
        if owned and owned[-1][1] == minute:
            owned[-1][1] = minute + 1
        else:
            owned.append([minute, minute + 1])
    merged = [
        (owner, Interval(start * MINUTE_US, end * MINUTE_US))
        for owner, spans in runs.items()
        for start, end in spans
    ]
    merged.sort(key=lambda item: (item[1], item[0]))
    return merged


async def seat_owners(lookup: Lookup, slot_id: str, capacity: int) -> set[str]:
    """The owners of the live seat claims `Slot/{slot_id}#{seat}` (seats `0..capacity-1`)."""
    return {claim.owner for claim in await lookup.claims_in(f"Slot/{slot_id}", 0, capacity)}


async def bookings_per_day(
    lookup: Lookup,
    context: ScheduleContext,
    low: int,
    high: int,
    extension_base: str = DEFAULT_BASE,
) -> dict[dt.date, int]:
    """How many bookings and live holds each local day of a Schedule holds (for
    `max-bookings-per-day`): Appointments with a holding status that name one of its actors and
    start in `[low, high)` µs UTC, counted per local date of their start in the Schedule's zone.
    Holds whose `hold-expires` (under `extension_base`) has passed are not counted.
    """
    actors = [
        ReferenceValue(rtype, rid)
        for rtype, rid in filter(
            None, (_literal(a, context.bases) for a in context.schedule.get("actor") or ())
        )
    ]
    if not actors:
        return {}
    conditions: tuple[Condition, ...] = (
        ReferenceCondition("actor", tuple(actors)),
        DateCondition("date", (RangeValue("ge", low, low + 1),)),
        DateCondition("date", (RangeValue("lt", high, high + 1),)),
        TokenCondition("status", tuple(TokenValue("*", s) for s in sorted(HOLDING_STATUSES))),
    )
    now, zone_info = now_us(), zone(context.tz)
    hold_url = extension_url(HOLD_EXPIRES, extension_base)
    counts: Counter[dt.date] = Counter()
    for appointment in await lookup.search_all(StoreQuery("Appointment", conditions)):
        start = _instant(appointment.get("start"), context.tz)
        pending = appointment.get("status") == "pending"
        try:
            expires = hold_expiry(appointment, hold_url) if pending else None
        except ValueError:  # an unreadable expiry: the claims decide, count it as held
            expires = None
        if start is not None and (expires is None or expires >= now):
            counts[local_date(start, zone_info)] += 1
    return dict(counts)


async def taken_time(
    lookup: Lookup,
    context: ScheduleContext,
    window: Interval,
    span: Interval,
    free: Sequence[tuple[str, Interval, int]],
    extension_base: str = DEFAULT_BASE,
) -> TakenTime:
    """Read the booked and held time of a Schedule for a search.

    Args:
        context: the Schedule.
        window: the search window (µs UTC); seats are read for shared Slots inside it.
        span: the span rule slots are laid over (claims are read over it, widened by the
            buffers; bookings per day too).
        free: its stored free Slots (`StoredSlots.free`).
        extension_base: the canonical base of our extensions (`hold-expires`).
    """
    params = context.params
    low, high = span.start - params.buffer_before_us, span.end + params.buffer_after_us
    claimed = await claimed_intervals(lookup, context.reference, low, high)
    owners = {
        slot_id: await seat_owners(lookup, slot_id, seats)
        for slot_id, interval, seats in free
        if seats > 1 and window.contains(interval)
    }
    busy = [
        interval
        for owner, interval in claimed
        if not any(
            owner in owners.get(slot_id, ()) and slot.contains(interval)
            for slot_id, slot, _ in free
        )
    ]
    per_day = None
    if params.max_per_day is not None:
        per_day = await bookings_per_day(lookup, context, span.start, span.end, extension_base)
    return TakenTime(busy, {slot_id: len(held) for slot_id, held in owners.items()}, per_day)
