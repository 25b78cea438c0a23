"""The clinic and helpers shared by the `$find-slots` suites (test_find_slots.py,
test_find_slots_time_zones.py, test_find_slots_parameters.py, test_operation_definitions.py):
Schedules in a time zone, hours, bookings, one-day windows in local time, and the Monday's
expected slot times.

The `clinic` fixture is imported by name where it is used
(`from tests.api.find_slots_helpers import clinic as clinic`), so that it never becomes the
default `clinic` of the other modules of tests/api, which have clinics of their own."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

FIND = "/Slot/$find-slots"
TZ_URL = "http://hl7.org/fhir/StructureDefinition/timezone"
WEEKDAYS = ["mon", "tue", "wed", "thu", "fri"]
MONDAY = "2026-12-07"  # EST (UTC-5): 09:00 local is 14:00Z
SERVICE = {"coding": [{"system": "http://example.org/service", "code": "checkup"}]}


def tz(zone: str) -> dict[str, Any]:
    return {"url": TZ_URL, "valueCode": zone}


def hours(*spans: tuple[str, str], days: list[str] | None = None) -> list[dict[str, Any]]:
    return [
        {"daysOfWeek": days or WEEKDAYS, "availableStartTime": a, "availableEndTime": b}
        for a, b in spans
    ]


def schedule(sid: str, actor: str, zone: str = "America/New_York", **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Schedule",
        "id": sid,
        "extension": [tz(zone)],
        "active": True,
        "serviceType": [SERVICE],
        "actor": [{"reference": actor}],
        **extra,
    }


def booking(
    start: str, end: str, actor: str = "PractitionerRole/dr", **extra: Any
) -> dict[str, Any]:
    return {
        "resourceType": "Appointment",
        "status": "booked",
        "start": start,
        "end": end,
        "participant": [
            {"actor": {"reference": "Patient/pat"}, "status": "accepted"},
            {"actor": {"reference": actor}, "status": "accepted"},
        ],
        **extra,
    }


async def put(client: httpx.AsyncClient, *resources: dict[str, Any]) -> None:
    for resource in resources:
        r = await client.put(f"/{resource['resourceType']}/{resource['id']}", json=resource)
        assert r.status_code in (200, 201), r.text


async def find(client: httpx.AsyncClient, path: str = FIND, **params: Any) -> dict[str, Any]:
    r = await client.get(path, params=params)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def day(date: str, zone: str = "America/New_York") -> dict[str, str]:
    """The $find-slots window of one local day."""
    first = dt.datetime.fromisoformat(date).replace(tzinfo=ZoneInfo(zone))
    after = (first + dt.timedelta(days=1)).replace(tzinfo=ZoneInfo(zone))
    return {"start": first.isoformat(), "end": after.isoformat()}


def slots(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]


def starts(bundle: dict[str, Any]) -> list[str]:
    return [slot["start"] for slot in slots(bundle)]


def utc_range(first: str, last: str, step: int = 30) -> list[str]:
    """`YYYY-MM-DDThh:mm` UTC times from first to last inclusive, every `step` minutes."""
    at, end = dt.datetime.fromisoformat(first), dt.datetime.fromisoformat(last)
    out = []
    while at <= end:
        out.append(at.strftime("%Y-%m-%dT%H:%M:00Z"))
        at += dt.timedelta(minutes=step)
    return out


@pytest.fixture
async def clinic(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """Dr. (a PractitionerRole, weekdays 09-12 and 13-17 New York time) with Schedule `s-dr`."""
    await put(
        client,
        {"resourceType": "Patient", "id": "pat"},
        {"resourceType": "Practitioner", "id": "doc"},
        {
            "resourceType": "PractitionerRole",
            "id": "dr",
            "practitioner": {"reference": "Practitioner/doc"},
            "availableTime": hours(("09:00:00", "12:00:00"), ("13:00:00", "17:00:00")),
        },
        schedule("s-dr", "PractitionerRole/dr"),
    )
    return client


MONDAY_SLOTS = utc_range(f"{MONDAY}T14:00", f"{MONDAY}T16:30") + utc_range(
    f"{MONDAY}T18:00", f"{MONDAY}T21:30"
)
