"""No double booking through plain FHIR writes: REST POST/PUT/PATCH/DELETE and transactions
all take the same time claims (SCHEDULING.md "Never double-book"), on both engines."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import httpx
import pytest

_PATIENTS = itertools.count(1)


def appointment(
    start: str,
    end: str,
    status: str = "booked",
    actor: str = "PractitionerRole/dr",
    patient: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A booking of `actor`; each for another patient unless `patient` is given (one patient
    is never in two overlapping bookings: a rule of its own, tested in test_booking_rules)."""
    who = patient or f"Patient/p{next(_PATIENTS)}"
    return {
        "resourceType": "Appointment",
        "status": status,
        "start": start,
        "end": end,
        "participant": [
            {"actor": {"reference": who}, "status": "accepted"},
            {"actor": {"reference": actor}, "status": "accepted"},
        ],
        **extra,
    }


@pytest.fixture
async def clinic(client: httpx.AsyncClient) -> httpx.AsyncClient:
    for resource in (
        {"resourceType": "Patient", "id": "pat"},
        {"resourceType": "PractitionerRole", "id": "dr"},
        {"resourceType": "PractitionerRole", "id": "other"},
        {"resourceType": "Location", "id": "room", "name": "Room 1"},
        {"resourceType": "Schedule", "id": "s-dr", "actor": [{"reference": "PractitionerRole/dr"}]},
        {"resourceType": "Schedule", "id": "s-room", "actor": [{"reference": "Location/room"}]},
        {
            "resourceType": "Slot",
            "id": "group",
            "schedule": {"reference": "Schedule/s-room"},
            "status": "free",
            "start": "2026-12-01T15:00:00Z",
            "end": "2026-12-01T16:00:00Z",
            "extension": [
                {
                    "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/slot-capacity",
                    "valueInteger": 2,
                }
            ],
        },
    ):
        r = await client.put(f"/{resource['resourceType']}/{resource['id']}", json=resource)
        assert r.status_code == 201, r.text
    return client


async def booked_count(client: httpx.AsyncClient) -> int:
    r = await client.get("/Appointment?status=booked&_summary=count")
    return int(r.json()["total"])


async def test_create_overlapping_booking_returns_409_slot_unavailable(
    clinic: httpx.AsyncClient,
) -> None:
    first = await clinic.post(
        "/Appointment", json=appointment("2026-12-01T09:00:00Z", "2026-12-01T09:30:00Z")
    )
    assert first.status_code == 201
    second = await clinic.post(
        "/Appointment", json=appointment("2026-12-01T09:15:00Z", "2026-12-01T09:45:00Z")
    )
    assert second.status_code == 409
    issue = second.json()["issue"][0]
    assert issue["code"] == "conflict"
    assert issue["details"]["coding"][0]["code"] == "slot-unavailable"
    assert "Schedule/s-dr" in issue["diagnostics"]
    assert first.json()["id"] not in second.text
    assert await booked_count(clinic) == 1


async def test_create_back_to_back_bookings_both_succeed(clinic: httpx.AsyncClient) -> None:
    a = await clinic.post(
        "/Appointment", json=appointment("2026-12-01T09:00:00Z", "2026-12-01T09:30:00Z")
    )
    b = await clinic.post(
        "/Appointment", json=appointment("2026-12-01T09:30:00Z", "2026-12-01T10:00:00Z")
    )
    assert (a.status_code, b.status_code) == (201, 201)


async def test_create_other_practitioner_same_time_succeeds(clinic: httpx.AsyncClient) -> None:
    a = await clinic.post(
        "/Appointment", json=appointment("2026-12-01T09:00:00Z", "2026-12-01T09:30:00Z")
    )
    b = await clinic.post(
        "/Appointment",
        json=appointment(
            "2026-12-01T09:00:00Z", "2026-12-01T09:30:00Z", actor="PractitionerRole/other"
        ),
    )
    assert (a.status_code, b.status_code) == (201, 201)


