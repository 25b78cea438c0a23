"""FHIR date/dateTime/instant parsing into µs UTC ranges (`resources.fhir_dates`)."""

from __future__ import annotations

import re
import time

import pytest

from resources.fhir_dates import check_zone, date_range, format_instant, now_us, parse_instant
from tests.resources.indexing_helpers import us


def test_date_range_year_whole_year() -> None:
    assert date_range("2026") == (us(2026, 1, 1), us(2027, 1, 1))


def test_date_range_month_leap_february_29_days() -> None:
    assert date_range("2024-02") == (us(2024, 2, 1), us(2024, 3, 1))


def test_date_range_month_december_ends_next_year() -> None:
    assert date_range("2026-12") == (us(2026, 12, 1), us(2027, 1, 1))


def test_date_range_day_utc_24_hours() -> None:
    assert date_range("2026-11-22") == (us(2026, 11, 22), us(2026, 11, 23))


def test_date_range_day_in_new_york_on_dst_start_23_hours() -> None:
    low, high = date_range("2026-03-08", "America/New_York")

    assert (low, high) == (
        us(2026, 3, 8, tz="America/New_York"),
        us(2026, 3, 9, tz="America/New_York"),
    )
    assert high - low == 23 * 3600 * 1_000_000


def test_date_range_day_in_new_york_on_dst_end_25_hours() -> None:
    low, high = date_range("2026-11-01", "America/New_York")

    assert (low, high) == (us(2026, 11, 1, 4), us(2026, 11, 2, 5))
    assert high - low == 25 * 3600 * 1_000_000


def test_date_range_year_in_zone_starts_at_local_midnight() -> None:
    assert date_range("2026", "Europe/Paris") == (us(2025, 12, 31, 23), us(2026, 12, 31, 23))


def test_date_range_minute_precision_60_seconds() -> None:
    assert date_range("2026-11-22T10:30Z") == (us(2026, 11, 22, 10, 30), us(2026, 11, 22, 10, 31))


def test_date_range_second_precision_one_second() -> None:
    assert date_range("2026-11-22T10:30:05Z") == (
        us(2026, 11, 22, 10, 30, 5),
        us(2026, 11, 22, 10, 30, 6),
    )


@pytest.mark.parametrize(
    ("fraction", "micro", "width"),
    [
        ("1", 100_000, 100_000),
        ("12", 120_000, 10_000),
        ("123", 123_000, 1_000),
        ("1234", 123_400, 100),
        ("123456", 123_456, 1),
        ("123456789", 123_456, 1),
    ],
)
def test_date_range_fraction_width_of_last_digit(fraction: str, micro: int, width: int) -> None:
    low = us(2026, 11, 22, 10, 30, 5, micro)

    assert date_range(f"2026-11-22T10:30:05.{fraction}Z") == (low, low + width)


def test_date_range_positive_offset_subtracted() -> None:
    assert date_range("2026-11-22T10:30:00+05:30") == (
        us(2026, 11, 22, 5, 0, 0),
        us(2026, 11, 22, 5, 0, 1),
    )


def test_date_range_negative_offset_added() -> None:
    assert date_range("2026-11-22T22:30:00-03:00") == (
        us(2026, 11, 23, 1, 30, 0),
        us(2026, 11, 23, 1, 30, 1),
    )


def test_date_range_offset_ignores_default_tz() -> None:
    assert date_range("2026-07-01T09:00:00Z", "Europe/Paris") == date_range("2026-07-01T09:00:00Z")


def test_date_range_no_offset_summer_in_dst_zone_uses_summer_offset() -> None:
    assert date_range("2026-07-01T09:00:00", "Europe/Paris") == (
        us(2026, 7, 1, 7, 0, 0),
        us(2026, 7, 1, 7, 0, 1),
    )


def test_date_range_no_offset_winter_in_dst_zone_uses_winter_offset() -> None:
    assert date_range("2026-01-15T09:00", "Europe/Paris") == (
        us(2026, 1, 15, 8, 0),
        us(2026, 1, 15, 8, 1),
    )


def test_date_range_no_offset_in_spring_gap_takes_earlier_offset() -> None:
    # 02:30 does not exist in New York on 2026-03-08; fold=0 reads it with EST (-05:00).
    assert date_range("2026-03-08T02:30:00", "America/New_York") == (
        us(2026, 3, 8, 7, 30, 0),
        us(2026, 3, 8, 7, 30, 1),
    )


