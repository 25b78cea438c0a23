"""The SchedulingService: which Schedules match, their free slots, and rule slots by id.

The one facade the scheduling operations (`$find-slots`, `$find`, `$hold`, `$book`) and the
booking rules use over a request's Repository; it reads through `Repository.lookup` (what is
free must be computed over every booking, whoever asks) and leaves every computation to the pure
engine (`operations.scheduling`, whose `__init__` gives the order). SCHEDULING.md:

- "Resources and where availability comes from": `free_slots` = stored free Slots with seats
  left + rule-derived slots, minus blocking Slots, minus booked and held time (live claims),
  within `Schedule.planningHorizon`, nothing for an inactive Schedule.
- "`$find-slots` returns stored free Slots with their ids, and rule-derived Slots with
  deterministic ids that `GET Slot/{id}` and `$book` resolve while free": `slot_resource`,
  `resolve_slot` (also the Repository's virtual reader of `Slot`).

Instants are µs since the epoch (UTC); windows are half-open `[start, end)`.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from fhir_server.repository import Repository
from operations.scheduling.context import (
    ScheduleContext,
    StoredSlots,
    load_contexts,
    planning_horizon,
    stored_slots,
)
from operations.scheduling.extensions import SLOT_CAPACITY_URL
from operations.scheduling.intervals import Interval
from operations.scheduling.matching import ScheduleMatcher
from operations.scheduling.rules import schedule_windows
from operations.scheduling.slots import CandidateSlot, Source, free_slots, parse_rule_slot_id
from operations.scheduling.taken import taken_time
from operations.scheduling.timezones import local_date, wall_to_utc_us, zone
from resources.fhir_dates import format_instant

__all__ = ["OfferedSlot", "SchedulingService"]

log = logging.getLogger(__name__)

_DAY_US: Final = 86_400_000_000
BLOCK_LOOKBACK_US: Final = 7 * _DAY_US
"""How far before a window a blocking Slot may start and still be seen (longer blocks belong in
`notAvailable`)."""
_COPIED: Final = ("serviceCategory", "serviceType", "specialty")


@dataclass(frozen=True, slots=True)
class OfferedSlot(CandidateSlot):
    """A `CandidateSlot` with what `slot_resource` renders it from: its Schedule and, for a
    stored Slot, the stored JSON (neither takes part in equality or hashing)."""

    schedule: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    stored: dict[str, Any] | None = field(default=None, compare=False, repr=False)


_Row = tuple[int, str, int, Source, str, int]
"""A free slot before it becomes an `OfferedSlot`: `(start, schedule id, end, source, slot
id, seats)`, so plain tuple order is the order of `free_slots`."""


def _row(sid: str, start: int, end: int, seats: int, slot_id: str, source: Source) -> _Row:
    return (start, sid, end, source, slot_id, seats)


class SchedulingService:
    """Availability over one request's Repository (SCHEDULING.md; module docstring).

    Args:
        repository: the request's (or job's) repository: its `lookup` is read, its settings
            give the hold and proposal lifetimes (s), the extension base and the default zone.
    """

    def __init__(self, repository: Repository) -> None:
        settings = repository.settings
        self.repository = repository
        self.lookup = repository.lookup
        self.bases = repository.bases
        self.hold_seconds = settings.hold_seconds
        self.proposal_seconds = settings.proposal_seconds
        self.extension_base = settings.extension_base
        self.default_tz = settings.default_timezone
        self.matcher = ScheduleMatcher(self.lookup)
        self._contexts: dict[tuple[str, str], ScheduleContext] = {}
        """Which Schedules match a search (`matching.ScheduleMatcher.schedules`)."""

    # -- free time --------------------------------------------------------------------------

    def pair(self, reference: Any) -> tuple[str, str] | None:
        """`(type, id)` of a Reference to a resource of this server (any spelling on its
        bases; `resources.references`), else None."""
        text = reference.get("reference") if isinstance(reference, dict) else None
        return self.repository.reference(text).pair if isinstance(text, str) else None

    async def contexts(self, schedules: Sequence[dict[str, Any]]) -> list[ScheduleContext]:
        """The contexts of several Schedules (`context.load_contexts`), in order; each
        Schedule's actors and sites are read once per service (by id and version)."""
        missing = [s for s in schedules if _context_key(s) not in self._contexts]
        if missing:
            for context in await load_contexts(
                self.lookup, missing, self.extension_base, self.default_tz, self.bases
            ):
                self._contexts[_context_key(context.schedule)] = context
        return [self._contexts[_context_key(s)] for s in schedules]

    async def schedule_context(self, schedule: dict[str, Any]) -> ScheduleContext:
        """The Schedule's actors, sites, zone, weekly rules and booking parameters, read once
        (`context.load_contexts`)."""
        (context,) = await load_contexts(
            self.lookup, [schedule], self.extension_base, self.default_tz, self.bases
        )
        return context

    async def free_slots(
        self,
        schedules: Sequence[dict[str, Any]],
        start: int,
        end: int,
        *,
        duration_us: int | None = None,
    ) -> list[CandidateSlot]:
        """Every free slot of `schedules` lying wholly within `[start, end)` µs UTC.

        Stored free Slots with seats left (capacity minus live seat claims minus booked time
        over them), and rule-derived slots laid over whole local days (so their ids do not
        depend on the window), minus blocking Slots (`busy-unavailable`, `busy`,
        `busy-tentative`) and the live minute claims of each Schedule (bookings and holds),
        limited to the planning horizon; inactive Schedules offer nothing. A Schedule with
        `max-bookings-per-day` offers nothing on a local day that holds that many bookings.

        Args:
            schedules: Schedules as FHIR JSON (e.g. from `schedules`).
            start, end: the window, µs UTC.
            duration_us: the visit length of rule slots instead of the Schedule's.

        Returns:
            `OfferedSlot`s sorted by start, then Schedule id.
        """
        found, _ = await self._search(schedules, start, end, duration_us, None)
        return found

    async def free_slot_page(
        self,
        schedules: Sequence[dict[str, Any]],
        start: int,
        end: int,
        count: int,
        *,
        duration_us: int | None = None,
    ) -> tuple[list[CandidateSlot], int]:
        """The first `count` of `free_slots(...)`, in the same order, and how many there are
        in all (`Slot/$find-slots`: a page and its `total`). Only the page's slots become
        objects: a month of a hundred Schedules holds tens of thousands."""
        return await self._search(schedules, start, end, duration_us, count)

    async def _search(
        self,
        schedules: Sequence[dict[str, Any]],
        start: int,
        end: int,
        duration_us: int | None,
        count: int | None,
    ) -> tuple[list[CandidateSlot], int]:
        if not schedules or end <= start:
            return [], 0
        contexts = await self.contexts(schedules)
        active = [c for c in contexts if c.active]
        window = Interval(start, end)
        stored = await stored_slots(self.lookup, active, start - BLOCK_LOOKBACK_US, end + _DAY_US)
        rows: list[_Row] = []
        for context in active:
            rows += await self._free(context, window, stored[context.id], duration_us)
        total = len(rows)
        if count is None:
            rows.sort()  # by start, Schedule id, end, source, slot id (unique)
        else:
            rows = heapq.nsmallest(count, rows)
        by_id = {c.id: (c.schedule, stored[c.id].content) for c in active}
        offered: list[CandidateSlot] = []
        for slot_start, sid, slot_end, source, slot_id, seats in rows:
            schedule, content = by_id[sid]
            found = content.get(slot_id) if source == "stored" else None
            offered.append(
                OfferedSlot(sid, slot_start, slot_end, seats, slot_id, source, schedule, found)
            )
        return offered, total

    async def _free(
        self,
        context: ScheduleContext,
        window: Interval,
        stored: StoredSlots,
        duration_us: int | None,
    ) -> list[_Row]:
        # Whole local days (`timezones.whole_local_days`) and one more on each side, so a
        # rule slot's id does not depend on where a search starts, overnight rules included.
        zone_info = zone(context.tz)
        first = local_date(window.start, zone_info).toordinal() - 1
        last = local_date(window.end - 1, zone_info).toordinal() + 1
        span = Interval(wall_to_utc_us(zone_info, first, 0), wall_to_utc_us(zone_info, last + 1, 0))
        try:
            windows = schedule_windows(context.schedule, context.weekly, span, context.tz)
            horizon = planning_horizon(context)
        except ValueError as exc:
            log.warning("%s: %s", context.reference, exc)
            return []
        params = context.params
        buffers = (params.buffer_before_us, params.buffer_after_us)
        free = [slot for slot in stored.free if horizon.contains(slot[1])]
        taken = await taken_time(self.lookup, context, window, span, free, self.extension_base)
        return free_slots(
            context.id,
            windows,
            free,
            taken.busy,
            stored.blocked,
            duration_us or params.visit_us,
            buffers,
            params.max_per_day,
            context.tz,
            taken.per_day,
            taken_seats=taken.seats,
            search=window,
            make=_row,
        )

    # -- slots as resources -----------------------------------------------------------------

    def slot_resource(self, candidate: CandidateSlot) -> dict[str, Any]:
        """A free slot as a FHIR Slot (JSON).

        A stored Slot keeps its content (id, meta, extensions such as SMART booking links),
        with `status` free and `slot-capacity` set to the seats left (dropped when 1). A rule
        slot gets its deterministic id, `meta.versionId` "1", the Schedule reference, `free`,
        start/end as UTC instants, and `serviceCategory`/`serviceType`/`specialty` copied from
        the Schedule (known for an `OfferedSlot`; a bare `CandidateSlot` goes without them).
        """
        schedule = candidate.schedule if isinstance(candidate, OfferedSlot) else {}
        stored = candidate.stored if isinstance(candidate, OfferedSlot) else None
        if stored is not None:
            slot = dict(stored)
            slot["status"] = "free"
        else:
            slot = {"resourceType": "Slot", "id": candidate.slot_id, "meta": {"versionId": "1"}}
        extensions = [
            e
            for e in slot.get("extension") or ()
            if not (isinstance(e, dict) and e.get("url") == SLOT_CAPACITY_URL)
        ]
        if candidate.capacity > 1:
            extensions.append({"url": SLOT_CAPACITY_URL, "valueInteger": candidate.capacity})
        if extensions:
            slot["extension"] = extensions
        else:
            slot.pop("extension", None)
        for element in _COPIED:
            if element not in slot and schedule.get(element):
                slot[element] = schedule[element]
        if stored is None:
            slot["schedule"] = {"reference": f"Schedule/{candidate.schedule_id}"}
            slot["status"] = "free"
            slot["start"] = _instant(candidate.start)
            slot["end"] = _instant(candidate.end)
        return slot

    async def resolve_slot(self, slot_id: str) -> dict[str, Any] | None:
        """A Slot by id: the stored one (any status), else the rule-derived one while its time
        is still free for its Schedule (`slots.parse_rule_slot_id`), else None.

        `GET Slot/{rule id}` answers the same through `rule_slot` (200 while free, 404 once
        booked or held).
        """
        stored = await self.lookup.read("Slot", slot_id)
        if stored is not None:
            return None if stored.content is None else dict(orjson.loads(stored.content))
        return await self.rule_slot(slot_id)

    async def rule_slot(self, slot_id: str) -> dict[str, Any] | None:
        """The rule-derived Slot `slot_id` while its time is still free, else None.

        The Repository's virtual reader of `Slot`: it is asked only after the store has no
        such Slot, so it does not read the store for one again."""
        ref = parse_rule_slot_id(slot_id)
        if ref is None:
            return None
        found = await self.lookup.read("Schedule", ref.schedule_id)
        if found is None or found.content is None:
            return None
        schedule = orjson.loads(found.content)
        duration = ref.end - ref.start
        for candidate in await self.free_slots(
            [schedule], ref.start, ref.end, duration_us=duration
        ):
            if candidate.slot_id == slot_id:
                return self.slot_resource(candidate)
        return None


def _context_key(schedule: dict[str, Any]) -> tuple[str, str]:
    """A Schedule's id and version (a Schedule written beside, not yet stored, has none)."""
    return str(schedule.get("id")), str((schedule.get("meta") or {}).get("versionId"))


def _instant(us: int) -> str:
    """A UTC instant, without a fraction when it is whole seconds (`2026-03-09T13:00:00Z`)."""
    text = format_instant(us)
    return text.replace(".000000Z", "Z")