async def test_cancel_by_patch_releases_time_for_new_booking(clinic: httpx.AsyncClient) -> None:
    first = (
        await clinic.post(
            "/Appointment", json=appointment("2026-12-01T11:00:00Z", "2026-12-01T11:30:00Z")
        )
    ).json()
    ops = [{"op": "replace", "path": "/status", "value": "cancelled"}]
    r = await clinic.request(
        "PATCH",
        f"/Appointment/{first['id']}",
        json=ops,
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert r.status_code == 200
    again = await clinic.post(
        "/Appointment", json=appointment("2026-12-01T11:00:00Z", "2026-12-01T11:30:00Z")
    )
    assert again.status_code == 201


async def test_move_by_put_onto_taken_time_returns_409_and_keeps_old(
    clinic: httpx.AsyncClient,
) -> None:
    a = (
        await clinic.post(
            "/Appointment", json=appointment("2026-12-01T13:00:00Z", "2026-12-01T13:30:00Z")
        )
    ).json()
    b = (
        await clinic.post(
            "/Appointment", json=appointment("2026-12-01T14:00:00Z", "2026-12-01T14:30:00Z")
        )
    ).json()
    moved = {**b, "start": "2026-12-01T13:15:00Z", "end": "2026-12-01T13:45:00Z"}
    r = await clinic.put(f"/Appointment/{b['id']}", json=moved)
    assert r.status_code == 409
    current = (await clinic.get(f"/Appointment/{b['id']}")).json()
    assert current["start"] == "2026-12-01T14:00:00Z" and current["meta"]["versionId"] == "1"
    free_move = {**b, "start": "2026-12-01T14:30:00Z", "end": "2026-12-01T15:00:00Z"}
    assert (await clinic.put(f"/Appointment/{b['id']}", json=free_move)).status_code == 200
    reuse = await clinic.post(
        "/Appointment", json=appointment("2026-12-01T14:00:00Z", "2026-12-01T14:30:00Z")
    )
    assert reuse.status_code == 201
    assert a["id"]


async def test_delete_booked_appointment_refused_with_hint(clinic: httpx.AsyncClient) -> None:
    a = (
        await clinic.post(
            "/Appointment", json=appointment("2026-12-01T16:00:00Z", "2026-12-01T16:30:00Z")
        )
    ).json()
    r = await clinic.delete(f"/Appointment/{a['id']}")
    assert r.status_code == 409
    assert "cancel" in r.json()["issue"][0]["diagnostics"]
    assert (await clinic.get(f"/Appointment/{a['id']}")).status_code == 200


async def test_transaction_with_overlapping_bookings_writes_nothing(
    clinic: httpx.AsyncClient,
) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": appointment("2026-12-02T09:00:00Z", "2026-12-02T09:30:00Z"),
                "request": {"method": "POST", "url": "Appointment"},
            },
            {
                "resource": appointment("2026-12-02T09:20:00Z", "2026-12-02T09:50:00Z"),
                "request": {"method": "POST", "url": "Appointment"},
            },
        ],
    }
    r = await clinic.post("", json=bundle)
    assert r.status_code == 409
    assert await booked_count(clinic) == 0
    bundle["entry"][1]["resource"] = appointment("2026-12-02T09:30:00Z", "2026-12-02T10:00:00Z")
    ok = await clinic.post("", json=bundle)
    assert ok.status_code == 200
    assert await booked_count(clinic) == 2


async def test_concurrent_bookings_of_same_time_exactly_one_wins(clinic: httpx.AsyncClient) -> None:
    body = appointment("2026-12-03T09:00:00Z", "2026-12-03T09:30:00Z")
    results = await asyncio.gather(*[clinic.post("/Appointment", json=body) for _ in range(20)])
    assert sorted(r.status_code for r in results) == [201] + [409] * 19
    assert await booked_count(clinic) == 1


