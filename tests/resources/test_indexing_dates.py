"""Write-time index extraction (`resources.indexing`) of dates as ranges: date, dateTime and
instant by precision, the default zone for dates and times without offset (across DST),
Period with open ends, Timing events, and invalid dates skipped."""

from __future__ import annotations

from resources.index_values import DATE_MAX, DATE_MIN, DateEntry
from resources.indexing import extract_index
from tests.resources.indexing_helpers import SECOND, of, us


def test_extract_date_datetime_and_instant_ranges_by_precision() -> None:
    appointment = {
        "resourceType": "Appointment",
        "meta": {"lastUpdated": "2026-11-22T04:33:41.123+00:00"},
        "start": "2026-12-01T09:00:00+01:00",
        "end": "2026-12-01T09:15:00+01:00",
    }

    index = extract_index(appointment)

    assert of(index, "_lastUpdated") == [
        DateEntry(
            "_lastUpdated", us(2026, 11, 22, 4, 33, 41, 123000), us(2026, 11, 22, 4, 33, 41, 124000)
        )
    ]
    assert of(index, "date") == [DateEntry("date", us(2026, 12, 1, 8), us(2026, 12, 1, 8) + SECOND)]


def test_extract_date_only_in_default_zone_whole_local_day() -> None:
    patient = {"resourceType": "Patient", "birthDate": "1990-07-01"}

    assert of(extract_index(patient, "America/New_York"), "birthdate") == [
        DateEntry("birthdate", us(1990, 7, 1, 4), us(1990, 7, 2, 4))
    ]


def test_extract_datetime_without_offset_in_dst_zone_uses_local_offset() -> None:
    summer = {"resourceType": "Slot", "start": "2026-07-01T09:00:00"}
    winter = {"resourceType": "Slot", "start": "2026-01-15T09:00:00"}

    assert of(extract_index(summer, "Europe/Paris"), "start") == [
        DateEntry("start", us(2026, 7, 1, 7), us(2026, 7, 1, 7) + SECOND)
    ]
    assert of(extract_index(winter, "Europe/Paris"), "start") == [
        DateEntry("start", us(2026, 1, 15, 8), us(2026, 1, 15, 8) + SECOND)
    ]


def test_extract_period_both_ends_and_open_ends() -> None:
    both = {
        "resourceType": "Schedule",
        "planningHorizon": {"start": "2026-12", "end": "2026-12-31"},
    }
    start_only = {"resourceType": "PractitionerRole", "period": {"start": "2012-01-01"}}
    end_only = {"resourceType": "PractitionerRole", "period": {"end": "2012-03-31"}}

    assert of(extract_index(both), "date") == [DateEntry("date", us(2026, 12, 1), us(2027, 1, 1))]
    assert of(extract_index(start_only), "date") == [DateEntry("date", us(2012, 1, 1), DATE_MAX)]
    assert of(extract_index(end_only), "date") == [DateEntry("date", DATE_MIN, us(2012, 4, 1))]


def test_extract_timing_each_event() -> None:
    request = {
        "resourceType": "ServiceRequest",
        "occurrenceTiming": {"event": ["2026-01-01", "2026-02-01T10:00:00Z"]},
    }

    assert of(extract_index(request), "occurrence") == [
        DateEntry("occurrence", us(2026, 1, 1), us(2026, 1, 2)),
        DateEntry("occurrence", us(2026, 2, 1, 10), us(2026, 2, 1, 10) + SECOND),
    ]


def test_extract_invalid_date_and_extension_only_date_skipped() -> None:
    invalid = {"resourceType": "Patient", "birthDate": "1990-02-30"}
    extension_only = {
        "resourceType": "Patient",
        "_birthDate": {"extension": [{"url": "urn:x", "valueString": "unknown"}]},
    }

    assert of(extract_index(invalid), "birthdate") == []
    assert of(extract_index(extension_only), "birthdate") == []
