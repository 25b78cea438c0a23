"""Tests for fhir_server.demo: the demo clinic `make run` loads into an empty store."""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from collections.abc import Iterator
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fhir.resources.R4B import get_fhir_model_class

from fhir_server.demo import (
    DEMO_PATIENT_ID,
    DEMO_PRACTITIONER_ROLE_ID,
    DEMO_SCHEDULE_ID,
    demo_clinic,
)
from resources.validation import validate_resource

TODAY = dt.date(2026, 3, 6)  # a Friday; US daylight saving starts on Sunday 2026-03-08
TIMEZONE_URL = "http://hl7.org/fhir/StructureDefinition/timezone"
LITERAL_REFERENCE = re.compile(r"([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})")
DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?")
OFFSET = re.compile(r".*T.*(Z|[+-]\d{2}:\d{2})")

CLINIC = demo_clinic(TODAY)


def _by_id(resources: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in resources}


def _walk(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every (path, value) pair below `node`, objects and arrays included."""
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(value, f"{path}[{index}]")


def _zone(resource: dict[str, Any]) -> str:
    (zone,) = [e["valueCode"] for e in resource.get("extension", []) if e["url"] == TIMEZONE_URL]
    return str(zone)


@pytest.mark.parametrize("resource", CLINIC, ids=lambda r: f"{r['resourceType']}/{r['id']}")
def test_demo_resource_r4b_model_validates(resource: dict[str, Any]) -> None:
    get_fhir_model_class(resource["resourceType"]).model_validate(resource)


@pytest.mark.parametrize("resource", CLINIC, ids=lambda r: f"{r['resourceType']}/{r['id']}")
def test_demo_resource_server_validation_passes(resource: dict[str, Any]) -> None:
    validate_resource(resource)  # what the loader runs: structure plus invariants (app-2..app-4)


def test_demo_clinic_resource_counts_match_the_brief() -> None:
    assert Counter(r["resourceType"] for r in CLINIC) == {
        "Organization": 1,
        "Location": 2,
        "Practitioner": 4,
        "HealthcareService": 2,
        "PractitionerRole": 4,
        "Patient": 6,
        "Coverage": 6,
        "Schedule": 4,
        "Slot": 7,
        "Appointment": 2,
    }


def test_demo_clinic_ids_unique_and_readable() -> None:
    ids = [r["id"] for r in CLINIC]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"demo-[a-z0-9\-]+", i) for i in ids)


def test_demo_clinic_literal_references_point_to_earlier_resources() -> None:
    seen: set[str] = set()
    for resource in CLINIC:
        for path, value in _walk(resource):
            if path.endswith(".reference"):
                match = LITERAL_REFERENCE.fullmatch(value)
                assert match, f"{resource['id']}{path}: {value!r} is not a literal Type/id"
                assert value in seen, f"{resource['id']}{path}: {value} is not loaded before"
        seen.add(f"{resource['resourceType']}/{resource['id']}")


def test_demo_clinic_locations_two_time_zones_schedules_follow_their_location() -> None:
    resources = _by_id(CLINIC)
    locations = {r["id"]: _zone(r) for r in CLINIC if r["resourceType"] == "Location"}
    assert locations == {"demo-loc-boston": "America/New_York", "demo-loc-berlin": "Europe/Berlin"}
    for schedule in (r for r in CLINIC if r["resourceType"] == "Schedule"):
        (role,) = schedule["actor"]
        assert role["reference"].startswith("PractitionerRole/")
        role_resource = resources[role["reference"].removeprefix("PractitionerRole/")]
        (location,) = role_resource["location"]
        assert _zone(schedule) == locations[location["reference"].removeprefix("Location/")]
        assert schedule["active"] is True


def test_demo_clinic_every_date_time_carries_an_offset() -> None:
    found = 0
    for resource in CLINIC:
        for path, value in _walk(resource):
            if isinstance(value, str) and DATE_TIME.fullmatch(value):
                found += 1
                assert OFFSET.fullmatch(value), f"{resource['id']}{path}: {value} has no offset"
    assert found > 30  # slots, appointments, leave, planning horizons


def test_demo_clinic_demo_constants_name_linked_resources() -> None:
    resources = _by_id(CLINIC)
    assert resources[DEMO_PATIENT_ID]["resourceType"] == "Patient"
    assert resources[DEMO_PATIENT_ID]["name"][0] == {
        "use": "official",
        "family": "Muñoz",
        "given": ["José"],
    }
    assert resources[DEMO_PRACTITIONER_ROLE_ID]["resourceType"] == "PractitionerRole"
    schedule = resources[DEMO_SCHEDULE_ID]
    assert schedule["actor"][0]["reference"] == f"PractitionerRole/{DEMO_PRACTITIONER_ROLE_ID}"
    slots = [r for r in CLINIC if r["resourceType"] == "Slot"]
    assert {s["schedule"]["reference"] for s in slots} == {f"Schedule/{DEMO_SCHEDULE_ID}"}
    assert Counter(s["status"] for s in slots) == {"free": 6, "busy-unavailable": 1}


def test_demo_role_lunch_break_two_available_time_entries() -> None:
    role = _by_id(CLINIC)[DEMO_PRACTITIONER_ROLE_ID]
    weekdays = ["mon", "tue", "wed", "thu", "fri"]
    assert role["availableTime"] == [
        {"daysOfWeek": weekdays, "availableStartTime": "09:00:00", "availableEndTime": "12:00:00"},
        {"daysOfWeek": weekdays, "availableStartTime": "13:00:00", "availableEndTime": "17:00:00"},
    ]


@pytest.mark.parametrize(
    ("today", "role_id", "start", "end"),
    [
        # US daylight saving starts 2026-03-08: a Boston week off straddling it.
        (
            dt.date(2026, 2, 20),
            "demo-role-smith",
            "2026-03-06T00:00:00-05:00",
            "2026-03-13T00:00:00-04:00",
        ),
        # EU summer time starts 2026-03-29: Boston is already on EDT, Berlin changes mid-week.
        (
            dt.date(2026, 3, 13),
            "demo-role-smith",
            "2026-03-27T00:00:00-04:00",
            "2026-04-03T00:00:00-04:00",
        ),
        (
            dt.date(2026, 3, 13),
            "demo-role-schneider",
            "2026-03-27T00:00:00+01:00",
            "2026-04-03T00:00:00+02:00",
        ),
        # EU summer time ends 2026-10-25, US daylight saving ends 2026-11-01.
        (
            dt.date(2026, 10, 9),
            "demo-role-schneider",
            "2026-10-23T00:00:00+02:00",
            "2026-10-30T00:00:00+01:00",
        ),
        (
            dt.date(2026, 10, 16),
            "demo-role-schneider",
            "2026-10-30T00:00:00+01:00",
            "2026-11-06T00:00:00+01:00",
        ),
        (
            dt.date(2026, 10, 16),
            "demo-role-smith",
            "2026-10-30T00:00:00-04:00",
            "2026-11-06T00:00:00-05:00",
        ),
    ],
)
def test_demo_not_available_dst_boundary_local_midnight_offsets(
    today: dt.date, role_id: str, start: str, end: str
) -> None:
    (leave,) = _by_id(demo_clinic(today))[role_id]["notAvailable"]
    assert leave["during"] == {"start": start, "end": end}
    assert leave["description"]


@pytest.mark.parametrize(
    ("today", "resource_id", "start", "end"),
    [
        # Saturday 2026-03-07 is EST; Sunday 2026-03-08 (DST starts at 02:00) is EDT.
        (
            dt.date(2026, 3, 6),
            "demo-slot-smith-1-0900",
            "2026-03-07T09:00:00-05:00",
            "2026-03-07T09:30:00-05:00",
        ),
        (
            dt.date(2026, 3, 6),
            "demo-slot-smith-2-0900",
            "2026-03-08T09:00:00-04:00",
            "2026-03-08T09:30:00-04:00",
        ),
        (
            dt.date(2026, 3, 6),
            "demo-slot-smith-1-1400",
            "2026-03-07T14:00:00-05:00",
            "2026-03-07T15:00:00-05:00",
        ),
        # Saturday 2026-10-31 is EDT; Sunday 2026-11-01 (DST ends at 02:00) is EST.
        (
            dt.date(2026, 10, 30),
            "demo-slot-smith-1-0930",
            "2026-10-31T09:30:00-04:00",
            "2026-10-31T10:00:00-04:00",
        ),
        (
            dt.date(2026, 10, 30),
            "demo-slot-smith-2-1400",
            "2026-11-01T14:00:00-05:00",
            "2026-11-01T14:30:00-05:00",
        ),
        (
            dt.date(2026, 10, 29),
            "demo-appt-booked",
            "2026-11-01T10:00:00-05:00",
            "2026-11-01T10:30:00-05:00",
        ),
        (
            dt.date(2026, 10, 22),
            "demo-appt-booked",
            "2026-10-25T10:00:00-04:00",
            "2026-10-25T10:30:00-04:00",
        ),
    ],
)
def test_demo_slot_and_appointment_dst_boundary_local_offsets(
    today: dt.date, resource_id: str, start: str, end: str
) -> None:
    resource = _by_id(demo_clinic(today))[resource_id]
    assert (resource["start"], resource["end"]) == (start, end)


def test_demo_schedule_planning_horizon_today_to_90_days_local_midnight() -> None:
    schedules = _by_id(CLINIC)
    assert schedules[DEMO_SCHEDULE_ID]["planningHorizon"] == {
        "start": "2026-03-06T00:00:00-05:00",
        "end": "2026-06-04T00:00:00-04:00",
    }
    assert schedules["demo-schedule-schneider"]["planningHorizon"] == {
        "start": "2026-03-06T00:00:00+01:00",
        "end": "2026-06-04T00:00:00+02:00",
    }


@pytest.mark.parametrize("week", range(53))
def test_demo_clinic_any_week_of_2026_offsets_match_zoneinfo(week: int) -> None:
    clinic = demo_clinic(dt.date(2026, 1, 1) + dt.timedelta(weeks=week))
    zones = {
        f"{r['resourceType']}/{r['id']}": _zone(r)
        for r in clinic
        if r["resourceType"] == "Schedule"
    }
    for resource in clinic:
        if resource["resourceType"] == "Slot":
            zone = zones[resource["schedule"]["reference"]]
        elif resource["resourceType"] == "Appointment":
            zone = zones[f"Schedule/{DEMO_SCHEDULE_ID}"]
        else:
            continue
        for key in ("start", "end"):
            instant = dt.datetime.fromisoformat(resource[key])
            local = instant.replace(tzinfo=ZoneInfo(zone))
            assert instant.utcoffset() == local.utcoffset(), (resource["id"], key, zone)


def test_demo_appointments_booked_and_cancelled_shapes() -> None:
    resources = _by_id(CLINIC)
    booked = resources["demo-appt-booked"]
    assert booked["status"] == "booked"
    assert booked["start"] == "2026-03-09T10:00:00-04:00"
    assert booked["appointmentType"]["coding"] == [
        {
            "system": "http://terminology.hl7.org/CodeSystem/v2-0276",
            "code": "ROUTINE",
            "display": "Routine appointment",
        }
    ]
    assert [(p["actor"]["reference"], p["status"]) for p in booked["participant"]] == [
        (f"Patient/{DEMO_PATIENT_ID}", "accepted"),
        (f"PractitionerRole/{DEMO_PRACTITIONER_ROLE_ID}", "accepted"),
    ]
    assert booked["serviceType"] == resources[DEMO_SCHEDULE_ID]["serviceType"]
    cancelled = resources["demo-appt-cancelled"]
    assert cancelled["status"] == "cancelled"
    assert cancelled["cancelationReason"]["coding"][0]["code"] == "pat"
    (slot_ref,) = cancelled["slot"]
    slot = resources[slot_ref["reference"].removeprefix("Slot/")]
    assert slot["status"] == "free"
    assert (slot["start"], slot["end"]) == (cancelled["start"], cancelled["end"])


def test_demo_clinic_same_today_same_output() -> None:
    assert demo_clinic(TODAY) == demo_clinic(TODAY) == CLINIC
    assert [r["id"] for r in demo_clinic(TODAY + dt.timedelta(days=200))] == [
        r["id"] for r in CLINIC
    ]


def test_demo_clinic_caller_mutation_next_call_unaffected() -> None:
    first = demo_clinic(TODAY)
    for resource in first:
        for _, value in _walk(resource):
            if isinstance(value, dict):
                value["mutated"] = True
    assert demo_clinic(TODAY) == CLINIC
