"""Half-open interval algebra (`operations.scheduling.intervals`)."""

from __future__ import annotations

import itertools
import random

import pytest

from operations.scheduling.intervals import (
    FOREVER,
    NEVER,
    Interval,
    clip,
    intersect,
    normalize,
    overlaps_any,
    subtract,
)


def iv(*pairs: tuple[int, int]) -> list[Interval]:
    return [Interval(start, end) for start, end in pairs]


def test_interval_end_before_start_raises() -> None:
    with pytest.raises(ValueError, match="before its start"):
        Interval(5, 4)


def test_interval_back_to_back_do_not_overlap() -> None:
    first, second = Interval(0, 30), Interval(30, 60)
    assert not first.overlaps(second)
    assert not second.overlaps(first)
    assert first.overlaps(Interval(29, 31))


def test_interval_empty_overlaps_nothing_but_is_contained() -> None:
    assert not Interval(5, 5).overlaps(Interval(0, 10))
    assert Interval(0, 10).contains(Interval(5, 5))
    assert Interval(0, 10).duration == 10


def test_interval_open_bounds_cover_real_instants() -> None:
    assert Interval(NEVER, FOREVER).contains(Interval(0, 4_102_444_800_000_000))


def test_normalize_overlapping_and_touching_merged() -> None:
    assert normalize(iv((5, 7), (1, 3), (3, 4), (6, 6), (2, 3))) == iv((1, 4), (5, 7))


def test_normalize_nested_keeps_outer() -> None:
    assert normalize(iv((0, 10), (2, 3), (9, 10))) == iv((0, 10))


def test_normalize_only_empty_returns_empty() -> None:
    assert normalize(iv((3, 3), (4, 4))) == []


def test_subtract_middle_splits() -> None:
    assert subtract(iv((0, 10)), iv((2, 3), (5, 6))) == iv((0, 2), (3, 5), (6, 10))


def test_subtract_covering_removes_all() -> None:
    assert subtract(iv((2, 4), (6, 8)), iv((0, 10))) == []


def test_subtract_touching_keeps_all() -> None:
    assert subtract(iv((0, 10)), iv((10, 20), (-5, 0))) == iv((0, 10))


def test_subtract_one_removal_spanning_two_intervals() -> None:
    assert subtract(iv((0, 4), (6, 10)), iv((3, 7))) == iv((0, 3), (7, 10))


def test_intersect_overlaps_returns_common_parts() -> None:
    assert intersect(iv((0, 5), (8, 12)), iv((3, 10))) == iv((3, 5), (8, 10))


def test_intersect_touching_returns_empty() -> None:
    assert intersect(iv((0, 5)), iv((5, 9))) == []


def test_clip_window_cuts_edges() -> None:
    assert clip(iv((0, 5), (8, 12), (20, 30)), Interval(3, 10)) == iv((3, 5), (8, 10))


@pytest.mark.parametrize(
    ("probe", "expected"),
    [
        ((0, 2), False),  # before everything
        ((2, 3), True),  # inside the first
        ((4, 6), False),  # touches the first's end and the second's start
        ((5, 7), True),  # reaches the second's first instant
        ((9, 20), True),  # covers the last
        ((12, 20), False),  # after everything
        ((7, 7), False),  # empty
    ],
)
def test_overlaps_any_probe_returns_expected(probe: tuple[int, int], expected: bool) -> None:
    assert overlaps_any(iv((2, 4), (6, 8), (10, 12)), Interval(*probe)) is expected


def _points(intervals: list[Interval]) -> set[int]:
    return {t for item in intervals for t in range(item.start, item.end)}


def _random_intervals(rng: random.Random) -> list[Interval]:
    items = []
    for _ in range(rng.randint(0, 6)):
        start = rng.randint(0, 40)
        items.append(Interval(start, start + rng.randint(0, 10)))
    return items


def _is_normalized(intervals: list[Interval]) -> bool:
    return all(item.start < item.end for item in intervals) and all(
        a.end < b.start for a, b in itertools.pairwise(intervals)
    )


@pytest.mark.parametrize("seed", range(200))
def test_set_operations_random_lists_match_point_model(seed: int) -> None:
    rng = random.Random(seed)
    a, b = _random_intervals(rng), _random_intervals(rng)
    window = _random_intervals(rng)[:1] or [Interval(5, 25)]
    results = {
        "normalize": (normalize(a), _points(a)),
        "subtract": (subtract(a, b), _points(a) - _points(b)),
        "intersect": (intersect(a, b), _points(a) & _points(b)),
        "clip": (clip(a, window[0]), _points(a) & _points(window)),
    }
    for name, (got, expected) in results.items():
        assert _is_normalized(got), name
        assert _points(got) == expected, name
    merged = normalize(b)
    probe = _random_intervals(rng)[:1] or [Interval(3, 9)]
    assert overlaps_any(merged, probe[0]) is bool(_points(merged) & _points(probe))
