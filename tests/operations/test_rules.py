"""Weekly rules -> UTC windows, limited as the Schedule says (`operations.scheduling.rules`);
where the rules come from is `test_sources.py`."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from fhir_server.demo import DEMO_PRACTITIONER_ROLE_ID, DEMO_SCHEDULE_ID, demo_clinic
from operations.scheduling.intervals import Interval
from operations.scheduling.rules import (
    period_interval,
    rule_windows,
    schedule_windows,
)
from operations.scheduling.sources import (
    NotAvailable,
    WeeklyRule,
    WeeklyRules,
    rules_for,
)
from operations.scheduling.timezones import (
    location_references,
    schedule_timezone,
    whole_local_days,
    zone,
)
from resources.fhir_dates import parse_instant
from tests.operations.test_sources import role, schedule

HOUR = 3_600_000_000
EVERY_DAY = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
NY, BERLIN = "America/New_York", "Europe/Berlin"
LORD_HOWE, SANTIAGO = "Australia/Lord_Howe", "America/Santiago"


def z(text: str) -> int:
    """µs of a UTC time written `YYYY-MM-DDThh:mm`."""
    return parse_instant(f"{text}:00Z")


def span(start: str, end: str) -> Interval:
    return Interval(z(start), z(end))


def show(windows: list[Interval]) -> list[tuple[str, str]]:
    def text(us: int) -> str:
        return dt.datetime.fromtimestamp(us / 1e6, dt.UTC).strftime("%Y-%m-%dT%H:%M")

    return [(text(w.start), text(w.end)) for w in windows]


def weekly(days: tuple[str, ...], start: str | None, end: str | None) -> WeeklyRule:
    hours = {"daysOfWeek": list(days), "availableStartTime": start, "availableEndTime": end}
    role = {"resourceType": "PractitionerRole", "id": "r", "availableTime": [hours]}
    found = rules_for({"resourceType": "Schedule", "id": "s"}, [role])
    assert found is not None
    return found.rules[0]


def windows_on(
    day: str, tz: str, start: str | None, end: str | None, leave: tuple[NotAvailable, ...] = ()
) -> list[tuple[str, str]]:
    """The windows of an every-day rule within the local day `day`."""
    noon = span(f"{day}T12:00", f"{day}T12:01")
    found = rule_windows(
        [weekly(EVERY_DAY, start, end)], leave, whole_local_days(noon, zone(tz)), tz
    )
    return show(found)


@pytest.mark.parametrize(
    ("day", "tz", "start", "end", "expected"),
    [
        # New York spring forward 2026-03-08 (02:00 EST -> 03:00 EDT at 07:00Z)
        ("2026-03-08", NY, "02:00:00", "04:00:00", [("2026-03-08T07:00", "2026-03-08T08:00")]),
        ("2026-03-08", NY, "02:30:00", "03:30:00", [("2026-03-08T07:00", "2026-03-08T07:30")]),
        ("2026-03-08", NY, "01:00:00", "04:00:00", [("2026-03-08T06:00", "2026-03-08T08:00")]),
        ("2026-03-08", NY, "02:10:00", "02:50:00", []),  # wholly in the gap: no time at all
        ("2026-03-08", NY, "09:00:00", "17:00:00", [("2026-03-08T13:00", "2026-03-08T21:00")]),
        # Berlin spring forward 2026-03-29 (02:00 CET -> 03:00 CEST at 01:00Z)
        ("2026-03-29", BERLIN, "02:00:00", "04:00:00", [("2026-03-29T01:00", "2026-03-29T02:00")]),
        ("2026-03-29", BERLIN, "01:30:00", "02:30:00", [("2026-03-29T00:30", "2026-03-29T01:00")]),
        ("2026-03-29", BERLIN, "08:00:00", "16:00:00", [("2026-03-29T06:00", "2026-03-29T14:00")]),
    ],
)
def test_rule_windows_dst_days_exact_utc_instants(
    day: str, tz: str, start: str, end: str, expected: list[tuple[str, str]]
) -> None:
    assert windows_on(day, tz, start, end) == expected


@pytest.mark.parametrize(
    ("day", "tz", "start", "end", "expected"),
    [
        # New York 2026-11-01: 02:00 EDT -> 01:00 EST at 06:00Z; 06:00Z-07:00Z is fold=1.
        (
            "2026-11-01",
            NY,
            "00:00:00",
            "03:00:00",
            [("2026-11-01T04:00", "2026-11-01T06:00"), ("2026-11-01T07:00", "2026-11-01T08:00")],
        ),
        ("2026-11-01", NY, "01:00:00", "01:30:00", [("2026-11-01T05:00", "2026-11-01T05:30")]),
        (
            "2026-11-01",
            NY,
            "01:30:00",
            "02:30:00",
            [("2026-11-01T05:30", "2026-11-01T06:00"), ("2026-11-01T07:00", "2026-11-01T07:30")],
        ),
        ("2026-11-01", NY, "01:30:00", "02:00:00", [("2026-11-01T05:30", "2026-11-01T06:00")]),
        ("2026-11-01", NY, "02:00:00", "03:00:00", [("2026-11-01T07:00", "2026-11-01T08:00")]),
        ("2026-11-01", NY, "09:00:00", "17:00:00", [("2026-11-01T14:00", "2026-11-01T22:00")]),
        # Berlin 2026-10-25: 03:00 CEST -> 02:00 CET at 01:00Z; 01:00Z-02:00Z is fold=1.
        ("2026-10-25", BERLIN, "02:00:00", "03:00:00", [("2026-10-25T00:00", "2026-10-25T01:00")]),
        ("2026-10-25", BERLIN, "02:30:00", "02:45:00", [("2026-10-25T00:30", "2026-10-25T00:45")]),
        ("2026-10-25", BERLIN, "08:00:00", "16:00:00", [("2026-10-25T07:00", "2026-10-25T15:00")]),
        # Lord Howe 2026-04-05: 02:00 +11 -> 01:30 +10:30 at 15:00Z (a 30-minute fall-back).
        (
            "2026-04-05",
            LORD_HOWE,
            "01:00:00",
            "03:00:00",
            [("2026-04-04T14:00", "2026-04-04T15:00"), ("2026-04-04T15:30", "2026-04-04T16:30")],
        ),
        # Santiago 2026-04-05 00:00 -03 -> 04-04 23:00 -04 at 03:00Z: the evening repeats.
        (
            "2026-04-04",
            SANTIAGO,
            "22:00:00",
            "00:00:00",
            [("2026-04-05T01:00", "2026-04-05T03:00")],
        ),
    ],
)
def test_rule_windows_fall_back_day_second_occurrence_never_opened(
    day: str, tz: str, start: str, end: str, expected: list[tuple[str, str]]
) -> None:
    assert windows_on(day, tz, start, end) == expected


@pytest.mark.parametrize(
    ("day", "tz", "expected", "hours"),
    [
        ("2026-03-08", NY, [("2026-03-08T05:00", "2026-03-09T04:00")], 23),
        (
            "2026-11-01",
            NY,
            [("2026-11-01T04:00", "2026-11-01T06:00"), ("2026-11-01T07:00", "2026-11-02T05:00")],
            24,
        ),
        ("2026-03-29", BERLIN, [("2026-03-28T23:00", "2026-03-29T22:00")], 23),
        (
            "2026-10-25",
            BERLIN,
            [("2026-10-24T22:00", "2026-10-25T01:00"), ("2026-10-25T02:00", "2026-10-25T23:00")],
            24,
        ),
    ],
)
def test_rule_windows_all_day_on_dst_day_wall_clock_length(
    day: str, tz: str, expected: list[tuple[str, str]], hours: int
) -> None:
    local = dt.date.fromisoformat(day)
    rule = WeeklyRule(frozenset({local.weekday()}), True, 0, 0)
    window = span(f"{local - dt.timedelta(days=2)}T00:00", f"{local + dt.timedelta(days=2)}T00:00")
    found = rule_windows([rule], [], window, tz)
    assert show(found) == expected
    assert sum(w.duration for w in found) == hours * HOUR


def test_rule_windows_lunch_break_splits_day() -> None:
    rules = [weekly(("mon",), "09:00:00", "12:00:00"), weekly(("mon",), "13:00:00", "17:00:00")]
    found = rule_windows(rules, [], span("2026-01-05T00:00", "2026-01-06T00:00"), NY)
    assert show(found) == [
        ("2026-01-05T14:00", "2026-01-05T17:00"),
        ("2026-01-05T18:00", "2026-01-05T22:00"),
    ]


def test_rule_windows_overnight_rule_runs_into_next_day_and_clips() -> None:
    rule = weekly(("fri",), "22:00:00", "06:00:00")
    found = rule_windows([rule], [], span("2026-01-10T00:00", "2026-01-11T00:00"), "UTC")
    assert show(found) == [("2026-01-10T00:00", "2026-01-10T06:00")]  # Friday's night shift


def test_rule_windows_touching_rules_merge() -> None:
    rules = [weekly(("tue",), "08:00:00", "12:00:00"), weekly(("tue",), "12:00:00", "14:00:00")]
    found = rule_windows(rules, [], span("2026-01-06T00:00", "2026-01-07T00:00"), "UTC")
    assert show(found) == [("2026-01-06T08:00", "2026-01-06T14:00")]


def test_rule_windows_not_available_dates_across_dst_change_whole_local_days() -> None:
    rule = weekly(("mon", "tue", "wed", "thu", "fri"), "08:00:00", "16:00:00")
    leave = (NotAvailable("Urlaub", "2026-03-27", "2026-03-30"),)  # Fri .. Mon, DST on Sunday
    found = rule_windows([rule], leave, span("2026-03-26T00:00", "2026-04-01T00:00"), BERLIN)
    assert show(found) == [
        ("2026-03-26T07:00", "2026-03-26T15:00"),  # Thursday, CET
        ("2026-03-31T06:00", "2026-03-31T14:00"),  # Tuesday, CEST
    ]


def test_rule_windows_not_available_offsets_across_dst_change_partial_days() -> None:
    rule = weekly(("mon", "tue", "wed", "thu", "fri"), "08:00:00", "16:00:00")
    leave = (NotAvailable("Congress", "2026-03-27T12:00:00+01:00", "2026-03-30T12:00:00+02:00"),)
    found = rule_windows([rule], leave, span("2026-03-27T00:00", "2026-03-31T00:00"), BERLIN)
    assert show(found) == [
        ("2026-03-27T07:00", "2026-03-27T11:00"),
        ("2026-03-30T10:00", "2026-03-30T14:00"),
    ]


def test_rule_windows_not_available_open_end_removes_everything_after() -> None:
    rule = weekly(EVERY_DAY, "09:00:00", "10:00:00")
    leave = (NotAvailable("Retired", "2026-01-02T09:30:00Z", None),)
    found = rule_windows([rule], leave, span("2026-01-01T00:00", "2026-01-05T00:00"), "UTC")
    assert show(found) == [
        ("2026-01-01T09:00", "2026-01-01T10:00"),
        ("2026-01-02T09:00", "2026-01-02T09:30"),
    ]


def test_rule_windows_unknown_zone_raises() -> None:
    with pytest.raises(ValueError, match="unknown time zone"):
        rule_windows(
            [weekly(EVERY_DAY, None, None)],
            [],
            span("2026-01-01T00:00", "2026-01-02T00:00"),
            "Nowhere",
        )


def test_period_interval_date_end_inclusive_time_end_exclusive() -> None:
    assert period_interval("2026-03-08", "2026-03-08", NY) == span(
        "2026-03-08T05:00", "2026-03-09T04:00"
    )
    assert period_interval(None, "2026-03-09T00:00:00-04:00", NY).end == z("2026-03-09T04:00")


def test_period_interval_end_before_start_raises() -> None:
    with pytest.raises(ValueError, match="before its start"):
        period_interval("2026-03-10", "2026-03-08", "UTC")


MONDAY = span("2026-01-05T00:00", "2026-01-06T00:00")


def test_schedule_windows_planning_horizon_clips() -> None:
    horizon = {"start": "2026-01-05T09:30:00Z", "end": "2026-01-05T10:15:00Z"}
    found = schedule_windows(
        schedule(planningHorizon=horizon), rules_for(schedule(), [role()]), MONDAY, "UTC"
    )
    assert show(found) == [("2026-01-05T09:30", "2026-01-05T10:15")]


def test_schedule_windows_horizon_outside_window_returns_empty() -> None:
    horizon = {"start": "2026-02-01", "end": "2026-03-01"}
    found = schedule_windows(
        schedule(planningHorizon=horizon), rules_for(schedule(), [role()]), MONDAY, "UTC"
    )
    assert found == []


def test_schedule_windows_inactive_schedule_returns_empty() -> None:
    weekly_rules = rules_for(schedule(), [role()])
    assert schedule_windows(schedule(), weekly_rules, MONDAY, "UTC") != []
    assert schedule_windows(schedule(active=False), weekly_rules, MONDAY, "UTC") == []


def test_schedule_windows_no_rules_returns_empty() -> None:
    assert rules_for(schedule(), [{"resourceType": "Practitioner", "id": "p"}]) is None
    assert schedule_windows(schedule(), None, MONDAY, "UTC") == []


def demo(today: dt.date) -> tuple[dict[str, Any], WeeklyRules | None, str]:
    resources = {f"{r['resourceType']}/{r['id']}": r for r in demo_clinic(today)}
    smith = resources[f"Schedule/{DEMO_SCHEDULE_ID}"]
    actors = [resources[actor["reference"]] for actor in smith["actor"]]
    sites = [resources[reference] for reference in location_references(actors)]
    tz = schedule_timezone(smith, actors, sites, "UTC")
    return smith, rules_for(smith, actors, locations=sites), tz


def test_demo_clinic_dr_smith_weekly_windows_boston_time() -> None:
    smith, found, tz = demo(dt.date(2026, 1, 5))  # a Monday, EST (UTC-5)
    assert tz == NY
    assert found is not None
    assert (found.source, found.reference) == (
        "PractitionerRole",
        f"PractitionerRole/{DEMO_PRACTITIONER_ROLE_ID}",
    )
    week = schedule_windows(smith, found, span("2026-01-05T05:00", "2026-01-12T05:00"), tz)
    assert show(week) == [
        pair
        for day in ("05", "06", "07", "08", "09")
        for pair in (
            (f"2026-01-{day}T14:00", f"2026-01-{day}T17:00"),
            (f"2026-01-{day}T18:00", f"2026-01-{day}T22:00"),
        )
    ]


def test_demo_clinic_dr_smith_summer_week_edt_and_leave_week_empty() -> None:
    smith, found, tz = demo(dt.date(2026, 6, 1))  # leave 2026-06-15 .. 2026-06-22
    summer = schedule_windows(smith, found, span("2026-06-08T04:00", "2026-06-09T04:00"), tz)
    assert show(summer) == [
        ("2026-06-08T13:00", "2026-06-08T16:00"),
        ("2026-06-08T17:00", "2026-06-08T21:00"),
    ]
    leave = schedule_windows(smith, found, span("2026-06-15T04:00", "2026-06-22T04:00"), tz)
    assert leave == []
    after = schedule_windows(smith, found, span("2026-06-22T04:00", "2026-06-23T04:00"), tz)
    assert len(after) == 2


def test_demo_clinic_planning_horizon_stops_after_90_days() -> None:
    smith, found, tz = demo(dt.date(2026, 1, 5))
    # 2026-04-05 is the horizon end (local midnight); Monday 2026-04-06 has nothing.
    assert schedule_windows(smith, found, span("2026-04-06T04:00", "2026-04-07T04:00"), tz) == []
    assert schedule_windows(smith, found, span("2026-04-03T04:00", "2026-04-04T04:00"), tz)
