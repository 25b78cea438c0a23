"""Provider and patient workflows on the demo clinic over HTTP, on both engines (SCHEDULING.md
"Resources and where availability comes from", "Operations", "Never double-book"): a provider
changes weekly hours or takes time off and `$find`/`$find-slots` follow at once; staff book a
day in one transaction; a patient finds a family physician by specialty, holds and books; a
patient reschedules and the old time is offered again.

Dates move with today (the demo's Schedules plan `today .. today + 90 days`): every test works
on the first Monday at least four days ahead (clear of the demo's stored Slots and bookings on
`today + 1 .. today + 3`) and the Tuesday after it (before Dr. Smith's leave at `today + 14`).
Dr. Smith (PractitionerRole `demo-role-smith`, Boston) works weekdays 09:00-12:00 and
13:00-17:00 America/New_York.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from fhir_server.demo import (
    DEMO_PATIENT_ID,
    DEMO_PRACTITIONER_ROLE_ID,
    DEMO_SCHEDULE_ID,
    LEAVE_STARTS_AFTER,
    demo_clinic,
)
from operations.scheduling.extensions import AVAILABILITY, extension_url
from tests.api.booking_helpers import assert_taken, book, count, hold, ref, the_appointment

BOSTON = ZoneInfo("America/New_York")
SMITH = f"PractitionerRole/{DEMO_PRACTITIONER_ROLE_ID}"
SMITH_DOCTOR = "Practitioner/demo-pract-smith"
MUNOZ = f"Patient/{DEMO_PATIENT_ID}"
BOSTON_SITE = "Location/demo-loc-boston"
FAMILY_MEDICINE = "http://nucc.org/provider-taxonomy|207Q00000X"
GENERAL_PRACTICE = "http://snomed.info/sct|394814009"
FIND_SLOTS = f"/Schedule/{DEMO_SCHEDULE_ID}/$find-slots"
SMITH_HOURS = [f"{h:02d}:{m:02d}" for h in (9, 10, 11, 13, 14, 15, 16) for m in (0, 30)]
"""Dr. Smith's 14 half-hour visits of a weekday, Boston wall-clock time."""


def clocks(first: str, last: str) -> list[str]:
    """Every half hour `HH:MM` from `first` to `last` inclusive."""
    every = [f"{h:02d}:{m:02d}" for h in range(24) for m in (0, 30)]
    return [c for c in every if first <= c <= last]


