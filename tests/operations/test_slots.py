"""Slot laying, rule-slot ids and free candidates (`operations.scheduling.slots`)."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from fhir_server.demo import DEMO_SCHEDULE_ID, demo_clinic
from operations.scheduling.extensions import booking_parameters, slot_capacity
from operations.scheduling.intervals import Interval
from operations.scheduling.rules import schedule_windows
from operations.scheduling.slots import (
    MAX_SCHEDULE_ID_LENGTH,
    CandidateSlot,
    RuleSlotRef,
    SlotIdTooLong,
    StoredSlot,
    free_slots,
    lay_slots,
    parse_rule_slot_id,
    rule_slot_id,
)
from operations.scheduling.sources import rules_for
from operations.scheduling.timezones import (
    location_references,
    schedule_timezone,
    whole_local_days,
    zone,
)
from resources.fhir_dates import parse_instant

MINUTE = 60_000_000
DAY = 1440 * MINUTE


def z(text: str) -> int:
    """µs of a UTC time written `YYYY-MM-DDThh:mm`."""
    return parse_instant(f"{text}:00Z")


def span(start: str, end: str) -> Interval:
    return Interval(z(start), z(end))


def clock(intervals: list[Interval]) -> list[str]:
    def text(us: int) -> str:
        return dt.datetime.fromtimestamp(us / 1e6, dt.UTC).strftime("%H:%M")

    return [f"{text(i.start)}-{text(i.end)}" for i in intervals]


MORNING = span("2026-01-05T09:00", "2026-01-05T10:00")


def test_lay_slots_back_to_back_half_open_do_not_overlap() -> None:
    laid = lay_slots([MORNING], 30 * MINUTE)
    assert clock(laid) == ["09:00-09:30", "09:30-10:00"]
    assert laid[0].end == laid[1].start
    assert not laid[0].overlaps(laid[1])


def test_lay_slots_last_slot_not_fitting_dropped() -> None:
    assert clock(lay_slots([MORNING], 25 * MINUTE)) == ["09:00-09:25", "09:25-09:50"]


def test_lay_slots_buffers_occupy_time_visit_returned() -> None:
    laid = lay_slots([MORNING], 20 * MINUTE, 5 * MINUTE, 5 * MINUTE)
    assert clock(laid) == ["09:05-09:25", "09:35-09:55"]


def test_lay_slots_after_buffer_must_fit_in_window() -> None:
    assert clock(lay_slots([MORNING], 30 * MINUTE, 0, 1)) == ["09:00-09:30"]


def test_lay_slots_each_window_starts_its_own_grid() -> None:
    windows = [MORNING, span("2026-01-05T13:10", "2026-01-05T14:00")]
    assert clock(lay_slots(windows, 30 * MINUTE)) == ["09:00-09:30", "09:30-10:00", "13:10-13:40"]


@pytest.mark.parametrize(
    ("visit", "before", "after"), [(0, 0, 0), (-1, 0, 0), (1, -1, 0), (1, 0, -1)]
)
def test_lay_slots_invalid_lengths_raise(visit: int, before: int, after: int) -> None:
    with pytest.raises(ValueError, match="visit length"):
        lay_slots([MORNING], visit, before, after)


START = z("2026-03-09T13:00")


@pytest.mark.parametrize(
    ("schedule_id", "start", "end"),
    [
        ("demo-schedule-smith", START, START + 30 * MINUTE),
        ("a.b-c", START, START + 45 * MINUTE),
        ("-", START, START + MINUTE),
        (".", 0, 1),
        ("rs-1-2-3", START, START + DAY),
        ("..--..", START + 1, START + 30 * MINUTE + 7),  # sub-minute parts
        (str(uuid.UUID(int=2**128 - 1)), START + 59_999_999, START + 1295 * MINUTE + 59_999_999),
        ("x" * 53, START, START + 30 * MINUTE),  # the most a 30-minute slot carries
        ("y" * 52, START, START + 90 * MINUTE),
        ("A" * MAX_SCHEDULE_ID_LENGTH, z("2084-12-18T09:35") + 59_999_999, z("2084-12-19T07:10")),
    ],
)
def test_rule_slot_id_round_trip_dots_dashes_and_long_ids(
    schedule_id: str, start: int, end: int
) -> None:
    slot_id = rule_slot_id(schedule_id, start, end)
    assert len(slot_id) <= 64
    assert set(slot_id) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.")
    assert parse_rule_slot_id(slot_id) == RuleSlotRef(schedule_id, start, end)
    assert rule_slot_id(schedule_id, start, end) == slot_id  # deterministic


def test_rule_slot_id_documented_example() -> None:
    assert rule_slot_id("demo-schedule-smith", START, START + 30 * MINUTE) == (
        "rs-hldpo-u-demo-schedule-smith"
    )


@pytest.mark.parametrize("length", [54, 64])
def test_rule_slot_id_schedule_id_too_long_raises(length: int) -> None:
    with pytest.raises(SlotIdTooLong, match="too long"):
        rule_slot_id("s" * length, START, START + 30 * MINUTE)


@pytest.mark.parametrize(
    ("schedule_id", "start", "end"),
    [("bad id", START, START + 1), ("", START, START + 1), ("s", START, START), ("s", -1, 5)],
)
def test_rule_slot_id_invalid_input_raises(schedule_id: str, start: int, end: int) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        rule_slot_id(schedule_id, start, end)


@pytest.mark.parametrize(
    "slot_id",
    [
        "demo-slot-smith-1-0900",  # a stored Slot's id
        "rs-",
        "rs-hldpo-u",
        "rs-hldpo-u-",  # no schedule id
        "rs-0hldpo-u-s",  # leading zero: not canonical
        "rs-HLDPO-u-s",  # upper case: not canonical
        "rs-hldpo-0-s",  # zero length
        "rs-hldpo.0-u-s",  # zero remainder: not canonical
        "rs-hld_po-u-s",  # int() would accept the underscore
        "rs- hldpo-u-s",
        "rs-hldpo-u-s s",
        "rs-hldpo-u-" + "s" * 54,  # longer than 64
    ],
)
def test_parse_rule_slot_id_foreign_or_non_canonical_returns_none(slot_id: str) -> None:
    assert parse_rule_slot_id(slot_id) is None


SID = "sched-1"


def rule_candidate(start: str, end: str) -> CandidateSlot:
    return CandidateSlot(SID, z(start), z(end), 1, rule_slot_id(SID, z(start), z(end)), "rule")


def offered(candidates: list[CandidateSlot]) -> list[tuple[str, str, int]]:
    return [(c.source, clock([c.interval])[0], c.capacity) for c in candidates]


def test_free_slots_rules_only_every_laid_slot_with_rule_id() -> None:
    found = free_slots(SID, [MORNING], [], [], [], 30 * MINUTE)
    assert found == [
        rule_candidate("2026-01-05T09:00", "2026-01-05T09:30"),
        rule_candidate("2026-01-05T09:30", "2026-01-05T10:00"),
    ]


def test_free_slots_busy_overlap_removes_only_overlapping_rule_slots() -> None:
    busy = [span("2026-01-05T09:30", "2026-01-05T09:45")]
    found = free_slots(SID, [MORNING], [], busy, [], 15 * MINUTE)
    assert offered(found) == [
        ("rule", "09:00-09:15", 1),
        ("rule", "09:15-09:30", 1),  # touches the busy time: still free
        ("rule", "09:45-10:00", 1),
    ]


def test_free_slots_blocked_time_removes_rule_and_stored_slots() -> None:
    stored = [StoredSlot("st-1", span("2026-01-05T11:00", "2026-01-05T11:30"), 1)]
    blocked = [
        span("2026-01-05T09:20", "2026-01-05T09:40"),
        span("2026-01-05T11:29", "2026-01-05T12:00"),
    ]
    windows = [span("2026-01-05T09:00", "2026-01-05T10:00")]
    assert offered(free_slots(SID, windows, stored, [], blocked, 20 * MINUTE)) == [
        ("rule", "09:00-09:20", 1),
        ("rule", "09:40-10:00", 1),
    ]


def test_free_slots_stored_capacity_minus_taken_seats_and_busy() -> None:
    stored = [
        StoredSlot("vax-1", span("2026-01-05T14:00", "2026-01-05T23:00"), 100),
        ("vax-2", span("2026-01-06T14:00", "2026-01-06T23:00"), 2),
        ("vax-3", span("2026-01-07T14:00", "2026-01-07T23:00"), 1),
    ]
    busy = [span("2026-01-06T15:00", "2026-01-06T15:10")]  # booked without naming vax-2
    found = free_slots(
        SID, [], stored, busy, [], 30 * MINUTE, taken_seats={"vax-1": 37, "vax-3": 1}
    )
    assert [(c.slot_id, c.capacity, c.source) for c in found] == [
        ("vax-1", 63, "stored"),
        ("vax-2", 1, "stored"),
    ]


def test_free_slots_stored_slot_owns_its_time_over_rule_slots() -> None:
    stored = [StoredSlot("st-1", span("2026-01-05T09:00", "2026-01-05T09:30"), 1)]
    found = free_slots(SID, [MORNING], stored, [], [], 30 * MINUTE, taken_seats={"st-1": 1})
    assert offered(found) == [("rule", "09:30-10:00", 1)]  # full stored slot: no rule twin


def test_free_slots_buffers_keep_distance_from_bookings() -> None:
    busy = [span("2026-01-05T09:35", "2026-01-05T09:55")]  # the second slot, booked
    found = free_slots(
        SID,
        [span("2026-01-05T09:00", "2026-01-05T11:00")],
        [],
        busy,
        [],
        20 * MINUTE,
        (5 * MINUTE, 5 * MINUTE),
    )
    assert offered(found) == [
        ("rule", "09:05-09:25", 1),
        ("rule", "10:05-10:25", 1),
        ("rule", "10:35-10:55", 1),
    ]
    off_grid = [span("2026-01-05T10:27", "2026-01-05T10:29")]  # a REST booking off the grid
    found = free_slots(
        SID,
        [span("2026-01-05T09:00", "2026-01-05T11:00")],
        [],
        off_grid,
        [],
        20 * MINUTE,
        (5 * MINUTE, 5 * MINUTE),
    )
    assert offered(found) == [
        ("rule", "09:05-09:25", 1),
        ("rule", "09:35-09:55", 1),
    ]


def test_free_slots_max_per_day_reached_local_day_offers_nothing() -> None:
    # Two local days in New York; the evening UTC instants belong to the previous local date.
    windows = [
        span("2026-01-05T14:00", "2026-01-05T15:00"),  # Monday 09:00 EST
        span("2026-01-06T03:00", "2026-01-06T04:00"),  # still Monday, 22:00 EST
        span("2026-01-06T14:00", "2026-01-06T15:00"),  # Tuesday
    ]
    stored = [StoredSlot("st-mon", span("2026-01-05T16:00", "2026-01-05T16:30"), 3)]
    found = free_slots(
        SID,
        windows,
        stored,
        [],
        [],
        30 * MINUTE,
        max_per_day=4,
        tz="America/New_York",
        booked_per_day={dt.date(2026, 1, 5): 4, dt.date(2026, 1, 6): 3},
    )
    assert offered(found) == [("rule", "14:00-14:30", 1), ("rule", "14:30-15:00", 1)]
    assert {dt.datetime.fromtimestamp(c.start / 1e6, dt.UTC).day for c in found} == {6}


def test_free_slots_search_window_keeps_whole_slots_inside_only() -> None:
    stored = [StoredSlot("st-1", span("2026-01-05T08:30", "2026-01-05T09:00"), 1)]
    search = span("2026-01-05T08:45", "2026-01-05T09:45")
    found = free_slots(SID, [MORNING], stored, [], [], 30 * MINUTE, search=search)
    assert offered(found) == [("rule", "09:00-09:30", 1)]


def test_free_slots_schedule_id_too_long_offers_stored_only() -> None:
    long_id = "s" * 64
    stored = [StoredSlot("st-1", span("2026-01-05T11:00", "2026-01-05T11:30"), 1)]
    found = free_slots(long_id, [MORNING], stored, [], [], 30 * MINUTE)
    assert [(c.schedule_id, c.slot_id, c.source) for c in found] == [(long_id, "st-1", "stored")]


def test_free_slots_sorted_by_start_then_source() -> None:
    stored = [StoredSlot("st-1", span("2026-01-05T09:00", "2026-01-05T09:15"), 1)]
    windows = [
        span("2026-01-05T08:00", "2026-01-05T08:30"),
        span("2026-01-05T09:15", "2026-01-05T09:45"),
    ]
    found = free_slots(SID, windows, stored, [], [], 30 * MINUTE)
    assert offered(found) == [
        ("rule", "08:00-08:30", 1),
        ("stored", "09:00-09:15", 1),
        ("rule", "09:15-09:45", 1),
    ]


def test_free_slots_demo_clinic_dr_smith_day_combines_stored_rules_and_blocks() -> None:
    everything = demo_clinic(dt.date(2026, 1, 5))
    by_ref = {f"{r['resourceType']}/{r['id']}": r for r in everything}
    schedule = by_ref[f"Schedule/{DEMO_SCHEDULE_ID}"]
    actors = [by_ref[a["reference"]] for a in schedule["actor"]]
    sites = [by_ref[ref] for ref in location_references(actors)]
    tz = schedule_timezone(schedule, actors, sites)
    params = booking_parameters(schedule)
    slots = [r for r in everything if r["resourceType"] == "Slot"]
    stored = [
        StoredSlot(
            s["id"],
            Interval(parse_instant(s["start"]), parse_instant(s["end"])),
            slot_capacity(s),
        )
        for s in slots
        if s["status"] == "free"
    ]
    blocked = [
        Interval(parse_instant(s["start"]), parse_instant(s["end"]))
        for s in slots
        if s["status"] == "busy-unavailable"
    ]
    search = span("2026-01-06T05:00", "2026-01-07T05:00")  # Tuesday in Boston
    days = whole_local_days(search, zone(tz))
    windows = schedule_windows(schedule, rules_for(schedule, actors), days, tz)
    found = free_slots(
        DEMO_SCHEDULE_ID,
        windows,
        stored,
        [],
        blocked,
        params.visit_us,
        (params.buffer_before_us, params.buffer_after_us),
        params.max_per_day,
        tz,
        search=search,
    )
    assert offered(found) == [
        ("stored", "14:00-14:30", 1),  # 09:00 EST
        ("stored", "14:30-15:00", 1),
        ("stored", "15:00-15:30", 1),
        ("rule", "15:30-16:00", 1),
        ("rule", "16:00-16:30", 1),
        ("rule", "16:30-17:00", 1),
        ("rule", "18:00-18:30", 1),  # 13:00 EST, after lunch
        ("rule", "18:30-19:00", 1),
        ("rule", "20:00-20:30", 1),  # 14:00-15:00 EST team meeting blocked
        ("rule", "20:30-21:00", 1),
        ("rule", "21:00-21:30", 1),
        ("rule", "21:30-22:00", 1),
    ]
    assert found[0].slot_id == "demo-slot-smith-1-0900"
    assert parse_rule_slot_id(found[3].slot_id) == RuleSlotRef(
        DEMO_SCHEDULE_ID, z("2026-01-06T15:30"), z("2026-01-06T16:00")
    )
