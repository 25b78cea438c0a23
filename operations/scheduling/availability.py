"""Whether the actors of a booking offer its time: the availability rule (SCHEDULING.md
"Booking rules on every path", rule 2).

An actor that has a Schedule must offer the whole `[start, end)` of the Appointment: the union,
over its active Schedules, of their rule-based windows (hours minus `notAvailable`, limited to
`Schedule.planningHorizon`) and their stored `free` Slots, minus their blocking Slots
(`busy-unavailable`, `busy`, `busy-tentative`) — the same sources `$find-slots` offers from
(`operations.scheduling.service`), without the visit grid and without taken time (taken time is
the claims' rule, checked by the store). An actor whose Schedules are all inactive offers
nothing. An actor without any Schedule is not constrained (nothing says when it works).
Instants are µs since the epoch, UTC.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from operations.scheduling.context import planning_horizon, stored_slots
from operations.scheduling.intervals import Interval, normalize, subtract
from operations.scheduling.rules import schedule_windows
from operations.scheduling.service import BLOCK_LOOKBACK_US, SchedulingService
from resources.fhir_dates import format_instant

__all__ = ["Unavailable", "unavailable_actors"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Unavailable:
    """An actor that does not offer the time asked.

    Attributes:
        actor: the actor, `Type/id`.
        schedules: its Schedules, `Schedule/{id}` (inactive ones included).
        reason: why, in words (for an OperationOutcome's diagnostics).
    """

    actor: str
    schedules: tuple[str, ...]
    reason: str


async def unavailable_actors(
    service: SchedulingService,
    actors: Sequence[tuple[str, str]],
    start: int,
    end: int,
    schedules: Sequence[dict[str, Any]],
) -> list[Unavailable]:
    """The actors among `actors` that have a Schedule and do not offer `[start, end)`.

    Args:
        service: the request's scheduling service (reads through `Repository.lookup`).
        actors: `(type, id)` of the Appointment's scheduled actors.
        start, end: the Appointment's time, µs UTC.
        schedules: the Schedules naming any of them, active or not (as the booking rules
            found them for the claims: stored ones and those written beside).

    Returns:
        One `Unavailable` per actor that does not offer the time, in the order given.
    """
    wanted = dict.fromkeys(actors)
    if not wanted or end <= start:
        return []
    by_actor: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for schedule in schedules:
        for actor in schedule.get("actor") or ():
            pair = service.pair(actor)
            if pair in wanted:
                by_actor.setdefault(pair, []).append(schedule)
    window = Interval(start, end)
    active = [s for s in schedules if s.get("active") is not False]
    offered = await _offered(service, active, window)
    out: list[Unavailable] = []
    for pair in wanted:
        own = by_actor.get(pair)
        if not own:
            continue
        free = normalize(x for s in own for x in offered.get(str(s.get("id")), ()))
        if not subtract([window], free):
            continue
        if all(s.get("active") is False for s in own):
            reason = "no active Schedule"
        else:
            reason = "outside its hours, time off, planning horizon or blocked time"
        refs = tuple(f"Schedule/{s.get('id')}" for s in own)
        out.append(Unavailable(f"{pair[0]}/{pair[1]}", refs, reason))
    return out


async def _offered(
    service: SchedulingService, schedules: list[dict[str, Any]], window: Interval
) -> dict[str, list[Interval]]:
    """What each active Schedule offers within `window`, by Schedule id."""
    if not schedules:
        return {}
    contexts = await service.contexts(schedules)
    low = window.start - BLOCK_LOOKBACK_US
    stored = await stored_slots(service.lookup, contexts, low, window.end)
    out: dict[str, list[Interval]] = {}
    for context in contexts:
        try:
            horizon = planning_horizon(context)
            windows = schedule_windows(context.schedule, context.weekly, window, context.tz)
        except ValueError as exc:
            log.warning("%s: %s", context.reference, exc)
            out[context.id] = []
            continue
        slots = stored[context.id]
        free = [interval for _id, interval, _seats in slots.free if horizon.contains(interval)]
        out[context.id] = subtract(normalize([*windows, *free]), slots.blocked)
    return out


def describe(items: Sequence[Unavailable], start: int, end: int) -> str:
    """One sentence naming every unavailable actor, for a 409 `outside-availability`."""
    when = f"{format_instant(start)} to {format_instant(end)}"
    parts = [f"{u.actor} ({', '.join(u.schedules)}: {u.reason})" for u in items]
    return f"Not available from {when}: " + "; ".join(parts)
