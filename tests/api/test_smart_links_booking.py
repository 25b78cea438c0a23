"""Booking the seats of real SMART Scheduling Links Slots through `Appointment/$book`, and loading
the IHE ITI Scheduling examples, over HTTP on both engines (SCHEDULING.md "Resources and where
availability comes from": a `slot-capacity` extension gives the number of seats, default 1;
"Errors": an unavailable time on `$book` is 409 fatal `not-found`, detail `slot-unavailable`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from operations.scheduling.extensions import SLOT_CAPACITY_URL
from tests.api.booking_helpers import assert_taken, book, count, the_appointment
from tests.conftest import shared_data

MAX_SEATS = 20
"""The most seats a test books on one engine (keeps the runtime modest)."""
SMALL_CAPACITY = 3


def ndjson(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def capacity(slot: dict[str, Any]) -> int:
    """The seats of a Slot: its `slot-capacity` valueInteger, 1 when absent."""
    values = [e["valueInteger"] for e in slot.get("extension", []) if e["url"] == SLOT_CAPACITY_URL]
    return int(values[0]) if values else 1


def with_capacity(slot: dict[str, Any], seats: int) -> dict[str, Any]:
    others = [e for e in slot.get("extension", []) if e["url"] != SLOT_CAPACITY_URL]
    return {**slot, "extension": [*others, {"url": SLOT_CAPACITY_URL, "valueInteger": seats}]}


async def put(client: httpx.AsyncClient, *resources: dict[str, Any]) -> None:
    for resource in resources:
        r = await client.put(f"/{resource['resourceType']}/{resource['id']}", json=resource)
        assert r.status_code in (200, 201), r.text


@pytest.fixture
async def published(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    """The whole SMART Scheduling Links data set (Locations, Schedules, Slots), loaded by PUT;
    returns its Slots as the files have them."""
    folder = shared_data("smart-scheduling-links")
    files = [folder / "locations.ndjson", folder / "schedules.ndjson"]
    files += sorted(folder.glob("slots-*.ndjson"))
    resources = [resource for path in files for resource in ndjson(path)]
    assert resources, f"no resources in {folder}"
    await put(client, *resources)
    return [r for r in resources if r["resourceType"] == "Slot"]


async def offered(client: httpx.AsyncClient, slot: dict[str, Any]) -> dict[str, int]:
    """Seats left, by Slot id, of the free Slots `Schedule/{id}/$find-slots` offers on the
    Slot's Schedule over the UTC day the Slot starts."""
    day = slot["start"][:10]
    schedule_id = slot["schedule"]["reference"].removeprefix("Schedule/")
    r = await client.get(
        f"/Schedule/{schedule_id}/$find-slots",
        params={"start": f"{day}T00:00:00Z", "end": f"{day}T23:59:59Z", "_count": "100"},
    )
    assert r.status_code == 200, r.text
    entries = [e["resource"] for e in r.json().get("entry", []) if e["search"]["mode"] == "match"]
    return {s["id"]: capacity(s) for s in entries}


def seat(slot_id: str, patient: str) -> tuple[str, dict[str, Any]]:
    """The `appointment-resource` of one seat: the Slot and a patient participant."""
    appointment = {
        "resourceType": "Appointment",
        "status": "proposed",
        "slot": [{"reference": f"Slot/{slot_id}"}],
        "participant": [{"actor": {"reference": patient}, "status": "accepted"}],
    }
    return ("appointment-resource", appointment)


async def patients(client: httpx.AsyncClient, n: int) -> list[str]:
    made = [
        {"resourceType": "Patient", "id": f"smart-p{i}", "name": [{"family": f"P{i}"}]}
        for i in range(n)
    ]
    await put(client, *made)
    return [f"Patient/{p['id']}" for p in made]


async def test_smart_links_book_slot_capacity_n_times_then_409_slot_unavailable(
    client: httpx.AsyncClient, published: list[dict[str, Any]]
) -> None:
    slot = next(s for s in published if s["status"] == "free")
    seats = capacity(slot)  # read from the file: 100 in the published data set
    target = slot
    if seats > MAX_SEATS:
        # Booking 100 seats per engine is too slow: a copy of this Slot, same Schedule and
        # time, with slot-capacity 3 under a new id stands in for it.
        seats = SMALL_CAPACITY
        target = with_capacity({**slot, "id": f"{slot['id']}-cap{seats}"}, seats)
        await put(client, target)
    assert (await offered(client, target))[target["id"]] == seats
    people = await patients(client, seats + 1)

    booked = []
    for n, patient in enumerate(people[:seats]):
        appointment = the_appointment(await book(client, seat(target["id"], patient)))
        assert appointment["status"] == "booked"
        assert appointment["slot"] == [{"reference": f"Slot/{target['id']}"}]
        assert (appointment["start"], appointment["end"]) == (target["start"], target["end"])
        assert patient in [p["actor"]["reference"] for p in appointment["participant"]]
        booked.append(appointment["id"])
        left = (await offered(client, target)).get(target["id"], 0)
        assert left == seats - n - 1
    assert len(set(booked)) == seats

    assert_taken(await book(client, seat(target["id"], people[seats])))
    after = await offered(client, target)
    assert target["id"] not in after
    if target is not slot:
        assert after[slot["id"]] == capacity(slot)  # the published Slot keeps all its seats
    slot_ref = f"Slot/{target['id']}"
    assert await count(client, "Appointment", slot=slot_ref) == seats
    assert await count(client, "Appointment", patient=people[seats]) == 0

    # a cancelled seat is offered again and the patient who was turned away gets it
    first = await client.get(f"/Appointment/{booked[0]}")
    cancel = {**first.json(), "status": "cancelled"}
    assert the_appointment(await book(client, ("appointment-resource", cancel)))["status"] == (
        "cancelled"
    )
    assert (await offered(client, target))[target["id"]] == 1
    the_appointment(await book(client, seat(target["id"], people[seats])))
    assert target["id"] not in await offered(client, target)
    assert await count(client, "Appointment", slot=slot_ref, status="booked") == seats


