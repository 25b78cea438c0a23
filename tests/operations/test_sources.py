"""Where a Schedule's weekly rules come from (`operations.scheduling.sources.rules_for`):
our Schedule extension, PractitionerRole, HealthcareService, Location, in that order
(SCHEDULING.md "Resources and where availability comes from")."""

from __future__ import annotations

from typing import Any

import pytest

from operations.scheduling.extensions import extension_url
from operations.scheduling.intervals import Interval
from operations.scheduling.rules import rule_windows
from operations.scheduling.sources import NotAvailable, WeeklyRule, from_location, rules_for
from resources.fhir_dates import parse_instant

HOUR = 3_600_000_000


def span(start: str, end: str) -> Interval:
    """The UTC interval between two `YYYY-MM-DDThh:mm` times."""
    return Interval(parse_instant(f"{start}:00Z"), parse_instant(f"{end}:00Z"))


MONDAY = span("2026-01-05T00:00", "2026-01-06T00:00")


def schedule(**extra: Any) -> dict[str, Any]:
    """An active Schedule `s` (also used by `test_rules.py`)."""
    return {"resourceType": "Schedule", "id": "s", "active": True, **extra}


def role(**extra: Any) -> dict[str, Any]:
    """PractitionerRole `r`, Mondays 09:00-11:00 (also used by `test_rules.py`)."""
    hours = [
        {"daysOfWeek": ["mon"], "availableStartTime": "09:00:00", "availableEndTime": "11:00:00"}
    ]
    return {"resourceType": "PractitionerRole", "id": "r", "availableTime": hours, **extra}


def location(**extra: Any) -> dict[str, Any]:
    hours = [{"daysOfWeek": ["mon"], "openingTime": "08:00:00", "closingTime": "18:00:00"}]
    return {"resourceType": "Location", "id": "l", "hoursOfOperation": hours, **extra}


def service(**extra: Any) -> dict[str, Any]:
    hours = [
        {"daysOfWeek": ["mon"], "availableStartTime": "10:00:00", "availableEndTime": "12:00:00"}
    ]
    return {"resourceType": "HealthcareService", "id": "h", "availableTime": hours, **extra}


def availability_extension(start: str, end: str) -> dict[str, Any]:
    return {
        "url": extension_url("schedule-availability"),
        "extension": [
            {"url": "daysOfWeek", "valueCode": "mon"},
            {"url": "availableStartTime", "valueTime": start},
            {"url": "availableEndTime", "valueTime": end},
        ],
    }


def test_rules_for_schedule_extension_takes_precedence_over_role() -> None:
    found = rules_for(
        schedule(extension=[availability_extension("14:00:00", "15:00:00")]), [location(), role()]
    )
    assert found is not None
    assert (found.source, found.reference) == ("Schedule", "Schedule/s")
    assert rule_windows(found.rules, found.not_available, MONDAY, "UTC") == [
        span("2026-01-05T14:00", "2026-01-05T15:00")
    ]


def test_rules_for_schedule_extension_still_subtracts_role_leave() -> None:
    leave = [{"description": "Vacation", "during": {"start": "2026-01-05", "end": "2026-01-09"}}]
    found = rules_for(
        schedule(extension=[availability_extension("14:00:00", "15:00:00")]),
        [role(notAvailable=leave)],
    )
    assert found is not None
    assert found.not_available == (NotAvailable("Vacation", "2026-01-05", "2026-01-09"),)
    assert rule_windows(found.rules, found.not_available, MONDAY, "UTC") == []


def test_rules_for_order_role_then_service_then_location() -> None:
    found = rules_for(schedule(), [location(), service(), role()])
    assert found is not None and found.source == "PractitionerRole"
    found = rules_for(schedule(), [location(), service(), role(availableTime=[])])
    assert found is not None and found.source == "HealthcareService"
    found = rules_for(schedule(), [location(), role(availableTime=[])])
    assert found == from_location(location())


def test_rules_for_hours_of_operation_fallback_from_actor_site() -> None:
    site = location(id="site")
    found = rules_for(schedule(), [role(availableTime=None)], locations=[site])
    assert found is not None
    assert (found.source, found.reference) == ("Location", "Location/site")
    assert rule_windows(found.rules, [], MONDAY, "UTC") == [
        span("2026-01-05T08:00", "2026-01-05T18:00")
    ]


def test_rules_for_no_days_means_every_day_and_missing_times_whole_day() -> None:
    found = rules_for(schedule(), [role(availableTime=[{"availableStartTime": "09:00:00"}])])
    assert found is not None
    assert found.rules == (WeeklyRule(frozenset(range(7)), False, 9 * HOUR, 0),)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"daysOfWeek": ["monday"]}, "unknown day codes"),
        ({"daysOfWeek": ["mon"], "availableStartTime": "9:00"}, "invalid FHIR time"),
        ({"daysOfWeek": ["mon"], "availableEndTime": "24:00:00"}, "invalid FHIR time"),
    ],
)
def test_rules_for_malformed_available_time_raises(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        rules_for(schedule(), [role(availableTime=[entry])])


def test_rules_for_fractional_seconds_kept_to_microseconds() -> None:
    found = rules_for(schedule(), [role(availableTime=[{"availableStartTime": "09:00:00.5"}])])
    assert found is not None and found.rules[0].start_us == 9 * HOUR + 500_000
