"""`Slot/$find-slots` and `Schedule/{id}/$find-slots` over HTTP on every engine: what rules and
stored Slots offer (SCHEDULING.md "Resources and where availability comes from"): hours with
a lunch break, bookings and holds taken out, busy Slots, capacity, the planning horizon,
inactive Schedules, bookings per day, the SMART Scheduling Links and demo data; and a rule
Slot read while free and after booking."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from fhir_server.demo import DEMO_SCHEDULE_ID, demo_clinic
from operations.scheduling.claims import HOLD_EXPIRES_URL
from operations.scheduling.extensions import SLOT_CAPACITY_URL, extension_url
from tests.api.find_slots_helpers import (
    MONDAY,
    MONDAY_SLOTS,
    SERVICE,
    booking,
    day,
    find,
    hours,
    put,
    schedule,
    slots,
    starts,
    tz,
    utc_range,
)
from tests.api.find_slots_helpers import clinic as clinic  # noqa: PLC0414 (the fixture)
from tests.conftest import shared_data


async def test_find_slots_practitioner_role_available_time_lunch_break_gap(
    clinic: httpx.AsyncClient,
) -> None:
    bundle = await find(clinic, **day(MONDAY))
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    assert starts(bundle) == MONDAY_SLOTS
    assert bundle["total"] == 14
    first = slots(bundle)[0]
    assert first == {
        "resourceType": "Slot",
        "id": first["id"],
        "meta": {"versionId": "1"},
        "serviceType": [SERVICE],
        "schedule": {"reference": "Schedule/s-dr"},
        "status": "free",
        "start": f"{MONDAY}T14:00:00Z",
        "end": f"{MONDAY}T14:30:00Z",
    }
    assert first["id"].startswith("rs-") and first["id"].endswith("-s-dr")
    entry = bundle["entry"][0]
    assert entry["fullUrl"] == f"http://test/fhir/Slot/{first['id']}"
    include = [e for e in bundle["entry"] if e["search"]["mode"] == "include"]
    assert [e["fullUrl"] for e in include] == ["http://test/fhir/Schedule/s-dr"]
    assert include[0]["resource"]["id"] == "s-dr"


async def test_find_slots_window_start_mid_day_same_slot_ids(clinic: httpx.AsyncClient) -> None:
    whole = slots(await find(clinic, **day(MONDAY)))
    later = await find(clinic, start=f"{MONDAY}T15:10:00Z", end=f"{MONDAY}T19:00:00Z")
    assert [s["id"] for s in slots(later)] == [
        s["id"] for s in whole if "15:30" <= s["start"][11:16] < "19:00"
    ]


async def test_find_slots_booked_appointment_removes_slot_cancel_gives_it_back(
    clinic: httpx.AsyncClient,
) -> None:
    r = await clinic.post(
        "/Appointment", json=booking(f"{MONDAY}T14:30:00Z", f"{MONDAY}T15:00:00Z")
    )
    assert r.status_code == 201, r.text
    booked = r.json()
    after = starts(await find(clinic, **day(MONDAY)))
    assert after == [s for s in MONDAY_SLOTS if s != f"{MONDAY}T14:30:00Z"]
    cancelled = {**booked, "status": "cancelled"}
    assert (await clinic.put(f"/Appointment/{booked['id']}", json=cancelled)).status_code == 200
    assert starts(await find(clinic, **day(MONDAY))) == MONDAY_SLOTS


async def test_find_slots_live_hold_not_offered(clinic: httpx.AsyncClient) -> None:
    expires = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    hold = booking(
        f"{MONDAY}T18:00:00Z",
        f"{MONDAY}T18:30:00Z",
        status="pending",
        extension=[{"url": HOLD_EXPIRES_URL, "valueInstant": expires}],
    )
    assert (await clinic.post("/Appointment", json=hold)).status_code == 201
    assert f"{MONDAY}T18:00:00Z" not in starts(await find(clinic, **day(MONDAY)))


async def test_find_slots_busy_unavailable_slot_blocks_rule_slots(
    clinic: httpx.AsyncClient,
) -> None:
    block = {
        "resourceType": "Slot",
        "id": "meeting",
        "schedule": {"reference": "Schedule/s-dr"},
        "status": "busy-unavailable",
        "start": f"{MONDAY}T15:00:00Z",
        "end": f"{MONDAY}T16:00:00Z",
    }
    await put(clinic, block)
    taken = {f"{MONDAY}T15:00:00Z", f"{MONDAY}T15:30:00Z"}
    assert starts(await find(clinic, **day(MONDAY))) == [s for s in MONDAY_SLOTS if s not in taken]


async def test_find_slots_stored_slot_capacity_two_seats_left_then_gone(
    clinic: httpx.AsyncClient,
) -> None:
    group = {
        "resourceType": "Slot",
        "id": "group",
        "schedule": {"reference": "Schedule/s-dr"},
        "status": "free",
        "start": f"{MONDAY}T18:00:00Z",
        "end": f"{MONDAY}T19:00:00Z",
        "extension": [{"url": SLOT_CAPACITY_URL, "valueInteger": 2}],
    }
    await put(clinic, group)

    async def offered() -> list[dict[str, Any]]:
        return [s for s in slots(await find(clinic, **day(MONDAY))) if s["id"] == "group"]

    (slot,) = await offered()
    assert slot["extension"] == [{"url": SLOT_CAPACITY_URL, "valueInteger": 2}]
    assert slot["meta"]["versionId"] == "1" and slot["status"] == "free"
    rule_starts = starts(await find(clinic, **day(MONDAY)))
    assert f"{MONDAY}T18:30:00Z" not in rule_starts  # the stored Slot owns its hour
    seat = booking(
        f"{MONDAY}T18:00:00Z",
        f"{MONDAY}T19:00:00Z",
        "Patient/pat",
        slot=[{"reference": "Slot/group"}],
    )
    assert (await clinic.post("/Appointment", json=seat)).status_code == 201
    (slot,) = await offered()
    assert "extension" not in slot  # one seat left: the default capacity
    pat2 = {"actor": {"reference": "Patient/pat2"}, "status": "accepted"}
    other = {**seat, "participant": [pat2]}
    assert (await clinic.post("/Appointment", json=other)).status_code == 201
    assert await offered() == []


async def test_find_slots_planning_horizon_clips_rule_slots(client: httpx.AsyncClient) -> None:
    role = {
        "resourceType": "PractitionerRole",
        "id": "h",
        "availableTime": hours(("09:00:00", "17:00:00")),
    }
    horizon = {"start": f"{MONDAY}T10:00:00-05:00", "end": f"{MONDAY}T12:00:00-05:00"}
    await put(client, role, schedule("s-h", "PractitionerRole/h", planningHorizon=horizon))
    bundle = await find(client, start=f"{MONDAY}T00:00:00Z", end="2026-12-10T00:00:00Z")
    assert starts(bundle) == utc_range(f"{MONDAY}T15:00", f"{MONDAY}T16:30")


async def test_find_slots_inactive_schedule_offers_nothing(clinic: httpx.AsyncClient) -> None:
    inactive = schedule("s-dr", "PractitionerRole/dr", active=False)
    await put(clinic, inactive)
    assert (await find(clinic, **day(MONDAY)))["total"] == 0
    bundle = await find(clinic, "/Schedule/s-dr/$find-slots", **day(MONDAY))
    assert bundle["total"] == 0 and "entry" not in bundle


async def test_read_rule_slot_while_free_200_after_booking_404(clinic: httpx.AsyncClient) -> None:
    slot = slots(await find(clinic, **day(MONDAY)))[3]
    r = await clinic.get(f"/Slot/{slot['id']}")
    assert r.status_code == 200
    assert r.json() == slot
    assert r.headers["etag"] == 'W/"1"'
    assert (
        await clinic.post("/Appointment", json=booking(slot["start"], slot["end"]))
    ).status_code == 201
    gone = await clinic.get(f"/Slot/{slot['id']}")
    assert gone.status_code == 404
    assert gone.json()["issue"][0]["code"] == "not-found"
    assert (await clinic.get("/Slot/rs-nonsense")).status_code == 404


async def test_find_slots_max_bookings_per_day_reached_day_offers_nothing(
    clinic: httpx.AsyncClient,
) -> None:
    limit = {"url": extension_url("max-bookings-per-day"), "valuePositiveInt": 1}
    await put(
        clinic, schedule("s-dr", "PractitionerRole/dr", extension=[tz("America/New_York"), limit])
    )
    assert len(starts(await find(clinic, **day(MONDAY)))) == 14
    assert (
        await clinic.post(
            "/Appointment", json=booking(f"{MONDAY}T14:00:00Z", f"{MONDAY}T14:30:00Z")
        )
    ).status_code == 201
    assert (await find(clinic, **day(MONDAY)))["total"] == 0
    assert (await find(clinic, **day("2026-12-08")))["total"] == 14


def ndjson(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def test_find_slots_smart_scheduling_links_schedule_10_week(
    client: httpx.AsyncClient,
) -> None:
    folder = shared_data("smart-scheduling-links")
    files = [
        folder / "locations.ndjson",
        folder / "schedules.ndjson",
        *sorted(folder.glob("slots-*.ndjson")),
    ]
    resources = [resource for path in files for resource in ndjson(path)]
    await put(client, *resources)
    low, high = dt.datetime(2021, 3, 1, tzinfo=dt.UTC), dt.datetime(2021, 3, 8, tzinfo=dt.UTC)

    def capacity(slot: dict[str, Any]) -> int:
        return int(
            next(e["valueInteger"] for e in slot["extension"] if e["url"] == SLOT_CAPACITY_URL)
        )

    expected = {
        r["id"]: capacity(r)
        for r in resources
        if r["resourceType"] == "Slot"
        and r["schedule"]["reference"] == "Schedule/10"
        and r["status"] == "free"
        and low
        <= dt.datetime.fromisoformat(r["start"])
        <= dt.datetime.fromisoformat(r["end"])
        <= high
    }
    assert len(expected) == 7  # one Slot a day that week
    bundle = await find(
        client, start="2021-03-01T00:00:00Z", end="2021-03-08T00:00:00Z", schedule="Schedule/10"
    )
    assert bundle["total"] == len(expected)
    assert {s["id"]: capacity(s) for s in slots(bundle)} == expected
    assert {s["schedule"]["reference"] for s in slots(bundle)} == {"Schedule/10"}


async def test_find_slots_demo_clinic_dr_smith_next_monday_boston_hours(
    client: httpx.AsyncClient,
) -> None:
    today = dt.date(2026, 11, 18)  # a Wednesday: next Monday is clear of demo bookings and leave
    await put(client, *demo_clinic(today))
    monday = today + dt.timedelta(days=(7 - today.weekday()) % 7)
    boston = ZoneInfo("America/New_York")

    def utc(clock: str) -> str:
        local = dt.datetime.combine(monday, dt.time.fromisoformat(clock), tzinfo=boston)
        return local.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    local = [f"{h:02d}:{m:02d}" for h in range(9, 17) for m in (0, 30) if not 12 <= h < 13]
    bundle = await find(
        client, f"/Schedule/{DEMO_SCHEDULE_ID}/$find-slots", **day(monday.isoformat())
    )
    assert starts(bundle) == [utc(clock) for clock in local]
    assert len(local) == 14
