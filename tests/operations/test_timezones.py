"""Schedule time zone choice and wall-clock conversion (`operations.scheduling.timezones`)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from operations.scheduling.extensions import TIMEZONE_URL
from operations.scheduling.intervals import Interval
from operations.scheduling.timezones import (
    is_known_zone,
    local_date,
    location_references,
    repeated_spans,
    schedule_timezone,
    wall_to_utc_us,
    whole_local_days,
    zone,
)
from resources.fhir_dates import parse_instant

HOUR = 3_600_000_000


def with_tz(resource_type: str, code: Any = None, **extra: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": resource_type, "id": "x", **extra}
    if code is not None:
        resource["extension"] = [{"url": TIMEZONE_URL, "valueCode": code}]
    return resource


def test_schedule_timezone_schedule_extension_wins() -> None:
    schedule = with_tz("Schedule", "Europe/Berlin")
    actors = [with_tz("PractitionerRole", "America/New_York")]
    locations = [with_tz("Location", "Asia/Tokyo")]
    assert schedule_timezone(schedule, actors, locations, "UTC") == "Europe/Berlin"


def test_schedule_timezone_no_schedule_extension_uses_actor() -> None:
    actors = [with_tz("PractitionerRole"), with_tz("Location", "America/Chicago")]
    locations = [with_tz("Location", "Asia/Tokyo")]
    assert schedule_timezone(with_tz("Schedule"), actors, locations) == "America/Chicago"


def test_schedule_timezone_only_location_uses_location() -> None:
    locations = [with_tz("Location"), with_tz("Location", "Asia/Tokyo")]
    assert schedule_timezone(with_tz("Schedule"), [with_tz("PractitionerRole")], locations) == (
        "Asia/Tokyo"
    )


def test_schedule_timezone_nothing_returns_default() -> None:
    assert schedule_timezone(with_tz("Schedule"), default="America/Denver") == "America/Denver"
    assert schedule_timezone(with_tz("Schedule")) == "UTC"


@pytest.mark.parametrize("bad", ["Mars/Olympus", "../etc/passwd", "", "america/new_york", 42])
def test_schedule_timezone_unknown_or_malformed_code_falls_through(bad: Any) -> None:
    schedule = with_tz("Schedule", bad)
    actors = [with_tz("HealthcareService", "Europe/Berlin")]
    assert schedule_timezone(schedule, actors) == "Europe/Berlin"


def test_schedule_timezone_unknown_default_raises() -> None:
    with pytest.raises(ValueError, match="unknown default time zone"):
        schedule_timezone(with_tz("Schedule", "Nowhere/Land"), default="Nowhere/Else")


def test_location_references_role_and_service_sites_deduplicated() -> None:
    actors: list[dict[str, Any]] = [
        {"resourceType": "PractitionerRole", "location": [{"reference": "Location/a"}]},
        {"resourceType": "Location", "id": "ignored"},
        {
            "resourceType": "HealthcareService",
            "location": [{"reference": "Location/a"}, {"reference": "Location/b"}, {}],
        },
    ]
    assert location_references(actors) == ["Location/a", "Location/b"]


def test_zone_utc_returns_none_and_unknown_raises() -> None:
    assert zone("UTC") is None
    assert is_known_zone("Etc/UTC")
    assert not is_known_zone("")
    with pytest.raises(ValueError, match="unknown time zone"):
        zone("Nowhere/Land")


def wall(tz: str, day: str, hours: float) -> str:
    ordinal = dt.date.fromisoformat(day).toordinal()
    us = wall_to_utc_us(zone(tz), ordinal, int(hours * HOUR))
    return dt.datetime.fromtimestamp(us / 1e6, dt.UTC).strftime("%Y-%m-%dT%H:%MZ")


@pytest.mark.parametrize(
    ("tz", "day", "hours", "expected"),
    [
        # America/New_York spring forward 2026-03-08: 02:00 EST -> 03:00 EDT at 07:00Z.
        ("America/New_York", "2026-03-08", 1.5, "2026-03-08T06:30Z"),
        ("America/New_York", "2026-03-08", 2.0, "2026-03-08T07:00Z"),  # in the gap
        ("America/New_York", "2026-03-08", 2.5, "2026-03-08T07:00Z"),  # in the gap
        ("America/New_York", "2026-03-08", 3.0, "2026-03-08T07:00Z"),
        ("America/New_York", "2026-03-08", 9.0, "2026-03-08T13:00Z"),
        # America/New_York fall back 2026-11-01: 02:00 EDT -> 01:00 EST at 06:00Z.
        ("America/New_York", "2026-11-01", 0.5, "2026-11-01T04:30Z"),
        ("America/New_York", "2026-11-01", 1.5, "2026-11-01T05:30Z"),  # first occurrence
        ("America/New_York", "2026-11-01", 2.0, "2026-11-01T07:00Z"),
        # Europe/Berlin spring forward 2026-03-29: 02:00 CET -> 03:00 CEST at 01:00Z.
        ("Europe/Berlin", "2026-03-29", 1.0, "2026-03-29T00:00Z"),
        ("Europe/Berlin", "2026-03-29", 2.25, "2026-03-29T01:00Z"),  # in the gap
        ("Europe/Berlin", "2026-03-29", 3.0, "2026-03-29T01:00Z"),
        # Europe/Berlin fall back 2026-10-25: 03:00 CEST -> 02:00 CET at 01:00Z.
        ("Europe/Berlin", "2026-10-25", 2.5, "2026-10-25T00:30Z"),  # first occurrence
        ("Europe/Berlin", "2026-10-25", 3.0, "2026-10-25T02:00Z"),
        ("UTC", "2026-10-25", 2.5, "2026-10-25T02:30Z"),
    ],
)
def test_wall_to_utc_dst_days_exact_instants(
    tz: str, day: str, hours: float, expected: str
) -> None:
    assert wall(tz, day, hours) == expected


def test_wall_to_utc_gap_chatham_quarter_hour_offsets_transition() -> None:
    # Pacific/Chatham (+12:45 -> +13:45 on 2026-09-27 at 02:45 local) checks a non-hour offset.
    assert wall("Pacific/Chatham", "2026-09-27", 3.0) == "2026-09-26T14:00Z"


def repeated_on(tz: str, day: str) -> list[tuple[str, str]]:
    """`repeated_spans` of one local day, as UTC `YYYY-MM-DDThh:mmZ` pairs."""
    ordinal = dt.date.fromisoformat(day).toordinal()

    def text(us: int) -> str:
        return dt.datetime.fromtimestamp(us / 1e6, dt.UTC).strftime("%Y-%m-%dT%H:%MZ")

    return [(text(s.start), text(s.end)) for s in repeated_spans(zone(tz), ordinal, ordinal)]


@pytest.mark.parametrize(
    ("tz", "day", "expected"),
    [
        # 02:00 EDT -> 01:00 EST at 06:00Z: 01:00-02:00 EST is the second occurrence.
        ("America/New_York", "2026-11-01", [("2026-11-01T06:00Z", "2026-11-01T07:00Z")]),
        # 03:00 CEST -> 02:00 CET at 01:00Z.
        ("Europe/Berlin", "2026-10-25", [("2026-10-25T01:00Z", "2026-10-25T02:00Z")]),
        # 02:00 +11 -> 01:30 +10:30 at 15:00Z the day before in UTC: a 30-minute fall-back.
        ("Australia/Lord_Howe", "2026-04-05", [("2026-04-04T15:00Z", "2026-04-04T15:30Z")]),
        # 03:45 +13:45 -> 02:45 +12:45 at 14:00Z.
        ("Pacific/Chatham", "2026-04-05", [("2026-04-04T14:00Z", "2026-04-04T15:00Z")]),
        # 04-05 00:00 -03 -> 04-04 23:00 -04 at 03:00Z: the evening of the 4th repeats.
        ("America/Santiago", "2026-04-04", [("2026-04-05T03:00Z", "2026-04-05T04:00Z")]),
        ("America/Santiago", "2026-04-05", []),
        # 01:00 CDT -> 00:00 CST at 05:00Z: the first hour of the day repeats.
        ("America/Havana", "2026-11-01", [("2026-11-01T05:00Z", "2026-11-01T06:00Z")]),
        ("America/New_York", "2026-03-08", []),  # spring forward: a gap, nothing repeats
        ("America/New_York", "2026-10-31", []),
        ("UTC", "2026-11-01", []),
    ],
)
def test_repeated_spans_fall_back_days_exact_fold_one_instants(
    tz: str, day: str, expected: list[tuple[str, str]]
) -> None:
    assert repeated_on(tz, day) == expected


@pytest.mark.parametrize(
    "tz", ["America/New_York", "Australia/Lord_Howe", "America/Santiago", "Pacific/Chatham"]
)
def test_repeated_spans_whole_year_match_zoneinfo_fold(tz: str) -> None:
    info = zone(tz)
    assert info is not None
    spans = repeated_spans(info, dt.date(2025, 12, 31).toordinal(), dt.date(2027, 1, 1).toordinal())
    assert len(spans) == 1
    at, end = dt.datetime(2026, 1, 1, tzinfo=dt.UTC), dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
    while at < end:  # every 15 minutes of 2026: in a span exactly when zoneinfo says fold=1
        us = (at - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1)
        inside = any(s.start <= us < s.end for s in spans)
        assert inside == (at.astimezone(info).fold == 1), at
        at += dt.timedelta(minutes=15)


def test_local_date_across_midnight_in_zone() -> None:
    instant = parse_instant("2026-03-09T03:30:00Z")  # 23:30 EDT on the 8th
    assert local_date(instant, zone("America/New_York")) == dt.date(2026, 3, 8)
    assert local_date(instant, None) == dt.date(2026, 3, 9)


def test_whole_local_days_spring_forward_day_is_23_hours() -> None:
    window = Interval(parse_instant("2026-03-08T12:00:00Z"), parse_instant("2026-03-08T13:00:00Z"))
    day = whole_local_days(window, zone("America/New_York"))
    assert day == Interval(
        parse_instant("2026-03-08T05:00:00Z"), parse_instant("2026-03-09T04:00:00Z")
    )
    assert day.duration == 23 * HOUR


def test_whole_local_days_end_at_midnight_excludes_next_day() -> None:
    window = Interval(parse_instant("2026-10-24T22:00:00Z"), parse_instant("2026-10-25T23:00:00Z"))
    days = whole_local_days(window, zone("Europe/Berlin"))  # 10-25 00:00 .. 10-26 00:00 local
    assert days == Interval(
        parse_instant("2026-10-24T22:00:00Z"), parse_instant("2026-10-25T23:00:00Z")
    )
    assert days.duration == 25 * HOUR
