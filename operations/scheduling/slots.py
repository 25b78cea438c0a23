"""Slots: laid on availability windows, named by deterministic ids, filtered to free candidates.

SCHEDULING.md "Resources and where availability comes from" and "`$find-slots` ... rule-derived
Slots with deterministic ids". Instants are µs since the epoch (UTC), intervals half-open.

Rule-slot ids (`rule_slot_id`) are `rs-{start}-{length}-{schedule id}`: `start` is the slot start
in whole minutes since the epoch and `length` its duration in minutes, both lowercase base 36,
each followed by `.{µs remainder in base 36}` only when not a whole minute. Numbers never hold
`-`, so everything after the third `-` is the schedule id, whatever `-` and `.` it contains. The
id is canonical: `parse_rule_slot_id` accepts exactly what `rule_slot_id` writes. Example: a
30-minute slot at 2026-03-09T13:00:00Z on Schedule `demo-schedule-smith` is
`rs-hldpo-u-demo-schedule-smith`.

FHIR ids are at most 64 characters, so the schedule id has a budget. For slots starting before
2084-12-18 (five base-36 digits of minutes) it is 52 characters for whole-minute slots (53 for
visits under 36 minutes), and never less than `MAX_SCHEDULE_ID_LENGTH` (40) for visits under 1296
minutes, whatever their sub-minute parts; server-assigned UUIDs (36) always fit. A longer
schedule id cannot be carried (the id alphabet has 64 symbols, so 64 characters hold no more than
a 64-character schedule id alone): `rule_slot_id` raises `SlotIdTooLong`, and `free_slots`
offers no rule slot it cannot name (stored Slots of that Schedule are still offered).
"""

from __future__ import annotations

import bisect
import datetime as dt
import functools
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal, NamedTuple, TypeVar

from operations.scheduling.intervals import FOREVER, NEVER, Interval, normalize, overlaps_any
from operations.scheduling.timezones import local_date, zone
from resources.types import FHIR_ID_RE

__all__ = [
    "MAX_SCHEDULE_ID_LENGTH",
    "CandidateSlot",
    "RuleSlotRef",
    "SlotIdTooLong",
    "Source",
    "StoredSlot",
    "free_slots",
    "lay_slots",
    "parse_rule_slot_id",
    "rule_slot_id",
]

MAX_SCHEDULE_ID_LENGTH: Final = 40
"""Schedule ids up to this length always fit in a rule-slot id (see the module docstring)."""
_PREFIX: Final = "rs-"
_US_PER_MINUTE: Final = 60_000_000
_DIGITS: Final = "0123456789abcdefghijklmnopqrstuvwxyz"
_NUMBER: Final = re.compile(r"[0-9a-z]+(?:\.[0-9a-z]+)?")


class SlotIdTooLong(ValueError):
    """The schedule id leaves no room for the slot's times in a 64-character FHIR id."""


class RuleSlotRef(NamedTuple):
    """What a rule-slot id names: the Schedule id and the slot's `[start, end)` in µs UTC."""

    schedule_id: str
    start: int
    end: int


class StoredSlot(NamedTuple):
    """A stored `Slot` with `status=free`: its id, its time and its seats (`slot-capacity`)."""

    slot_id: str
    interval: Interval
    capacity: int


Source = Literal["stored", "rule"]
"""Where a free slot comes from: a stored Slot, or the weekly rules."""


@dataclass(frozen=True, slots=True)
class CandidateSlot:
    """One free slot to offer: a stored Slot (`source="stored"`, its own id) or a slot derived
    from rules (`source="rule"`, a `rule_slot_id`). `start`/`end` are µs UTC, half-open;
    `capacity` is the number of seats still free (>= 1)."""

    schedule_id: str
    start: int
    end: int
    capacity: int
    slot_id: str
    source: Source

    @property
    def interval(self) -> Interval:
        """`[start, end)` as an `Interval`."""
        return Interval(self.start, self.end)


C = TypeVar("C")


def lay_slots(
    windows: Sequence[Interval], visit_us: int, buffer_before_us: int = 0, buffer_after_us: int = 0
) -> list[Interval]:
    """Slots laid back to back from the start of each window.

    Each slot occupies `buffer_before + visit + buffer_after`; the interval returned is the
    visit itself (so consecutive visits are `buffer_after + buffer_before` apart). A slot whose
    occupancy does not end by the window's end is dropped. Example: window 09:00-10:00, visit
    20 min, buffers 5 + 5 -> visits 09:05-09:25, 09:35-09:55.

    Args:
        windows: availability windows (µs UTC, half-open), e.g. from `rules.rule_windows`;
            compute them over whole local days so a slot does not move with a search's start.
        visit_us: the visit length, µs, > 0.
        buffer_before_us: time kept free before each visit, µs, >= 0.
        buffer_after_us: time kept free after each visit, µs, >= 0.

    Returns:
        Visit intervals in window order (sorted when `windows` is).

    Raises:
        ValueError: `visit_us <= 0` or a negative buffer.
    """
    return [Interval(a, b) for a, b in _laid(windows, visit_us, buffer_before_us, buffer_after_us)]