def utc(day: dt.date, *wall: str) -> list[str]:
    """Boston wall-clock times on `day` as the UTC instants the server writes."""
    out = []
    for clock in wall:
        local = dt.datetime.combine(day, dt.time.fromisoformat(clock), tzinfo=BOSTON)
        out.append(local.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    return out


def local(day: dt.date, clock: str = "00:00") -> str:
    """A Boston wall-clock time as a dateTime with its offset."""
    return dt.datetime.combine(day, dt.time.fromisoformat(clock), tzinfo=BOSTON).isoformat()


def whole_day(day: dt.date, days: int = 1) -> dict[str, str]:
    """The window from local midnight of `day` to local midnight `days` later."""
    return {"start": local(day), "end": local(day + dt.timedelta(days=days))}


@dataclass
class Clinic:
    client: httpx.AsyncClient
    today: dt.date
    monday: dt.date

    @property
    def tuesday(self) -> dt.date:
        return self.monday + dt.timedelta(days=1)


@pytest.fixture
async def clinic(client: httpx.AsyncClient) -> Clinic:
    """The demo clinic built around today, loaded resource by resource with PUT."""
    today = dt.date.today()
    for resource in demo_clinic(today):
        r = await client.put(f"/{resource['resourceType']}/{resource['id']}", json=resource)
        assert r.status_code == 201, r.text
    first = today + dt.timedelta(days=4)
    monday = first + dt.timedelta(days=(7 - first.weekday()) % 7)
    return Clinic(client, today, monday)


async def put(client: httpx.AsyncClient, resource: dict[str, Any]) -> None:
    r = await client.put(f"/{resource['resourceType']}/{resource['id']}", json=resource)
    assert r.status_code in (200, 201), r.text


async def get(client: httpx.AsyncClient, path: str) -> dict[str, Any]:
    r = await client.get(path)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def free_slots(
    client: httpx.AsyncClient, day: dt.date, days: int = 1
) -> list[dict[str, Any]]:
    """Dr. Smith's free Slots from `Schedule/{id}/$find-slots` over local days."""
    r = await client.get(FIND_SLOTS, params={**whole_day(day, days), "_count": "100"})
    assert r.status_code == 200, r.text
    return [e["resource"] for e in r.json().get("entry", []) if e["search"]["mode"] == "match"]


async def offered(client: httpx.AsyncClient, day: dt.date) -> list[str]:
    return [slot["start"] for slot in await free_slots(client, day)]


async def proposals(
    client: httpx.AsyncClient, day: dt.date, **params: str | None
) -> list[dict[str, Any]]:
    """`Appointment/$find` over a local day (by default: Dr. Smith, for Mr. Muñoz; a None
    parameter is left out)."""
    query = {"practitioner": SMITH_DOCTOR, "patient-reference": MUNOZ, **params}
    sent = {k: v for k, v in query.items() if v is not None}
    r = await client.get("/Appointment/$find", params={**whole_day(day), "_count": "100", **sent})
    assert r.status_code == 200, r.text
    return [e["resource"] for e in r.json().get("entry", [])]


async def proposed(client: httpx.AsyncClient, day: dt.date, **params: str | None) -> list[str]:
    return [p["start"] for p in await proposals(client, day, **params)]


def booked_visit(day: dt.date, clock: str, patient: str, minutes: int = 30) -> dict[str, Any]:
    start = dt.datetime.combine(day, dt.time.fromisoformat(clock), tzinfo=BOSTON)
    return {
        "resourceType": "Appointment",
        "status": "booked",
        "start": start.isoformat(),
        "end": (start + dt.timedelta(minutes=minutes)).isoformat(),
        "participant": [
            {"actor": {"reference": SMITH}, "status": "accepted"},
            {"actor": {"reference": patient}, "status": "accepted"},
        ],
    }


def transaction(*appointments: dict[str, Any]) -> dict[str, Any]:
    entries = [
        {"resource": a, "request": {"method": "POST", "url": "Appointment"}} for a in appointments
    ]
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def slot_booking(slot_id: str, patient: str = MUNOZ) -> dict[str, Any]:
    """A new Appointment for a Slot of `$find-slots` (its time and actors come from the Slot)."""
    return {
        "resourceType": "Appointment",
        "status": "proposed",
        "slot": [{"reference": f"Slot/{slot_id}"}],
        "participant": [{"actor": {"reference": patient}, "status": "accepted"}],
    }


# -- a provider changes weekly availability ---------------------------------------------------


async def test_weekly_availability_role_hours_changed_find_slots_and_find_reflect_at_once(
    clinic: Clinic,
) -> None:
    client, monday = clinic.client, clinic.monday
    assert await offered(client, monday) == utc(monday, *SMITH_HOURS)
    assert await proposed(client, monday) == utc(monday, *SMITH_HOURS)
    role = await get(client, f"/{SMITH}")
    weekdays = ["tue", "wed", "thu", "fri"]
    role["availableTime"] = [
        {"daysOfWeek": ["mon"], "availableStartTime": "07:00:00", "availableEndTime": "10:00:00"},
        {"daysOfWeek": weekdays, "availableStartTime": "09:00:00", "availableEndTime": "12:00:00"},
        {"daysOfWeek": weekdays, "availableStartTime": "13:00:00", "availableEndTime": "17:00:00"},
    ]
    await put(client, role)
    early = utc(monday, *clocks("07:00", "09:30"))
    assert await offered(client, monday) == early
    assert await proposed(client, monday) == early
    assert await offered(client, clinic.tuesday) == utc(clinic.tuesday, *SMITH_HOURS)


async def test_weekly_availability_schedule_extension_overrides_role_hours_at_once(
    clinic: Clinic,
) -> None:
    client, monday, tuesday = clinic.client, clinic.monday, clinic.tuesday
    schedule = await get(client, f"/Schedule/{DEMO_SCHEDULE_ID}")
    before = dict(schedule)
    rule = {
        "url": extension_url(AVAILABILITY),
        "extension": [
            {"url": "daysOfWeek", "valueCode": "mon"},
            {"url": "availableStartTime", "valueTime": "14:00:00"},
            {"url": "availableEndTime", "valueTime": "16:00:00"},
        ],
    }
    await put(client, {**schedule, "extension": [*schedule["extension"], rule]})
    afternoon = utc(monday, *clocks("14:00", "15:30"))
    assert await offered(client, monday) == afternoon
    assert await proposed(client, monday) == afternoon
    assert await offered(client, tuesday) == []  # the extension is the first source of hours
    assert await proposed(client, tuesday) == []
    await put(client, before)  # back to PractitionerRole.availableTime
    assert await offered(client, monday) == utc(monday, *SMITH_HOURS)
    assert await proposed(client, tuesday) == utc(tuesday, *SMITH_HOURS)


# -- time off -----------------------------------------------------------------------------------


async def time_off(
    client: httpx.AsyncClient, day: dt.date, kind: str, start: str, end: str
) -> None:
    """Block Dr. Smith's time on `day` from `start` to `end` (Boston): a `notAvailable` period
    on the PractitionerRole, or a `busy-unavailable` Slot on the Schedule."""
    during = {"start": local(day, start), "end": local(day, end)}
    if kind == "notAvailable":
        role = await get(client, f"/{SMITH}")
        off = {"description": "CME course", "during": during}
        await put(client, {**role, "notAvailable": [*role["notAvailable"], off]})
    else:
        schedule = {"reference": f"Schedule/{DEMO_SCHEDULE_ID}"}
        blocked = {"resourceType": "Slot", "id": f"smith-off-{day}", "schedule": schedule}
        await put(client, {**blocked, "status": "busy-unavailable", **during})


TIME_OFF = ["notAvailable", "busy-unavailable"]


@pytest.mark.parametrize("kind", TIME_OFF)
async def test_time_off_afternoon_no_slots_offered(clinic: Clinic, kind: str) -> None:
    client, monday = clinic.client, clinic.monday
    await time_off(client, monday, kind, "13:00", "17:00")
    morning = utc(monday, *clocks("09:00", "11:30"))
    assert await offered(client, monday) == morning
    assert await proposed(client, monday) == morning
    by_specialty = {"specialty": FAMILY_MEDICINE, "location-reference": BOSTON_SITE}
    assert await proposed(client, monday, practitioner=None, **by_specialty) == morning
    assert await offered(client, clinic.tuesday) == utc(clinic.tuesday, *SMITH_HOURS)
    # SCHEDULING.md does not say that a REST booking into blocked time is refused: not asserted.


@pytest.mark.parametrize("kind", TIME_OFF)
async def test_time_off_one_hour_only_its_slots_removed(clinic: Clinic, kind: str) -> None:
    client, monday = clinic.client, clinic.monday
    await time_off(client, monday, kind, "10:00", "11:00")
    blocked = set(utc(monday, "10:00", "10:30"))
    expected = [t for t in utc(monday, *SMITH_HOURS) if t not in blocked]
    assert await offered(client, monday) == expected
    assert await proposed(client, monday) == expected


async def test_time_off_demo_leave_week_nothing_offered(clinic: Clinic) -> None:
    client = clinic.client
    leave = clinic.today + LEAVE_STARTS_AFTER
    assert await free_slots(client, leave, days=7) == []
    r = await client.get(
        "/Appointment/$find", params={**whole_day(leave, 7), "practitioner": SMITH_DOCTOR}
    )
    assert r.status_code == 200, r.text
    assert r.json()["total"] == 0
    after = leave + dt.timedelta(days=7)
    monday = after + dt.timedelta(days=(7 - after.weekday()) % 7)
    assert await offered(client, monday) == utc(monday, *SMITH_HOURS)  # back from leave


@pytest.mark.parametrize("kind", TIME_OFF)
async def test_time_off_book_stale_rule_slot_inside_it_409_slot_unavailable(
    clinic: Clinic, kind: str
) -> None:
    client, monday = clinic.client, clinic.monday
    (slot,) = [s for s in await free_slots(client, monday) if s["start"] == utc(monday, "14:00")[0]]
    await time_off(client, monday, kind, "13:00", "17:00")
    assert (await client.get(f"/Slot/{slot['id']}")).status_code == 404  # no longer free
    before = await count(client, "Appointment", status="booked")
    assert_taken(await book(client, ("appointment-resource", slot_booking(slot["id"]))))
    assert await count(client, "Appointment", status="booked") == before


# -- staff book a day in one transaction ------------------------------------------------------


async def test_staff_transaction_several_bookings_one_day_all_succeed(clinic: Clinic) -> None:
    client, monday = clinic.client, clinic.monday
    patients = [
        "Patient/demo-patient-munoz",
        "Patient/demo-patient-nguyen",
        "Patient/demo-patient-oconnor",
    ]
    day = ["09:00", "09:30", "10:00", "11:00", "13:00"]
    visits = [booked_visit(monday, c, patients[n % 3]) for n, c in enumerate(day)]
    assert await count(client, "Appointment", status="booked") == 1  # the demo's own booking
    r = await client.post("", json=transaction(*visits))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["type"] == "transaction-response"
    assert [e["response"]["status"] for e in body["entry"]] == ["201 Created"] * len(day)
    assert await count(client, "Appointment", status="booked", actor=SMITH) == 1 + len(day)
    taken = set(utc(monday, *day))
    assert await offered(client, monday) == [t for t in utc(monday, *SMITH_HOURS) if t not in taken]


async def test_staff_transaction_one_entry_overlaps_booking_409_writes_nothing(
    clinic: Clinic,
) -> None:
    client, monday = clinic.client, clinic.monday
    first = await client.post("", json=transaction(booked_visit(monday, "09:00", MUNOZ)))
    assert first.status_code == 200, first.text
    before = (await count(client, "Appointment"), await count(client, "AuditEvent"))
    free_one = booked_visit(monday, "14:00", "Patient/demo-patient-nguyen")
    overlapping = booked_visit(monday, "09:15", "Patient/demo-patient-oconnor")
    r = await client.post("", json=transaction(free_one, overlapping))
    assert r.status_code == 409, r.text
    issue = r.json()["issue"][0]
    assert [c["code"] for c in issue["details"]["coding"]] == ["slot-unavailable"]
    assert (await count(client, "Appointment"), await count(client, "AuditEvent")) == before
    still = await offered(client, monday)
    assert utc(monday, "14:00")[0] in still and utc(monday, "09:00")[0] not in still
    assert len(still) == len(SMITH_HOURS) - 1


# -- patients ------------------------------------------------------------------------------------


async def test_patient_checkup_find_by_specialty_hold_book_booked(clinic: Clinic) -> None:
    client, monday = clinic.client, clinic.monday
    search = {"practitioner": None, "location-reference": BOSTON_SITE}
    found = await proposals(client, monday, specialty=FAMILY_MEDICINE, **search)
    assert [p["start"] for p in found] == utc(monday, *SMITH_HOURS)
    assert {a["actor"]["reference"] for p in found for a in p["participant"]} == {SMITH, MUNOZ}
    assert {p["status"] for p in found} == {"proposed"}
    by_type = await proposed(client, monday, **{"service-type": GENERAL_PRACTICE}, **search)
    assert by_type == utc(monday, *SMITH_HOURS)

    checkup = found[0]
    held_response = await hold(client, ref(checkup["id"]))
    held = the_appointment(held_response)
    assert (held["id"], held["status"]) == (checkup["id"], "pending")
    assert "Expires" in held_response.headers
    assert checkup["start"] not in await offered(client, monday)  # held: never offered

    booked = the_appointment(await book(client, ref(held["id"]), ("comment", "Annual check-up")))
    assert (booked["id"], booked["status"]) == (checkup["id"], "booked")
    assert (booked["start"], booked["end"]) == (checkup["start"], checkup["end"])
    assert booked["comment"] == "Annual check-up"
    assert await offered(client, monday) == utc(monday, *SMITH_HOURS)[1:]
    assert (
        await proposed(client, monday, specialty=FAMILY_MEDICINE, **search)
        == utc(monday, *SMITH_HOURS)[1:]
    )
    r = await client.get("/Appointment", params={"patient": MUNOZ, "date": monday.isoformat()})
    assert r.status_code == 200, r.text
    assert [e["resource"]["id"] for e in r.json().get("entry", [])] == [booked["id"]]


async def test_patient_reschedule_cancelled_appt_id_old_time_free_again(clinic: Clinic) -> None:
    client, monday, tuesday = clinic.client, clinic.monday, clinic.tuesday
    nine = (await free_slots(client, monday))[0]
    assert nine["start"] == utc(monday, "09:00")[0]
    old = the_appointment(await book(client, ("appointment-resource", slot_booking(nine["id"]))))
    assert (old["status"], old["start"]) == ("booked", nine["start"])
    assert nine["start"] not in await offered(client, monday)

    (ten,) = [
        s for s in await free_slots(client, tuesday) if s["start"] == utc(tuesday, "10:00")[0]
    ]
    cancel_old = ("cancelled-appt-id", {"reference": f"Appointment/{old['id']}"})
    new = the_appointment(
        await book(client, ("appointment-resource", slot_booking(ten["id"])), cancel_old)
    )
    assert (new["status"], new["start"]) == ("booked", ten["start"]) and new["id"] != old["id"]
    assert (await get(client, f"/Appointment/{old['id']}"))["status"] == "cancelled"
    assert await offered(client, monday) == utc(monday, *SMITH_HOURS)  # the old time is free
    assert ten["start"] not in await offered(client, tuesday)
    assert await count(client, "Appointment", patient=MUNOZ, status="booked") == 2  # + the demo's
    assert_taken(
        await book(
            client, ("appointment-resource", slot_booking(ten["id"], "Patient/demo-patient-nguyen"))
        )
    )
