"""What one availability computation reads of a Schedule: its context and its stored Slots.

SCHEDULING.md "Resources and where availability comes from". The pure engine
(`operations.scheduling.rules`, `slots`) needs, per Schedule: its actors and their sites
(`ScheduleContext`: time zone, weekly rules, visit length and buffers, read once per call with
`read_many`), its stored Slots (free ones with their seats, blocking ones), and its booked and
held time (`operations.scheduling.taken`). References are read against this server's bases
(`resources.references`). Instants are µs since the epoch (UTC), intervals half-open.
"""

from __future__ import annotations

import logging
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
)
from operations.scheduling.extensions import (
    BookingParameters,
    ExtensionError,
    booking_parameters,
    slot_capacity,
)
from operations.scheduling.intervals import FOREVER, NEVER, Interval
from operations.scheduling.rules import period_interval
from operations.scheduling.sources import WeeklyRules, rules_for
from operations.scheduling.timezones import location_references, schedule_timezone
from resources.fhir_dates import date_range
from resources.references import parse_reference

__all__ = [
    "BLOCKING_STATUSES",
    "ScheduleContext",
    "StoredSlots",
    "build_context",
    "load_contexts",
    "planning_horizon",
    "reference_pair",
    "start_instant",
    "stored_slots",
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


def planning_horizon(context: ScheduleContext) -> Interval:
    """`Schedule.planningHorizon` as an interval (open sides unbounded; `rules.period_interval`).

    Raises:
        ValueError: a malformed planningHorizon.
    """
    horizon = context.schedule.get("planningHorizon")
    if not isinstance(horizon, Mapping):
        return Interval(NEVER, FOREVER)
    return period_interval(horizon.get("start"), horizon.get("end"), context.tz)


def reference_pair(reference: Any, bases: tuple[str, ...] = ()) -> tuple[str, str] | None:
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
    refs = [reference_pair(actor, bases) for actor in schedule.get("actor") or ()]
    actors = tuple(resources[ref] for ref in refs if ref is not None and ref in resources)
    sites = [reference_pair({"reference": text}, bases) for text in location_references(actors)]
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
        for ref in (reference_pair(actor, bases) for actor in schedule.get("actor") or ())
        if ref is not None
    ]
    resources = await lookup.read_json(actor_refs)
    site_refs = {
        ref
        for ref in (
            reference_pair({"reference": t}, bases) for t in location_references(resources.values())
        )
        if ref is not None and ref not in resources
    }
    resources.update(await lookup.read_json(sorted(site_refs)))
    return [build_context(s, resources, extension_base, default_tz, bases) for s in schedules]


def start_instant(text: Any, tz: str) -> int | None:
    """The first instant (µs UTC) of a FHIR date/dateTime (read in `tz` without an offset),
    or None when it is not one."""
    if not isinstance(text, str):
        return None
    try:
        return date_range(text, tz)[0]
    except ValueError:
        return None


def _interval(slot: Mapping[str, Any], tz: str) -> Interval | None:
    start, end = start_instant(slot.get("start"), tz), start_instant(slot.get("end"), tz)
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
        ref = reference_pair(slot.get("schedule"), bases)
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
