"""The three booking rules on every write path (SCHEDULING.md "Booking rules on every path"):
taken time, availability and patient overlap, however an actor is referenced, through REST
POST/PUT/PATCH, transaction and batch entries, `$hold` and `$book`; and reads that never write.

Dr. `dr` and room `room` are open Monday to Friday 09:00-12:00 UTC; the room is blocked by a
`busy-unavailable` Slot on Tuesday 10:00-11:00.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from fhir_server.app import create_app
from fhir_server.storage.mongo import MongoStore
from tests.api.booking_helpers import assert_outcome, parameters
from tests.conftest import make_settings
from tests.storage.interleaving import YieldingDatabase

MON, TUE, SUN = "2026-12-07", "2026-12-08", "2026-12-13"
WEEKDAYS = ["mon", "tue", "wed", "thu", "fri"]
HOURS = [{"daysOfWeek": WEEKDAYS, "availableStartTime": "09:00:00", "availableEndTime": "12:00:00"}]
CAPACITY_URL = "http://fhir-registry.smarthealthit.org/StructureDefinition/slot-capacity"
BASE = "http://test/fhir"


def at(day: str, hhmm: str) -> str:
    return f"{day}T{hhmm}:00Z"


def visit(
    day: str,
    start: str,
    end: str,
    *actors: str,
    patient: str = "Patient/pat",
    status: str = "booked",
) -> dict[str, Any]:
    refs = (*(actors or ("PractitionerRole/dr",)), patient)
    return {
        "resourceType": "Appointment",
        "status": status,
        "start": at(day, start),
        "end": at(day, end),
        "participant": [{"actor": {"reference": r}, "status": "accepted"} for r in refs],
    }


CLINIC: list[dict[str, Any]] = [
    *({"resourceType": "Patient", "id": pid} for pid in ("pat", "pat2", "pat3", "pat4", "pat5")),
    {"resourceType": "PractitionerRole", "id": "dr", "availableTime": HOURS},
    {"resourceType": "PractitionerRole", "id": "dr2", "availableTime": HOURS},
    {
        "resourceType": "Location",
        "id": "room",
        "hoursOfOperation": [
            {"daysOfWeek": WEEKDAYS, "openingTime": "09:00:00", "closingTime": "12:00:00"}
        ],
    },
    {"resourceType": "Schedule", "id": "s-dr", "actor": [{"reference": "PractitionerRole/dr"}]},
    {"resourceType": "Schedule", "id": "s-dr2", "actor": [{"reference": "PractitionerRole/dr2"}]},
    {"resourceType": "Schedule", "id": "s-room", "actor": [{"reference": "Location/room"}]},
    {
        "resourceType": "Slot",
        "id": "room-blocked",
        "schedule": {"reference": "Schedule/s-room"},
        "status": "busy-unavailable",
        "start": at(TUE, "10:00"),
        "end": at(TUE, "11:00"),
    },
    {
        "resourceType": "Slot",
        "id": "group",
        "schedule": {"reference": "Schedule/s-room"},
        "status": "free",
        "start": at(MON, "11:00"),
        "end": at(MON, "12:00"),
        "extension": [{"url": CAPACITY_URL, "valueInteger": 5}],
    },
]


async def seed(client: httpx.AsyncClient) -> httpx.AsyncClient:
    for resource in CLINIC:
        r = await client.put(f"/{resource['resourceType']}/{resource['id']}", json=resource)
        assert r.status_code == 201, r.text
    return client


@pytest.fixture
async def clinic(client: httpx.AsyncClient) -> httpx.AsyncClient:
    return await seed(client)


@pytest.fixture(params=[1, 2, 3])
async def interleaved_clinic(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    """The clinic on mongomock whose every call yields to the event loop (seeded), so
    concurrent requests interleave between any two database calls as on a real server."""
    from mongomock_motor import AsyncMongoMockClient

    database: Any = AsyncMongoMockClient()[f"fhir_test_{uuid.uuid4().hex}"]
    store = MongoStore(cast(Any, YieldingDatabase(database, request.param)))
    app = create_app(make_settings(tmp_path), store=store)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
            yield await seed(client)


async def booked(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    r = await client.get("/Appointment", params={"status": "booked,pending", "_count": "100"})
    assert r.status_code == 200, r.text
    return [e["resource"] for e in r.json().get("entry", [])]


def details(response: httpx.Response) -> list[str]:
    issue = response.json()["issue"][0]
    return [c["code"] for c in (issue.get("details") or {}).get("coding", [])]


# -- 1. taken time, whatever the spelling of the actor's reference ------------------------

SPELLINGS = [
    f"{BASE}/PractitionerRole/dr",
    "PractitionerRole/dr/_history/1",
    f"{BASE}/PractitionerRole/dr/_history/1",
]


@pytest.mark.parametrize("spelling", SPELLINGS)
async def test_create_booked_over_taken_time_any_reference_spelling_409(
    clinic: httpx.AsyncClient, spelling: str
) -> None:
    first = await clinic.post("/Appointment", json=visit(MON, "09:00", "09:30"))
    assert first.status_code == 201, first.text
    again = visit(MON, "09:00", "09:30", spelling, patient="Patient/pat2")
    r = await clinic.post("/Appointment", json=again)
    assert_outcome(r, 409, "conflict", detail="slot-unavailable")
    r = await clinic.put("/Appointment/a2", json={**again, "id": "a2"})
    assert_outcome(r, 409, "conflict", detail="slot-unavailable")
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": again, "request": {"method": "POST", "url": "Appointment"}}],
    }
    r = await clinic.post("", json=bundle)
    assert r.status_code == 409, r.text
    assert details(r) == ["slot-unavailable"]
    assert [a["id"] for a in await booked(clinic)] == [first.json()["id"]]


async def test_patch_to_booked_over_taken_time_absolute_reference_409(
    clinic: httpx.AsyncClient,
) -> None:
    first = await clinic.post("/Appointment", json=visit(MON, "09:00", "09:30"))
    assert first.status_code == 201, first.text
    draft = visit(MON, "09:00", "09:30", SPELLINGS[0], patient="Patient/pat2", status="proposed")
    created = await clinic.post("/Appointment", json=draft)
    assert created.status_code == 201, created.text
    patch = [{"op": "replace", "path": "/status", "value": "booked"}]
    r = await clinic.patch(
        f"/Appointment/{created.json()['id']}",
        json=patch,
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert_outcome(r, 409, "conflict", detail="slot-unavailable")


# -- 2. availability on $hold and $book --------------------------------------------------


@pytest.mark.parametrize(
    ("day", "start", "end", "actors"),
    [
        (TUE, "21:00", "21:30", ("PractitionerRole/dr",)),  # after hours
        (SUN, "10:00", "10:30", ("PractitionerRole/dr",)),  # a closed day
        (TUE, "10:00", "10:30", ("PractitionerRole/dr", "Location/room")),  # room blocked
        (MON, "11:45", "12:15", ("PractitionerRole/dr",)),  # runs past closing
    ],
)
async def test_book_outside_availability_409_and_nothing_written(
    clinic: httpx.AsyncClient, day: str, start: str, end: str, actors: tuple[str, ...]
) -> None:
    wanted = visit(day, start, end, *actors, status="proposed")
    r = await clinic.post("/Appointment/$book", json=parameters(("appointment-resource", wanted)))
    assert_outcome(r, 409, "not-found", "fatal", "outside-availability")
    r = await clinic.post("/Appointment/$hold", json=parameters(("appointment-resource", wanted)))
    assert_outcome(r, 409, "not-found", "fatal", "outside-availability")
    assert await booked(clinic) == []


async def test_book_inside_availability_200(clinic: httpx.AsyncClient) -> None:
    wanted = visit(TUE, "11:00", "11:30", "PractitionerRole/dr", "Location/room")
    r = await clinic.post("/Appointment/$book", json=parameters(("appointment-resource", wanted)))
    assert r.status_code == 200, r.text


# -- 3. one patient never in two overlapping bookings -------------------------------------


async def test_book_same_patient_two_practitioners_same_time_409_patient_conflict(
    clinic: httpx.AsyncClient,
) -> None:
    with_dr = visit(MON, "09:00", "09:30", "PractitionerRole/dr")
    with_dr2 = visit(MON, "09:15", "09:45", "PractitionerRole/dr2")
    r = await clinic.post("/Appointment/$book", json=parameters(("appointment-resource", with_dr)))
    assert r.status_code == 200, r.text
    r = await clinic.post("/Appointment/$book", json=parameters(("appointment-resource", with_dr2)))
    assert_outcome(r, 409, "conflict", detail="patient-conflict")
    r = await clinic.post("/Appointment", json=with_dr2)
    assert_outcome(r, 409, "conflict", detail="patient-conflict")
    absolute = visit(MON, "09:15", "09:45", "PractitionerRole/dr2", patient=f"{BASE}/Patient/pat")
    r = await clinic.post("/Appointment", json=absolute)
    assert_outcome(r, 409, "conflict", detail="patient-conflict")
    assert len(await booked(clinic)) == 1


# -- 4. reads never write -----------------------------------------------------------------


async def test_find_writes_nothing(clinic: httpx.AsyncClient) -> None:
    async def history_total() -> int:
        r = await clinic.get("/_history", params={"_count": "0"})
        assert r.status_code == 200, r.text
        return int(r.json()["total"])

    before = await history_total()
    r = await clinic.get(
        "/Appointment/$find",
        params={"start": at(MON, "09:00"), "end": at(MON, "12:00"), "actor": "PractitionerRole/dr"},
    )
    assert r.status_code == 200, r.text
    proposals = [e["resource"] for e in r.json()["entry"]]
    assert proposals and all(p["status"] == "proposed" for p in proposals)
    assert await history_total() == before
    held = await clinic.post(
        "/Appointment/$hold",
        json=parameters(
            ("appointment-reference", {"reference": f"Appointment/{proposals[0]['id']}"})
        ),
    )
    assert held.status_code == 200, held.text


# -- 5. seats of a shared Slot are chosen without a race ----------------------------------


async def test_book_shared_slot_five_concurrent_bookers_all_seated(
    interleaved_clinic: httpx.AsyncClient,
) -> None:
    clinic = interleaved_clinic

    async def one(n: int) -> httpx.Response:
        wanted = {
            **visit(MON, "11:00", "12:00", "Location/room", patient=f"Patient/pat{n or ''}"),
            "status": "proposed",
            "slot": [{"reference": "Slot/group"}],
        }
        return await clinic.post(
            "/Appointment/$book", json=parameters(("appointment-resource", wanted))
        )

    responses = await asyncio.gather(*(one(n) for n in (0, 2, 3, 4, 5)))
    assert [r.status_code for r in responses] == [200] * 5, [r.text for r in responses]


# -- 7. served conformance resources are searchable by canonical URL ----------------------


async def test_search_operation_definition_by_url_finds_it(client: httpx.AsyncClient) -> None:
    metadata = (await client.get("/metadata")).json()
    operations = metadata["rest"][0]["resource"]
    canonical = next(
        op["definition"]
        for resource in operations
        for op in resource.get("operation", [])
        if op["name"] == "book"
    )
    r = await client.get("/OperationDefinition", params={"url": canonical})
    assert r.status_code == 200, r.text
    found = [e["resource"]["url"] for e in r.json().get("entry", [])]
    assert found == [canonical]
