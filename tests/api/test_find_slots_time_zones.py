"""`Slot/$find-slots` in each Schedule's time zone over HTTP on every engine: local hours in
Berlin, and the days the clocks change in New York and Berlin (the skipped hour not offered,
the repeated hour offered once)."""

from __future__ import annotations

import httpx

from tests.api.find_slots_helpers import day, find, hours, put, schedule, slots, starts, utc_range


async def test_find_slots_europe_berlin_schedule_local_hours(client: httpx.AsyncClient) -> None:
    role = {
        "resourceType": "PractitionerRole",
        "id": "b",
        "availableTime": hours(("08:00:00", "10:00:00")),
    }
    await put(client, role, schedule("s-b", "PractitionerRole/b", "Europe/Berlin"))
    bundle = await find(client, **day("2026-07-01", "Europe/Berlin"))  # CEST, UTC+2
    assert starts(bundle) == utc_range("2026-07-01T06:00", "2026-07-01T07:30")


async def test_find_slots_new_york_spring_forward_day_utc_shift(client: httpx.AsyncClient) -> None:
    role = {
        "resourceType": "PractitionerRole",
        "id": "ny",
        "availableTime": hours(("09:00:00", "12:00:00"), days=["sun"]),
    }
    await put(client, role, schedule("s-ny", "PractitionerRole/ny"))
    bundle = await find(client, **day("2026-03-08"))  # 23 hours long; EDT from 02:00 local
    assert starts(bundle) == utc_range("2026-03-08T13:00", "2026-03-08T15:30")
    assert slots(bundle)[-1]["end"] == "2026-03-08T16:00:00Z"


async def test_find_slots_berlin_fall_back_day_repeated_hour_not_doubled(
    client: httpx.AsyncClient,
) -> None:
    role = {
        "resourceType": "PractitionerRole",
        "id": "be",
        "availableTime": hours(("00:00:00", "04:00:00"), ("09:00:00", "10:00:00"), days=["sun"]),
    }
    await put(client, role, schedule("s-be", "PractitionerRole/be", "Europe/Berlin"))
    bundle = await find(client, **day("2026-10-25", "Europe/Berlin"))  # 25 hours long
    # 00:00 CEST = 22:00Z the day before; 04:00 CET = 03:00Z: five real hours, of which
    # 01:00Z-02:00Z repeats 02:00-03:00 (CET after CEST) and is not opened: four wall hours.
    expected = (
        utc_range("2026-10-24T22:00", "2026-10-25T00:30")
        + utc_range("2026-10-25T02:00", "2026-10-25T02:30")
        + utc_range("2026-10-25T08:00", "2026-10-25T08:30")
    )
    assert starts(bundle) == expected
    assert len({s["id"] for s in slots(bundle)}) == len(expected)


async def test_find_slots_new_york_fall_back_day_repeated_hour_offered_once(
    client: httpx.AsyncClient,
) -> None:
    every_day = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    role = {
        "resourceType": "PractitionerRole",
        "id": "ny24",
        "availableTime": [{"daysOfWeek": every_day, "allDay": True}],
    }
    await put(client, role, schedule("s-ny24", "PractitionerRole/ny24"))
    bundle = await find(client, **day("2026-11-01"), _count=100)  # 25 real hours
    # 01:00-02:00 EDT is 05:00Z-06:00Z; its repeat 01:00-02:00 EST (06:00Z-07:00Z) is not
    # opened: 24 wall-clock hours, 48 slots of 30 minutes.
    expected = utc_range("2026-11-01T04:00", "2026-11-01T05:30") + utc_range(
        "2026-11-01T07:00", "2026-11-02T04:30"
    )
    assert starts(bundle) == expected
    assert bundle["total"] == 48
    ends = [s["end"] for s in slots(bundle)]
    assert ends[3:5] == ["2026-11-01T06:00:00Z", "2026-11-01T07:30:00Z"]