async def test_smart_links_capacity_one_slot_second_booking_409_slot_unavailable(
    client: httpx.AsyncClient, published: list[dict[str, Any]]
) -> None:
    # Every published Slot has slot-capacity 100: a one-seat Slot (SMART style, the extension
    # written with 1) is PUT on the same Schedule, in the hour before the published Slot.
    slot = next(s for s in published if s["status"] == "free")
    day = slot["start"][:10]
    one = with_capacity(
        {**slot, "id": f"{slot['id']}-one", "start": f"{day}T13:00:00Z", "end": f"{day}T13:30:00Z"},
        1,
    )
    assert slot["start"] >= one["end"]
    await put(client, one)
    assert (await offered(client, one))[one["id"]] == 1
    first, second = await patients(client, 2)

    booked = the_appointment(await book(client, seat(one["id"], first)))
    assert (booked["status"], booked["start"]) == ("booked", one["start"])
    assert one["id"] not in await offered(client, one)
    assert_taken(await book(client, seat(one["id"], second)))
    retry = the_appointment(await book(client, seat(one["id"], first)))  # idempotent
    assert retry == booked
    assert await count(client, "Appointment", slot=f"Slot/{one['id']}") == 1
    assert (await offered(client, one))[slot["id"]] == capacity(slot)


async def test_smart_links_find_shared_slot_without_patient_returns_proposals(
    client: httpx.AsyncClient, published: list[dict[str, Any]]
) -> None:
    slot = next(s for s in published if s["status"] == "free" and capacity(s) > 1)
    day = slot["start"][:10]
    schedule_id = slot["schedule"]["reference"].removeprefix("Schedule/")
    window = {"start": f"{day}T00:00:00Z", "end": f"{day}T23:59:59Z"}
    r = await client.get("/Appointment/$find", params={**window, "schedule": schedule_id})
    assert r.status_code == 200, r.text
    found = [e["resource"] for e in r.json().get("entry", [])]
    assert [p["slot"] for p in found] == [[{"reference": f"Slot/{slot['id']}"}]]
    assert all(p["participant"] for p in found)  # Appointment.participant 1..*
    (patient,) = await patients(client, 1)
    proposal = ("appointment-reference", {"reference": f"Appointment/{found[0]['id']}"})
    booked = the_appointment(
        await book(client, proposal, ("patient-reference", {"reference": patient}))
    )
    assert booked["status"] == "booked"
    assert (await offered(client, slot))[slot["id"]] == capacity(slot) - 1


IHE_ORDER = {"Patient": 0, "Practitioner": 1, "Appointment": 2, "Bundle": 3}


async def test_ihe_examples_load_all_accepted(client: httpx.AsyncClient) -> None:
    folder = shared_data("ihe-iti-scheduling")
    examples = [json.loads(path.read_text()) for path in sorted(folder.glob("*.json"))]
    assert examples, f"no examples in {folder}"
    examples.sort(key=lambda r: IHE_ORDER.get(r["resourceType"], 9))
    for example in examples:
        # Every example has an id; the searchset Bundle is stored as a resource (only
        # transaction and batch Bundles are POSTed to the base).
        path = f"/{example['resourceType']}/{example['id']}"
        r = await client.put(path, json=example)
        assert r.status_code == 201, (path, r.text)
        got = (await client.get(path)).json()
        assert {k: v for k, v in got.items() if k != "meta"} == {
            k: v for k, v in example.items() if k != "meta"
        }, path
    (bundle,) = [e for e in examples if e["resourceType"] == "Bundle"]
    r = await client.post("/Bundle", json={k: v for k, v in bundle.items() if k != "id"})
    assert r.status_code == 201, r.text
    assert await count(client, "Bundle") == 2

    (appointment,) = [e for e in examples if e["resourceType"] == "Appointment"]
    patient = next(
        p["actor"]["reference"]
        for p in appointment["participant"]
        if p["actor"].get("reference", "").startswith("Patient/")
    )
    r = await client.get(
        "/Appointment", params={"patient": patient, "date": appointment["start"][:10]}
    )
    assert r.status_code == 200, r.text
    assert [e["resource"]["id"] for e in r.json().get("entry", [])] == [appointment["id"]]
