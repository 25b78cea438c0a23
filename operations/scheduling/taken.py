"""The booked and held time of a Schedule, as the availability engine takes it: the live
claims (SCHEDULING.md "Never double-book": bookings and holds are exactly the live claims, holds
lapsing with their expiry), merged per owner, seats of shared Slots, bookings per local day.
Instants are µs since the epoch (UTC), intervals half-open."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

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
from operations.scheduling.context import ScheduleContext, reference_pair, start_instant
from operations.scheduling.extensions import DEFAULT_BASE, HOLD_EXPIRES, extension_url
from operations.scheduling.intervals import Interval
from operations.scheduling.timezones import local_date, zone
from resources.fhir_dates import now_us

__all__ = ["TakenTime", "bookings_per_day", "claimed_intervals", "seat_owners", "taken_time"]


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


async def claimed_intervals(
    lookup: Lookup, scope: str, low: int, high: int
) -> list[tuple[str, Interval]]:
    """The booked and held time of `scope` (`Schedule/{id}`) in `[low, high)` µs UTC.

    The live minute claims (expired holds are left out by the store), each owner's
    consecutive minutes merged into one interval by the store (`Lookup.claim_runs`).

    Returns:
        `(owner, interval)` pairs, e.g. `("Appointment/7", [09:00Z, 09:30Z))`, by start, end,
        owner.
    """
    first, last = low // MINUTE_US, -(-high // MINUTE_US)
    runs = await lookup.claim_runs(scope, first, last)  # merged by the store, by start
    return [(owner, Interval(a * MINUTE_US, b * MINUTE_US)) for owner, a, b in runs]


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
            None, (reference_pair(a, context.bases) for a in context.schedule.get("actor") or ())
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
        start = start_instant(appointment.get("start"), context.tz)
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
        window: the search window (µs UTC); seats are read for shared Slots inside it, and
            claims over it widened by both buffers on each side: only slots wholly inside it
            are offered, and a claim farther out cannot touch their buffered occupancy (so
            checking one slot reads its own minutes, not three days of them).
        span: the span rule slots are laid over (bookings per day are counted over it).
        free: its stored free Slots (`StoredSlots.free`).
        extension_base: the canonical base of our extensions (`hold-expires`).
    """
    params = context.params
    reach = params.buffer_before_us + params.buffer_after_us
    low = max(span.start - params.buffer_before_us, window.start - reach)
    high = min(span.end + params.buffer_after_us, window.end + reach)
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