def _laid(
    windows: Sequence[Interval], visit_us: int, before: int, after: int
) -> Iterator[tuple[int, int]]:
    """`lay_slots` as `(start, end)` integers (free_slots tests tens of thousands of them)."""
    if visit_us <= 0 or before < 0 or after < 0:
        raise ValueError("visit length must be > 0 and buffers >= 0")
    step = before + visit_us + after
    for window in windows:
        at = window.start
        while at + step <= window.end:
            yield at + before, at + before + visit_us
            at += step


def _base36(number: int) -> str:
    digits = []
    while True:
        number, digit = divmod(number, 36)
        digits.append(_DIGITS[digit])
        if number == 0:
            return "".join(reversed(digits))


def _encode(us: int) -> str:
    minutes, rest = divmod(us, _US_PER_MINUTE)
    return _base36(minutes) if rest == 0 else f"{_base36(minutes)}.{_base36(rest)}"


def _decode(text: str) -> int | None:
    if _NUMBER.fullmatch(text) is None:
        return None
    minutes, _, rest = text.partition(".")
    return int(minutes, 36) * _US_PER_MINUTE + (int(rest, 36) if rest else 0)


@functools.lru_cache(maxsize=4096)
def _is_fhir_id(text: str) -> bool:
    """Whether `text` is a FHIR id (asked once per Schedule, not once per slot)."""
    return FHIR_ID_RE.fullmatch(text) is not None


@functools.lru_cache(maxsize=65536)
def _encoded(us: int) -> str:
    """`_encode`, remembered: the same starts and lengths recur across the Schedules of one
    search (every practitioner's 09:00) and across searches."""
    return _encode(us)


def rule_slot_id(schedule_id: str, start_us: int, end_us: int) -> str:
    """The deterministic FHIR id of a rule-derived slot (encoding in the module docstring).

    Args:
        schedule_id: the Schedule's id (a FHIR id).
        start_us: slot start, µs UTC, >= 0 (1970 or later).
        end_us: slot end, µs UTC, > start_us.

    Returns:
        An id of at most 64 characters from `[A-Za-z0-9.-]`, e.g. `rs-hldpo-u-demo-schedule-smith`.

    Raises:
        ValueError: `schedule_id` is no FHIR id, `start_us < 0` or `end_us <= start_us`.
        SlotIdTooLong: the id would exceed 64 characters (schedule id too long).
    """
    if not _is_fhir_id(schedule_id):
        raise ValueError(f"not a FHIR id: {schedule_id!r}")
    if start_us < 0 or end_us <= start_us:
        raise ValueError(f"invalid slot time [{start_us}, {end_us})")
    slot_id = f"{_PREFIX}{_encoded(start_us)}-{_encoded(end_us - start_us)}-{schedule_id}"
    if len(slot_id) > 64:
        raise SlotIdTooLong(f"schedule id {schedule_id!r} is too long for a rule-slot id")
    return slot_id


def parse_rule_slot_id(slot_id: str) -> RuleSlotRef | None:
    """The schedule id and time a rule-slot id names, or None if `slot_id` is not one.

    Only canonical ids (exactly what `rule_slot_id` writes) are accepted, so a stored Slot's
    id that happens to start with `rs-` is told apart unless it is itself a canonical rule-slot
    id. Callers still check that the Schedule's rules produce this slot and that it is free.

    Args:
        slot_id: any string, e.g. the `{id}` of `GET Slot/{id}`.

    Returns:
        `RuleSlotRef(schedule_id, start, end)` (µs UTC), which round-trips through
        `rule_slot_id`; None for anything else. Never raises.
    """
    if not slot_id.startswith(_PREFIX):
        return None
    parts = slot_id[len(_PREFIX) :].split("-", 2)
    if len(parts) != 3:
        return None
    start, length = _decode(parts[0]), _decode(parts[1])
    if start is None or length is None or length <= 0:
        return None
    ref = RuleSlotRef(parts[2], start, start + length)
    try:
        canonical = rule_slot_id(*ref)
    except ValueError:
        return None
    return ref if canonical == slot_id else None


class _Spans:
    """Normalized intervals as two sorted int lists, for fast overlap tests."""

    __slots__ = ("ends", "starts")

    def __init__(self, intervals: Sequence[Interval]) -> None:
        merged = normalize(intervals)
        self.starts = [i.start for i in merged]
        self.ends = [i.end for i in merged]

    def hits(self, start: int, end: int) -> bool:
        """Whether `[start, end)` shares an instant with a span (`overlaps_any`)."""
        if start >= end:
            return False
        index = bisect.bisect_right(self.ends, start)
        return index < len(self.starts) and self.starts[index] < end


