"""The booking rules on the paths next to the tested ones (SCHEDULING.md "Booking rules on every
path"): batch entries, conditional create and update, PUT moves, transactions with `urn:uuid`
patients, foreign and contained references, `$book` moves and reschedules outside availability,
the availability override and its AuditEvent, `$find` and a busy patient, concurrent bookings of
one patient, and a fall-back day's repeated hour.

The clinic of `test_booking_rules`: `dr`, `dr2` and `room` open Monday to Friday 09:00-12:00
UTC, the room blocked on Tuesday 10:00-11:00.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.api.booking_helpers import assert_outcome, parameters, requestor_of
from tests.api.test_booking_rules import BASE, MON, TUE, booked, details, visit
from tests.api.test_booking_rules import clinic as clinic  # noqa: PLC0414 (the fixture)
from tests.api.test_booking_rules import interleaved_clinic as interleaved_clinic  # noqa: PLC0414

BOOK = "/Appointment/$book"


def resource(item: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return ("appointment-resource", item)


async def book(client: httpx.AsyncClient, *items: tuple[str, Any]) -> httpx.Response:
    return await client.post(BOOK, json=parameters(*items))


def the_booking(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()["entry"][0]["resource"]
    return found


async def test_batch_entry_over_taken_time_absolute_reference_409_others_written(
    clinic: httpx.AsyncClient,
) -> None:
    first = await clinic.post("/Appointment", json=visit(MON, "09:00", "09:30"))
    assert first.status_code == 201, first.text
    clash = visit(MON, "09:00", "09:30", f"{BASE}/PractitionerRole/dr", patient="Patient/pat2")
    fine = visit(MON, "10:00", "10:30", patient="Patient/pat3")
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"resource": clash, "request": {"method": "POST", "url": "Appointment"}},
            {"resource": fine, "request": {"method": "POST", "url": "Appointment"}},
        ],
    }
    r = await clinic.post("", json=bundle)
    assert r.status_code == 200, r.text
    responses = [e["response"] for e in r.json()["entry"]]
    assert responses[0]["status"] == "409"
    codes = responses[0]["outcome"]["issue"][0]["details"]["coding"]
    assert [c["code"] for c in codes] == ["slot-unavailable"]
    assert responses[1]["status"].startswith("201")
    assert len(await booked(clinic)) == 2


async def test_conditional_create_and_update_over_taken_time_409(
    clinic: httpx.AsyncClient,
) -> None:
    assert (await clinic.post("/Appointment", json=visit(MON, "09:00", "09:30"))).status_code == 201
    clash = {
        **visit(MON, "09:00", "09:30", "PractitionerRole/dr/_history/1", patient="Patient/pat2"),
        "identifier": [{"system": "urn:ehr", "value": "x1"}],
    }
    r = await clinic.post(
        "/Appointment", json=clash, headers={"If-None-Exist": "identifier=urn:ehr|x1"}
    )
    assert_outcome(r, 409, "conflict", detail="slot-unavailable")
    r = await clinic.put("/Appointment?identifier=urn:ehr|x1", json=clash)
    assert_outcome(r, 409, "conflict", detail="slot-unavailable")
    assert len(await booked(clinic)) == 1


async def test_put_moving_booking_onto_taken_time_409_old_time_still_held(
    clinic: httpx.AsyncClient,
) -> None:
    assert (await clinic.post("/Appointment", json=visit(MON, "09:00", "09:30"))).status_code == 201
    mine = {**visit(MON, "10:00", "10:30", patient="Patient/pat2"), "id": "mine"}
    assert (await clinic.put("/Appointment/mine", json=mine)).status_code == 201
    moved = {**mine, "start": f"{MON}T09:15:00Z", "end": f"{MON}T09:45:00Z"}
    r = await clinic.put("/Appointment/mine", json=moved)
    assert_outcome(r, 409, "conflict", detail="slot-unavailable")
    again = visit(MON, "10:00", "10:30", patient="Patient/pat3")
    r = await clinic.post("/Appointment", json=again)  # 10:00 still belongs to `mine`
    assert_outcome(r, 409, "conflict", detail="slot-unavailable")


async def test_transaction_two_overlapping_bookings_of_new_patient_409_patient_conflict(
    clinic: httpx.AsyncClient,
) -> None:
    patient = "urn:uuid:0c6b1f4e-0000-4000-8000-0000000000aa"
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": patient,
                "resource": {"resourceType": "Patient", "name": [{"family": "New"}]},
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "resource": visit(MON, "09:00", "09:30", patient=patient),
                "request": {"method": "POST", "url": "Appointment"},
            },
            {
                "resource": visit(MON, "09:00", "09:30", "PractitionerRole/dr2", patient=patient),
                "request": {"method": "POST", "url": "Appointment"},
            },
        ],
    }
    r = await clinic.post("", json=bundle)
    assert r.status_code == 409, r.text
    assert details(r) == ["patient-conflict"]
    assert await booked(clinic) == []
    found = await clinic.get("/Patient", params={"family": "New"})
    assert found.json()["total"] == 0  # nothing of the transaction was written


async def test_foreign_and_contained_references_are_other_resources(
    clinic: httpx.AsyncClient,
) -> None:
    assert (await clinic.post("/Appointment", json=visit(MON, "09:00", "09:30"))).status_code == 201
    foreign = visit(
        MON,
        "09:00",
        "09:30",
        "https://other.example/fhir/PractitionerRole/dr",
        patient="Patient/pat2",
    )
    r = await clinic.post("/Appointment", json=foreign)
    assert r.status_code == 201, r.text  # another server's dr is not ours
    contained = {
        **visit(MON, "09:00", "09:30", "#dr", patient="Patient/pat3"),
        "contained": [{"resourceType": "PractitionerRole", "id": "dr"}],
    }
    r = await clinic.post("/Appointment", json=contained)
    assert r.status_code == 201, r.text
    r = await clinic.get("/Appointment", params={"actor": "PractitionerRole/dr"})
    assert r.json()["total"] == 1


async def test_book_move_and_reschedule_outside_availability_409_old_kept(
    clinic: httpx.AsyncClient,
) -> None:
    first = the_booking(
        await book(clinic, resource(visit(MON, "09:00", "09:30", status="proposed")))
    )
    late = {**first, "start": f"{MON}T18:00:00Z", "end": f"{MON}T18:30:00Z"}
    assert_outcome(
        await book(clinic, resource(late)), 409, "not-found", "fatal", "outside-availability"
    )
    sunday = visit("2026-12-13", "10:00", "10:30", status="proposed")
    r = await book(
        clinic, resource(sunday), ("cancelled-appt-id", {"reference": f"Appointment/{first['id']}"})
    )
    assert_outcome(r, 409, "not-found", "fatal", "outside-availability")
    current = (await clinic.get(f"/Appointment/{first['id']}")).json()
    assert (current["status"], current["start"]) == ("booked", f"{MON}T09:00:00Z")


async def test_book_override_availability_books_and_audits(clinic: httpx.AsyncClient) -> None:
    late = visit(TUE, "21:00", "21:30", status="proposed")
    r = await book(clinic, resource(late), ("override-availability", "true"))
    appointment = the_booking(r)
    events = await clinic.get("/AuditEvent", params={"entity": f"Appointment/{appointment['id']}"})
    subtypes = [
        [s["code"] for s in e["resource"]["subtype"]] for e in events.json().get("entry", [])
    ]
    assert ["create", "ITI-117", "availability-override"] in subtypes
    override = next(
        e["resource"]
        for e in events.json()["entry"]
        if "availability-override" in [s["code"] for s in e["resource"]["subtype"]]
    )
    assert override["agent"][0]["who"] == {"display": requestor_of(clinic)}
    assert "PractitionerRole/dr" in override["outcomeDesc"]
    r = await book(clinic, resource(late), ("override-availability", "maybe"))
    assert_outcome(r, 400, "invalid")


async def test_rest_write_outside_availability_by_ehr_is_written_and_audited(
    clinic: httpx.AsyncClient,
) -> None:
    r = await clinic.post("/Appointment", json=visit(TUE, "21:00", "21:30"))
    assert r.status_code == 201, r.text
    events = await clinic.get(
        "/AuditEvent", params={"entity": f"Appointment/{r.json()['id']}", "_count": "10"}
    )
    (event,) = [e["resource"] for e in events.json()["entry"]]
    assert [s["code"] for s in event["subtype"]][-1] == "availability-override"
    inside = await clinic.post("/Appointment", json=visit(MON, "09:00", "09:30"))
    events = await clinic.get(
        "/AuditEvent", params={"entity": f"Appointment/{inside.json()['id']}"}
    )
    assert events.json()["total"] == 0  # within availability: nothing to record


async def test_find_skips_times_the_patient_is_booked(clinic: httpx.AsyncClient) -> None:
    r = await clinic.post("/Appointment", json=visit(MON, "09:00", "09:30", "PractitionerRole/dr2"))
    assert r.status_code == 201, r.text
    window = {
        "start": f"{MON}T09:00:00Z",
        "end": f"{MON}T10:30:00Z",
        "actor": "PractitionerRole/dr",
    }
    busy = await clinic.get(
        "/Appointment/$find", params={**window, "patient-reference": "Patient/pat"}
    )
    free = await clinic.get(
        "/Appointment/$find", params={**window, "patient-reference": "Patient/pat2"}
    )
    assert [e["resource"]["start"] for e in busy.json()["entry"]] == [
        f"{MON}T09:30:00Z",
        f"{MON}T10:00:00Z",
    ]
    assert len(free.json()["entry"]) == 3


async def test_book_same_patient_two_doctors_concurrently_exactly_one_wins(
    interleaved_clinic: httpx.AsyncClient,
) -> None:
    async def one(n: int, role: str) -> httpx.Response:
        wanted = visit(MON, "09:00", "09:30", f"PractitionerRole/{role}", status="proposed")
        return await book(interleaved_clinic, resource(wanted), ("comment", f"try {n}"))

    tries = enumerate(("dr", "dr2", "dr", "dr2"))
    responses = await asyncio.gather(*(one(n, role) for n, role in tries))
    assert sorted(r.status_code for r in responses) == [200, 409, 409, 409]
    assert len(await booked(interleaved_clinic)) == 1


@pytest.mark.parametrize(
    ("start", "end", "status"), [("05:30", "06:00", 200), ("06:00", "06:30", 409)]
)
async def test_book_fall_back_day_repeated_hour_is_outside_availability(
    client: httpx.AsyncClient, start: str, end: str, status: int
) -> None:
    every_day = [
        {
            "daysOfWeek": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
            "allDay": True,
        }
    ]
    zone = {
        "url": "http://hl7.org/fhir/StructureDefinition/timezone",
        "valueCode": "America/New_York",
    }
    for item in (
        {"resourceType": "PractitionerRole", "id": "night", "availableTime": every_day},
        {
            "resourceType": "Schedule",
            "id": "s-night",
            "extension": [zone],
            "actor": [{"reference": "PractitionerRole/night"}],
        },
    ):
        put = await client.put(f"/{item['resourceType']}/{item['id']}", json=item)
        assert put.status_code == 201, put.text
    day = "2026-11-01"  # 01:00-02:00 New York time happens twice: 05:00Z-06:00Z, 06:00Z-07:00Z
    wanted = visit(day, start, end, "PractitionerRole/night", status="proposed")
    r = await book(client, resource(wanted))
    if status == 200:
        the_booking(r)
    else:
        assert_outcome(r, 409, "not-found", "fatal", "outside-availability")


@pytest.mark.parametrize("schedule_first", [True, False])
async def test_transaction_creating_schedule_and_booking_guards_the_booking(
    clinic: httpx.AsyncClient, schedule_first: bool
) -> None:
    hours = [
        {"daysOfWeek": ["mon"], "availableStartTime": "09:00:00", "availableEndTime": "12:00:00"}
    ]
    role = "urn:uuid:0c6b1f4e-0000-4000-8000-0000000000bb"
    entries = [
        {
            "fullUrl": role,
            "resource": {"resourceType": "PractitionerRole", "availableTime": hours},
            "request": {"method": "POST", "url": "PractitionerRole"},
        },
        {
            "resource": visit(MON, "09:00", "09:30", role),
            "request": {"method": "POST", "url": "Appointment"},
        },
        {
            "resource": {"resourceType": "Schedule", "actor": [{"reference": role}]},
            "request": {"method": "POST", "url": "Schedule"},
        },
    ]
    if schedule_first:
        entries[1], entries[2] = entries[2], entries[1]
    r = await clinic.post(
        "", json={"resourceType": "Bundle", "type": "transaction", "entry": entries}
    )
    assert r.status_code == 200, r.text
    role_ref = next(
        e["response"]["location"].split("/_history")[0].split("/fhir/")[1]
        for e in r.json()["entry"]
        if "/PractitionerRole/" in e["response"]["location"]
    )
    again = visit(MON, "09:00", "09:30", role_ref, patient="Patient/pat2", status="proposed")
    assert_outcome(
        await book(clinic, resource(again)), 409, "not-found", "fatal", "slot-unavailable"
    )
