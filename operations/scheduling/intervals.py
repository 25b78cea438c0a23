"""Half-open UTC intervals and set algebra on sorted lists of them.

An `Interval(start, end)` holds the instants `start <= t < end`, both ints of microseconds since
the epoch (UTC). Two intervals that only touch (`a.end == b.start`) do not overlap, so slots laid
back to back never collide. A "normalized" list is sorted by start, has no empty interval, and no
two of its intervals overlap or touch; `normalize` makes one, and `subtract`, `intersect` and
`clip` return one. All functions are pure and run in O(n log n) or better.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "FOREVER",
    "NEVER",
    "Interval",
    "clip",
    "intersect",
    "normalize",
    "overlaps_any",
    "subtract",
]

NEVER = -(2**62)
"""An instant before any real one: the start of an interval open to the past (µs)."""
FOREVER = 2**62
"""An instant after any real one: the end of an interval open to the future (µs)."""


@dataclass(frozen=True, slots=True, order=True)
class Interval:
    """The half-open span `[start, end)` of UTC instants, in µs since the epoch.

    Ordered by `(start, end)`. An interval with `start == end` is empty (and dropped by
    `normalize`).

    Raises:
        ValueError: `end < start`.
    """

    start: int
    end: int

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError(f"interval end {self.end} is before its start {self.start}")

    @property
    def duration(self) -> int:
        """The length `end - start` in µs (0 for an empty interval)."""
        return self.end - self.start

    def overlaps(self, other: Interval) -> bool:
        """True when the two share at least one instant (touching or empty intervals do not)."""
        return max(self.start, other.start) < min(self.end, other.end)

    def contains(self, other: Interval) -> bool:
        """True when every instant of `other` lies in this interval (an empty one included)."""
        return self.start <= other.start and other.end <= self.end


def normalize(intervals: Iterable[Interval]) -> list[Interval]:
    """Sort, merge overlapping or touching intervals and drop empty ones.

    Args:
        intervals: any intervals, in any order.

    Returns:
        A new normalized list covering exactly the same instants, e.g.
        `[[5,7), [1,3), [3,4), [6,6)]` -> `[[1,4), [5,7)]`.
    """
    merged: list[Interval] = []
    for item in sorted(intervals):
        if item.start == item.end:
            continue
        if merged and item.start <= merged[-1].end:
            last = merged[-1]
            if item.end > last.end:
                merged[-1] = Interval(last.start, item.end)
        else:
            merged.append(item)
    return merged


def subtract(a: Iterable[Interval], b: Iterable[Interval]) -> list[Interval]:
    """The instants of `a` that are in no interval of `b` (set difference `a - b`).

    Args:
        a: intervals to keep from; any order.
        b: intervals to remove; any order.

    Returns:
        A normalized list, e.g. `[[0,10)] - [[2,3), [5,6)]` -> `[[0,2), [3,5), [6,10)]`.
    """
    keep = normalize(a)
    remove = normalize(b)
    result: list[Interval] = []
    j = 0
    for item in keep:
        start = item.start
        while j < len(remove) and remove[j].end <= start:
            j += 1
        k = j
        while k < len(remove) and remove[k].start < item.end:
            if remove[k].start > start:
                result.append(Interval(start, remove[k].start))
            start = max(start, remove[k].end)
            k += 1
        if start < item.end:
            result.append(Interval(start, item.end))
    return result


def intersect(a: Iterable[Interval], b: Iterable[Interval]) -> list[Interval]:
    """The instants that are both in `a` and in `b` (set intersection).

    Args:
        a: intervals; any order.
        b: intervals; any order.

    Returns:
        A normalized list, e.g. `[[0,5), [8,12)] & [[3,10)]` -> `[[3,5), [8,10)]`.
    """
    left = normalize(a)
    right = normalize(b)
    result: list[Interval] = []
    i = j = 0
    while i < len(left) and j < len(right):
        start = max(left[i].start, right[j].start)
        end = min(left[i].end, right[j].end)
        if start < end:
            result.append(Interval(start, end))
        if left[i].end < right[j].end:
            i += 1
        else:
            j += 1
    return result


def clip(intervals: Iterable[Interval], window: Interval) -> list[Interval]:
    """The parts of `intervals` inside `window`.

    Args:
        intervals: any intervals, in any order.
        window: the span to keep.

    Returns:
        A normalized list, e.g. `clip([[0,5), [8,12)], [3,10))` -> `[[3,5), [8,10)]`.
    """
    return intersect(intervals, [window])


def overlaps_any(normalized: Sequence[Interval], item: Interval) -> bool:
    """True when `item` shares an instant with some interval of `normalized`.

    Args:
        normalized: a normalized list (as `normalize` returns): sorted, disjoint, so the ends
            are sorted too and a binary search finds the only candidate.
        item: the interval to test; an empty one overlaps nothing.

    Returns:
        Whether any overlap exists; O(log n).
    """
    if item.start >= item.end:
        return False
    index = bisect.bisect_right(normalized, item.start, key=_end)
    return index < len(normalized) and normalized[index].start < item.end


def _end(item: Interval) -> int:
    return item.end