def _seats_left(slot: StoredSlot, busy: Sequence[Interval], taken_seats: Mapping[str, int]) -> int:
    overlapping = sum(1 for item in busy if item.overlaps(slot.interval))
    return slot.capacity - taken_seats.get(slot.slot_id, 0) - overlapping


def free_slots(
    schedule_id: str,
    windows: Sequence[Interval],
    stored_free: Sequence[tuple[str, Interval, int]],
    busy: Sequence[Interval],
    blocked: Sequence[Interval],
    visit_us: int,
    buffers: tuple[int, int] = (0, 0),
    max_per_day: int | None = None,
    tz: str = "UTC",
    booked_per_day: Mapping[dt.date, int] | None = None,
    *,
    taken_seats: Mapping[str, int] | None = None,
    search: Interval | None = None,
    make: Callable[[str, int, int, int, str, Source], C] = CandidateSlot,  # type: ignore[assignment]
) -> list[C]:
    """The free slots of one Schedule: stored free Slots and rule slots, minus what is taken.

    SCHEDULING.md "Bookable time of a Schedule": the union of stored free Slots and rule-derived
    slots, minus blocked (`busy-unavailable`) time, minus booked and held time.

    - A stored Slot is offered with `capacity` = its seats minus `taken_seats[slot_id]` minus
      one per `busy` interval overlapping it, when that is >= 1 and it overlaps no `blocked`.
    - A rule slot (`lay_slots` on `windows`) is offered when its occupancy
      `[start - before, end + after)` overlaps no `blocked` interval, no `busy` interval's
      occupancy (`busy` widened by the same buffers) and no stored free Slot (a stored Slot
      owns its time, full or not), and `rule_slot_id` can name it. Capacity 1.
    - With `max_per_day`, a local day (in `tz`) whose `booked_per_day` count has reached it
      offers nothing (offers do not count; the booking path enforces the limit).

    Args:
        schedule_id: the Schedule's id.
        windows: its rule windows (`rules.schedule_windows` over whole local days).
        stored_free: `(slot_id, interval, capacity)` of its stored `status=free` Slots
            (`StoredSlot`; capacity from `extensions.slot_capacity`).
        busy: booked and held visit times on this Schedule not already in `taken_seats`.
        blocked: `busy-unavailable` Slot times.
        visit_us: visit length of rule slots, µs, > 0.
        buffers: `(before, after)` µs kept free around each rule-slot visit.
        max_per_day: the daily booking limit, or None.
        tz: the Schedule's IANA zone (for `max_per_day` local days).
        booked_per_day: bookings already held per local date.
        taken_seats: seats already booked or held per stored Slot id.
        search: when given, only slots wholly inside it are returned.
        make: builds each result from `(schedule_id, start, end, capacity, slot_id, source)`
            (default `CandidateSlot`; the service builds its `OfferedSlot`s directly).

    Returns:
        Candidates sorted by `(start, end, source, slot_id)` ("rule" before "stored").

    Raises:
        ValueError: invalid visit length or buffers, or an unknown `tz`.
    """
    before, after = buffers
    taken = taken_seats or {}
    blocked_set = normalize(blocked)
    busy_list = sorted(busy)
    busy_set = normalize(Interval(b.start - before, b.end + after) for b in busy_list)
    stored_set = normalize(slot[1] for slot in stored_free)
    found: list[tuple[int, int, Source, str, int]] = []  # start, end, source, id, seats
    for slot in map(StoredSlot._make, stored_free):
        if slot.interval.duration == 0 or (
            search is not None and not search.contains(slot.interval)
        ):
            continue
        seats = _seats_left(slot, busy_list, taken)
        if seats > 0 and not overlaps_any(blocked_set, slot.interval):
            found.append((slot.interval.start, slot.interval.end, "stored", slot.slot_id, seats))
    # rule slots tested as plain integers: this loop runs for every slot of every Schedule a
    # search covers (tens of thousands for `Slot/$find-slots`)
    low, high = (search.start, search.end) if search is not None else (NEVER, FOREVER)
    occupied = _Spans(blocked_set + busy_set)
    owned = _Spans(stored_set)
    for start, end in _laid(windows, visit_us, before, after):
        if start < low or end > high or occupied.hits(start - before, end + after):
            continue
        if owned.hits(start, end):
            continue
        try:
            found.append((start, end, "rule", rule_slot_id(schedule_id, start, end), 1))
        except SlotIdTooLong:
            continue
    if max_per_day is not None:
        zone_info, counts = zone(tz), booked_per_day or {}
        found = [f for f in found if counts.get(local_date(f[0], zone_info), 0) < max_per_day]
    found.sort()  # start, end, source ("rule" < "stored"), slot id: unique
    return [make(schedule_id, a, b, seats, slot_id, src) for a, b, src, slot_id, seats in found]