async def test_concurrent_bookings_of_same_time_over_every_write_path_exactly_one_wins(
    clinic: httpx.AsyncClient,
) -> None:
    """The same half hour of `dr` asked at once through REST POST and PUT, a transaction and
    a batch, naming the practitioner by relative, absolute and versioned references: the
    writes of one event-loop turn share a transaction (SQLite group commit), and still only
    one of them takes the time."""
    start, end = "2026-12-03T11:00:00Z", "2026-12-03T11:30:00Z"
    actors = [
        "PractitionerRole/dr",
        "http://test/fhir/PractitionerRole/dr",
        "PractitionerRole/dr/_history/1",
    ]

    def entry(actor: str) -> dict[str, Any]:
        return {
            "resource": appointment(start, end, actor=actor),
            "request": {"method": "POST", "url": "Appointment"},
        }

    calls = []
    for n, actor in enumerate(actors):
        calls.append(clinic.post("/Appointment", json=appointment(start, end, actor=actor)))
        put = {**appointment(start, end, actor=actor), "id": f"race-{n}"}
        calls.append(clinic.put(f"/Appointment/race-{n}", json=put))
        transaction = {"resourceType": "Bundle", "type": "transaction", "entry": [entry(actor)]}
        calls.append(clinic.post("", json=transaction))
        batch = {"resourceType": "Bundle", "type": "batch", "entry": [entry(actor)]}
        calls.append(clinic.post("", json=batch))
    answers = await asyncio.gather(*calls)
    won = 0
    for answer in answers:
        body = answer.json()
        if body.get("type") == "batch-response":
            status = body["entry"][0]["response"]["status"]
            won += status.startswith("201")
            assert status.startswith(("201", "409")), status
        elif body.get("type") == "transaction-response":
            won += 1
        else:
            assert answer.status_code in (201, 409), answer.text
            won += answer.status_code == 201
    assert won == 1
    assert await booked_count(clinic) == 1


async def test_shared_slot_capacity_two_allows_two_then_409(clinic: httpx.AsyncClient) -> None:
    def seat() -> dict[str, Any]:
        return appointment(
            "2026-12-01T15:00:00Z",
            "2026-12-01T16:00:00Z",
            actor="Location/room",
            slot=[{"reference": "Slot/group"}],
        )

    statuses = [(await clinic.post("/Appointment", json=seat())).status_code for _ in range(3)]
    assert statuses == [201, 201, 409]


async def test_proposed_and_cancelled_appointments_claim_nothing(clinic: httpx.AsyncClient) -> None:
    for status in ("proposed", "cancelled", "booked"):
        r = await clinic.post(
            "/Appointment", json=appointment("2026-12-04T09:00:00Z", "2026-12-04T09:30:00Z", status)
        )
        assert r.status_code == 201, status


MAX_PER_DAY_URL = "https://fhir-scheduling.example.org/StructureDefinition/max-bookings-per-day"


async def test_max_bookings_per_day_enforced_on_local_day_then_freed_by_cancel(
    clinic: httpx.AsyncClient,
) -> None:
    capped = {
        "resourceType": "Schedule",
        "id": "s-dr",
        "actor": [{"reference": "PractitionerRole/dr"}],
        "extension": [
            {
                "url": "http://hl7.org/fhir/StructureDefinition/timezone",
                "valueCode": "America/New_York",
            },
            {"url": MAX_PER_DAY_URL, "valuePositiveInt": 2},
        ],
    }
    assert (await clinic.put("/Schedule/s-dr", json=capped)).status_code == 200
    # 2026-12-07 is a Monday; 04:30Z is still Sunday 23:30 in New York
    sunday_night = await clinic.post(
        "/Appointment", json=appointment("2026-12-07T04:30:00Z", "2026-12-07T04:45:00Z")
    )
    first = await clinic.post(
        "/Appointment", json=appointment("2026-12-07T14:00:00Z", "2026-12-07T14:30:00Z")
    )
    second = await clinic.post(
        "/Appointment", json=appointment("2026-12-07T15:00:00Z", "2026-12-07T15:30:00Z")
    )
    third = await clinic.post(
        "/Appointment", json=appointment("2026-12-07T16:00:00Z", "2026-12-07T16:30:00Z")
    )
    assert [r.status_code for r in (sunday_night, first, second, third)] == [201, 201, 201, 409]
    issue = third.json()["issue"][0]
    assert issue["details"]["coding"][0]["code"] == "slot-unavailable"
    assert "2026-12-07" in issue["diagnostics"] and "2 per day" in issue["diagnostics"]
    ops = [{"op": "replace", "path": "/status", "value": "cancelled"}]
    r = await clinic.request(
        "PATCH",
        f"/Appointment/{first.json()['id']}",
        json=ops,
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert r.status_code == 200
    again = await clinic.post(
        "/Appointment", json=appointment("2026-12-07T16:00:00Z", "2026-12-07T16:30:00Z")
    )
    assert again.status_code == 201
