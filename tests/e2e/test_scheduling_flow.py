"""End to end against uvicorn on 127.0.0.1: the IHE Scheduling flow `$find` -> `$hold` -> `$book`
-> move -> cancel over HTTP, and 50 concurrent writers of one time from separate threads (each
with its own connection) of which exactly one wins (SCHEDULING.md "Never double-book")."""

from __future__ import annotations

import email.utils
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.api.booking_helpers import appointment, at, clinic_resources, parameters
from tests.conftest import LiveServer

FIND = {"start": at("09:00"), "end": at("12:00")}


@pytest.fixture(scope="module")
def http(live_server: LiveServer) -> Iterator[httpx.Client]:
    """A client on the live server with the clinic loaded (once per module)."""
    with httpx.Client(base_url=live_server.base_url, timeout=30) as client:
        for resource in clinic_resources():
            r = client.put(f"/{resource['resourceType']}/{resource['id']}", json=resource)
            assert r.status_code in (200, 201), r.text
        yield client


def only_appointment(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    (entry,) = response.json()["entry"]
    resource: dict[str, Any] = entry["resource"]
    return resource


def offered(http: httpx.Client) -> list[str]:
    query = {**FIND, "practitioner": "Practitioner/doc", "location-reference": "Location/room"}
    r = http.get("/Appointment/$find", params=query)
    assert r.status_code == 200, r.text
    return [e["resource"]["start"] for e in r.json().get("entry", [])]


def test_find_hold_book_move_cancel_over_http_frees_the_time(http: httpx.Client) -> None:
    query = {
        **FIND,
        "practitioner": "Practitioner/doc",
        "location-reference": "Location/room",
        "patient-reference": "Patient/pat",
    }
    found = http.get("/Appointment/$find", params=query)
    assert found.status_code == 200, found.text
    proposal = found.json()["entry"][0]["resource"]
    assert (proposal["status"], proposal["start"]) == ("proposed", at("09:00"))

    ref = ("appointment-reference", {"reference": f"Appointment/{proposal['id']}"})
    held_response = http.post("/Appointment/$hold", json=parameters(ref))
    held = only_appointment(held_response)
    assert held["status"] == "pending"
    assert email.utils.parsedate_to_datetime(held_response.headers["Expires"])
    assert at("09:00") not in offered(http)

    booked = only_appointment(
        http.post("/Appointment/$book", json=parameters(("appointment-resource", held)))
    )
    assert (booked["id"], booked["status"]) == (proposal["id"], "booked")
    participants = {p["actor"]["reference"] for p in booked["participant"]}
    assert participants == {"PractitionerRole/dr", "Location/room", "Patient/pat"}

    moved_input = {**booked, "start": at("10:00"), "end": at("10:30")}
    moved = only_appointment(
        http.post("/Appointment/$book", json=parameters(("appointment-resource", moved_input)))
    )
    assert (moved["id"], moved["start"], moved["status"]) == (booked["id"], at("10:00"), "booked")
    times = offered(http)
    assert at("09:00") in times and at("10:00") not in times

    cancel_input = {**moved, "status": "cancelled"}
    cancelled = only_appointment(
        http.post("/Appointment/$book", json=parameters(("appointment-resource", cancel_input)))
    )
    assert cancelled["status"] == "cancelled"
    assert offered(http) == [at(t) for t in ("09:00", "09:30", "10:00", "10:30", "11:00", "11:30")]
    active = http.get("/Appointment", params={"patient": "Patient/pat", "status": "booked,pending"})
    assert active.json()["total"] == 0
    audit = http.get("/AuditEvent", params={"entity": f"Appointment/{booked['id']}"})
    assert sorted(e["resource"]["action"] for e in audit.json()["entry"]) == ["C", "C", "U", "U"]
    rebook = appointment(at("10:00"), at("10:30"), "pending", actors=("PractitionerRole/dr",))
    again = http.post("/Appointment/$book", json=parameters(("appointment-resource", rebook)))
    assert only_appointment(again)["status"] == "booked"


def test_book_fifty_concurrent_writers_over_http_exactly_one_wins(
    live_server: LiveServer, http: httpx.Client
) -> None:
    base = live_server.base_url
    actors = ("PractitionerRole/dr2", "Location/room2")

    def write(n: int) -> int:
        patient = ["Patient/pat", "Patient/pat2", "Patient/pat3", "Patient/pat4"][n % 4]
        body = appointment(at("11:00"), at("11:30"), "booked", actors=actors, patient=patient)
        body["comment"] = f"writer {n}"
        with httpx.Client(base_url=base, timeout=60) as client:
            kind = n % 4
            if kind == 0:
                pending = {**body, "status": "proposed"}
                r = client.post(
                    "/Appointment/$hold", json=parameters(("appointment-resource", pending))
                )
            elif kind == 1:
                r = client.post(
                    "/Appointment/$book", json=parameters(("appointment-resource", body))
                )
            elif kind == 2:
                r = client.post("/Appointment", json=body)
            else:
                entry = {"resource": body, "request": {"method": "POST", "url": "Appointment"}}
                r = client.post(
                    "", json={"resourceType": "Bundle", "type": "transaction", "entry": [entry]}
                )
            return r.status_code

    with ThreadPoolExecutor(max_workers=50) as pool:
        statuses = Counter(pool.map(write, range(50)))
    assert statuses[409] == 49 and sum(statuses.values()) == 50, statuses
    day = at("11:00")[:10]
    for actor in actors:
        query = {"actor": actor, "status": "booked,pending", "date": f"eq{day}"}
        holding = [e["resource"] for e in http.get("/Appointment", params=query).json()["entry"]]
        assert [a["start"] for a in holding] == [at("11:00")]