def test_date_range_no_offset_default_utc() -> None:
    assert date_range("2026-11-22T10:30:00") == (
        us(2026, 11, 22, 10, 30),
        us(2026, 11, 22, 10, 30, 1),
    )


def test_date_range_leap_second_accepted_as_next_second() -> None:
    assert date_range("2016-12-31T23:59:60Z") == (us(2017, 1, 1), us(2017, 1, 1, 0, 0, 1))


def test_date_range_year_one_and_year_9999_in_range() -> None:
    assert date_range("0001")[0] == us(1, 1, 1)
    assert date_range("9999-12-31") == (us(9999, 12, 31), us(9999, 12, 31) + 86_400_000_000)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2023-02-30", "invalid FHIR date '2023-02-30': day is out of range for month"),
        ("2023-13", "invalid FHIR date '2023-13': month must be in 1..12"),
        ("2023-00-10", "invalid FHIR date '2023-00-10': month must be in 1..12"),
        ("0000", "invalid FHIR date '0000': year 0 is out of range"),
        ("garbage", "invalid FHIR date/dateTime 'garbage'"),
        ("", "invalid FHIR date/dateTime ''"),
        ("2026-1-1", "invalid FHIR date/dateTime '2026-1-1'"),
        ("2026-11-22 10:30", "invalid FHIR date/dateTime '2026-11-22 10:30'"),
        ("2026-11-22T10", "invalid FHIR date/dateTime '2026-11-22T10'"),
        ("2026-11-22Z", "invalid FHIR date/dateTime '2026-11-22Z'"),
        ("2026-11-22T10:30:00.Z", "invalid FHIR date/dateTime '2026-11-22T10:30:00.Z'"),
        ("\u0662\u0660\u0662\u0666", "invalid FHIR date/dateTime '\u0662\u0660\u0662\u0666'"),
        ("2026-11-22T24:00", "invalid FHIR time in '2026-11-22T24:00'"),
        ("2026-11-22T10:60:00Z", "invalid FHIR time in '2026-11-22T10:60:00Z'"),
        ("2026-11-22T10:30:61Z", "invalid FHIR time in '2026-11-22T10:30:61Z'"),
        ("2026-11-22T10:30+24:00", "invalid FHIR time zone offset in '2026-11-22T10:30+24:00'"),
    ],
)
def test_date_range_invalid_raises_value_error(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        date_range(text)


def test_date_range_unknown_zone_raises_value_error() -> None:
    with pytest.raises(ValueError, match=r"^unknown time zone 'Mars/Olympus'$"):
        date_range("2026-11-22", "Mars/Olympus")


def test_check_zone_known_and_unknown() -> None:
    check_zone("America/New_York")
    check_zone("UTC")
    with pytest.raises(ValueError, match=r"^unknown time zone 'Nowhere'$"):
        check_zone("Nowhere")


def test_parse_instant_with_offset_returns_exact_us() -> None:
    assert parse_instant("2026-11-22T05:33:41.123456+01:00") == us(2026, 11, 22, 4, 33, 41, 123456)


def test_parse_instant_utc_z_returns_exact_us() -> None:
    assert parse_instant("2026-11-22T04:33:41Z") == us(2026, 11, 22, 4, 33, 41)


@pytest.mark.parametrize(
    "text",
    ["2026-11-22T04:33:41", "2026-11-22T04:33Z", "2026-11-22", "now", "2026-02-30T00:00:00Z"],
)
def test_parse_instant_not_an_instant_raises_value_error(text: str) -> None:
    with pytest.raises(ValueError, match="invalid FHIR"):
        parse_instant(text)


def test_format_instant_epoch_six_fraction_digits() -> None:
    assert format_instant(0) == "1970-01-01T00:00:00.000000Z"


def test_format_instant_value_round_trips_through_parse_instant() -> None:
    value = us(2026, 11, 22, 4, 33, 41, 123456)

    assert format_instant(value) == "2026-11-22T04:33:41.123456Z"
    assert parse_instant(format_instant(value)) == value


def test_format_instant_before_1000_zero_padded() -> None:
    assert format_instant(us(1, 1, 1)) == "0001-01-01T00:00:00.000000Z"


def test_format_instant_out_of_range_raises_value_error() -> None:
    with pytest.raises(ValueError, match="instant out of range"):
        format_instant(2**62)


def test_now_us_is_current_time_in_microseconds() -> None:
    before = time.time_ns() // 1000
    value = now_us()
    after = time.time_ns() // 1000

    assert before <= value <= after
