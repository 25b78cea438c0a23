"""`Appointment/$hold` (IHE ITI-116) and `Appointment/$book` (ITI-117) over HTTP on both engines:
every row of SCHEDULING.md "Errors", holds that expire, idempotent retries, atomic moves and
reschedules, AuditEvents, and no double booking under 50 concurrent writers of every kind."""

from __future__ import annotations

import asyncio
import email.utils
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from fhir_server.app import create_app
from fhir_server.repository import Repository, RepositoryFactory
from fhir_server.storage.base import ResourceStore
from operations.scheduling.claims import HOLD_EXPIRES_URL
from operations.scheduling.holds import SWEEPER, sweep_expired_holds
from resources.fhir_dates import now_us, parse_instant
from tests.conftest import make_settings
from tests.engines import ALL_ENGINES, make_store

DAY = "2026-12-07"  # a Monday; the clinic is open 09:00-12:00 UTC on weekdays
WEEKDAYS = ["mon", "tue", "wed", "thu", "fri"]
HOURS = [{"daysOfWeek": WEEKDAYS, "availableStartTime": "09:00:00", "availableEndTime": "12:00:00"}]
LAPSED = {"url": HOLD_EXPIRES_URL, "valueInstant": "2020-01-01T00:00:00Z"}


def at(hhmm: str, day: str = DAY) -> str:
    return f"{day}T{hhmm}:00Z"


def clinic_resources() -> list[dict[str, Any]]:
    """Two practitioners and two rooms, open 09:00-12:00 UTC on weekdays, four patients."""
    opening = [{"daysOfWeek": WEEKDAYS, "openingTime": "09:00:00", "closingTime": "12:00:00"}]
    checkup = {"coding": [{"system": "http://example.org/visit", "code": "checkup"}]}
    resources: list[dict[str, Any]] = [
        {"resourceType": "Patient", "id": pid} for pid in ("pat", "pat2", "pat3", "pat4")
    ]
    resources += [
        {
            "resourceType": "Practitioner",
            "id": "doc",
            "identifier": [{"system": "urn:oid:1.2.3", "value": "PR1"}],
        },
        {"resourceType": "Practitioner", "id": "doc2"},
        {
            "resourceType": "PractitionerRole",
            "id": "dr",
            "practitioner": {"reference": "Practitioner/doc"},
            "availableTime": HOURS,
        },
        {
            "resourceType": "PractitionerRole",
            "id": "dr2",
            "practitioner": {"reference": "Practitioner/doc2"},
            "availableTime": HOURS,
        },
        {"resourceType": "Location", "id": "room", "hoursOfOperation": opening},
        {"resourceType": "Location", "id": "room2", "hoursOfOperation": opening},
        {
            "resourceType": "Schedule",
            "id": "s-dr",
            "serviceType": [checkup],
            "actor": [{"reference": "PractitionerRole/dr"}],
        },
        {
            "resourceType": "Schedule",
            "id": "s-dr2",
            "actor": [{"reference": "PractitionerRole/dr2"}],
        },
        {"resourceType": "Schedule", "id": "s-room", "actor": [{"reference": "Location/room"}]},
        {"resourceType": "Schedule", "id": "s-room2", "actor": [{"reference": "Location/room2"}]},
    ]
    return resources


def appointment(
    start: str,
    end: str,
    status: str = "booked",
    actors: tuple[str, ...] = ("PractitionerRole/dr",),
    patient: str | None = "Patient/pat",
    **extra: Any,
) -> dict[str, Any]:
    refs = (*actors, patient) if patient else actors
    return {
        "resourceType": "Appointment",
        "status": status,
        "start": start,
        "end": end,
        "participant": [{"actor": {"reference": r}, "status": "accepted"} for r in refs],
        **extra,
    }


def parameters(*items: tuple[str, Any]) -> dict[str, Any]:
    """A Parameters body: a dict with resourceType is a resource, other dicts References."""
    out = []
    for name, value in items:
        if isinstance(value, dict) and "resourceType" in value:
            out.append({"name": name, "resource": value})
        elif isinstance(value, dict):
            out.append({"name": name, "valueReference": value})
        else:
            out.append({"name": name, "valueString": value})
    return {"resourceType": "Parameters", "parameter": out}


def ref(id: str) -> tuple[str, dict[str, str]]:
    return ("appointment-reference", {"reference": f"Appointment/{id}"})


def the_appointment(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    bundle = response.json()
    assert bundle["resourceType"] == "Bundle"
    assert bundle["type"] == "searchset"
    assert [e["resource"]["resourceType"] for e in bundle["entry"]] == ["Appointment"]
    resource: dict[str, Any] = bundle["entry"][0]["resource"]
    assert bundle["entry"][0]["fullUrl"].endswith(f"/Appointment/{resource['id']}")
    return resource


def requestor_of(client: httpx.AsyncClient) -> str:
    """Who the server's AuditEvents name as requestor: the administrator token's client, or
    `anonymous` with authorization off."""
    return "client:fhir-server-cli" if "authorization" in client.headers else "anonymous"


def assert_outcome(
    response: httpx.Response,
    status: int,
    code: str,
    severity: str = "error",
    detail: str | None = None,
) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    issue = body["issue"][0]
    assert (issue["severity"], issue["code"]) == (severity, code), issue
    codes = [c["code"] for c in (issue.get("details") or {}).get("coding", [])]
    assert codes == ([detail] if detail else []), issue


def assert_taken(response: httpx.Response) -> None:
    """SCHEDULING.md: an unavailable time on $hold/$book is 409 fatal not-found slot-unavailable."""
    assert_outcome(response, 409, "not-found", "fatal", "slot-unavailable")


async def seed(client: httpx.AsyncClient) -> None:
    for resource in clinic_resources():
        r = await client.put(f"/{resource['resourceType']}/{resource['id']}", json=resource)
        assert r.status_code == 201, r.text


@pytest.fixture
async def clinic(client: httpx.AsyncClient) -> httpx.AsyncClient:
    await seed(client)
    return client


async def propose(client: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    query = {"start": at("09:00"), "end": at("12:00"), "patient-reference": "Patient/pat"}
    r = await client.get("/Appointment/$find", params={**query, **params})
    assert r.status_code == 200, r.text
    return [e["resource"] for e in r.json().get("entry", [])]


async def first_proposal(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    return (await propose(client, practitioner="Practitioner/doc", **params))[0]


async def hold(client: httpx.AsyncClient, *items: tuple[str, Any]) -> httpx.Response:
    return await client.post("/Appointment/$hold", json=parameters(*items))


async def book(
    client: httpx.AsyncClient, *items: tuple[str, Any], headers: dict[str, str] | None = None
) -> httpx.Response:
    return await client.post("/Appointment/$book", json=parameters(*items), headers=headers)


async def read(client: httpx.AsyncClient, id: str) -> dict[str, Any]:
    r = await client.get(f"/Appointment/{id}")
    assert r.status_code == 200, r.text
    resource: dict[str, Any] = r.json()
    return resource


async def count(client: httpx.AsyncClient, rtype: str, **query: str) -> int:
    r = await client.get(f"/{rtype}", params={**query, "_summary": "count"})
    assert r.status_code == 200, r.text
    return int(r.json()["total"])


async def audits(client: httpx.AsyncClient, appointment_id: str) -> list[tuple[str, str, str]]:
    """(action, IHE subtype, outcome) of the AuditEvents naming the Appointment."""
    r = await client.get("/AuditEvent", params={"entity": f"Appointment/{appointment_id}"})
    events = [e["resource"] for e in r.json().get("entry", [])]
    out = []
    for event in sorted(events, key=lambda e: e["recorded"]):
        ihe = [s["code"] for s in event["subtype"] if s["system"] == "urn:ihe:event-type-code"]
        out.append((event["action"], ihe[0], event["outcome"]))
    return out


# -- $hold ----------------------------------------------------------------------------------


async def test_hold_proposal_returns_pending_with_expires_header(
    clinic: httpx.AsyncClient,
) -> None:
    proposal = await first_proposal(clinic)
    before = now_us()
    response = await hold(clinic, ref(proposal["id"]))
    held = the_appointment(response)
    assert held["id"] == proposal["id"]
    assert held["status"] == "pending"
    assert (held["start"], held["end"]) == (proposal["start"], proposal["end"])
    assert "tag" not in held["meta"]
    (expiry,) = [e["valueInstant"] for e in held["extension"] if e["url"] == HOLD_EXPIRES_URL]
    expires = parse_instant(expiry)
    assert before + 299_000_000 <= expires <= now_us() + 300_000_000
    header = email.utils.parsedate_to_datetime(response.headers["Expires"])
    assert abs(header.timestamp() - expires / 1e6) < 1
    assert await audits(clinic, held["id"]) == [("C", "ITI-116", "0")]
    assert await count(clinic, "Appointment", patient="Patient/pat") == 1


@pytest.mark.parametrize("operation", ["$hold", "$book"])
async def test_hold_or_book_by_get_returns_405(client: httpx.AsyncClient, operation: str) -> None:
    r = await client.get(f"/Appointment/{operation}", params={"appointment-reference": "x"})
    assert_outcome(r, 405, "not-supported")


@pytest.mark.parametrize("operation", ["$hold", "$book"])
async def test_hold_or_book_unknown_reference_returns_404(
    clinic: httpx.AsyncClient, operation: str
) -> None:
    r = await clinic.post(f"/Appointment/{operation}", json=parameters(ref("nope")))
    assert_outcome(r, 404, "not-found")


@pytest.mark.parametrize("operation", ["$hold", "$book"])
async def test_hold_or_book_without_target_returns_400(
    clinic: httpx.AsyncClient, operation: str
) -> None:
    r = await clinic.post(f"/Appointment/{operation}", json=parameters(("comment", "hi")))
    assert_outcome(r, 400, "required")


async def test_hold_taken_time_returns_409_fatal_and_writes_nothing(
    clinic: httpx.AsyncClient,
) -> None:
    first = await first_proposal(clinic)
    second = await first_proposal(clinic, **{"patient-reference": "Patient/pat2"})
    assert (first["start"], first["end"]) == (second["start"], second["end"])
    the_appointment(await hold(clinic, ref(first["id"])))
    assert_taken(await hold(clinic, ref(second["id"])))
    assert (await read(clinic, second["id"]))["meta"]["versionId"] == "1"
    assert await audits(clinic, second["id"]) == []


async def test_hold_already_held_returns_409(clinic: httpx.AsyncClient) -> None:
    proposal = await first_proposal(clinic)
    the_appointment(await hold(clinic, ref(proposal["id"])))
    assert_outcome(await hold(clinic, ref(proposal["id"])), 409, "conflict")


async def test_hold_booked_appointment_returns_409_illegal_status_change(
    clinic: httpx.AsyncClient,
) -> None:
    created = await clinic.post("/Appointment", json=appointment(at("09:00"), at("09:30")))
    r = await hold(clinic, ref(created.json()["id"]))
    assert_outcome(r, 409, "business-rule")


async def test_hold_resource_with_rule_slot_fills_time_and_actors(
    clinic: httpx.AsyncClient,
) -> None:
    slots = await clinic.get(
        "/Slot/$find-slots", params={"schedule": "s-room", "start": at("10:00"), "end": at("11:00")}
    )
    slot_id = slots.json()["entry"][0]["resource"]["id"]
    resource = {
        "resourceType": "Appointment",
        "status": "proposed",
        "slot": [{"reference": f"Slot/{slot_id}"}],
        "participant": [{"actor": {"reference": "Patient/pat"}, "status": "accepted"}],
    }
    held = the_appointment(await hold(clinic, ("appointment-resource", resource)))
    assert (held["status"], held["start"], held["end"]) == ("pending", at("10:00"), at("10:30"))
    assert {"reference": "Location/room"} in [p["actor"] for p in held["participant"]]
    assert (await clinic.get(f"/Slot/{slot_id}")).status_code == 404  # held: no longer free


async def test_hold_resource_without_actor_or_slot_returns_422(clinic: httpx.AsyncClient) -> None:
    resource = appointment(at("09:00"), at("09:30"), "proposed", actors=())
    r = await hold(clinic, ("appointment-resource", resource))
    assert_outcome(r, 422, "business-rule")


# -- $book ----------------------------------------------------------------------------------


async def test_book_proposal_returns_booked_and_audits(clinic: httpx.AsyncClient) -> None:
    proposal = await first_proposal(clinic)
    booked = the_appointment(await book(clinic, ref(proposal["id"]), ("comment", "first visit")))
    assert booked["id"] == proposal["id"]
    assert (booked["status"], booked["comment"]) == ("booked", "first visit")
    assert "extension" not in booked and "tag" not in booked["meta"]
    assert {p["status"] for p in booked["participant"]} == {"accepted"}
    assert await audits(clinic, booked["id"]) == [("C", "ITI-117", "0")]
    r = await clinic.get("/AuditEvent", params={"entity": f"Appointment/{booked['id']}"})
    event = r.json()["entry"][0]["resource"]
    assert {e["what"]["reference"] for e in event["entity"]} == {
        "Patient/pat",
        f"Appointment/{booked['id']}",
    }
    assert event["type"]["code"] == "rest"
    assert event["agent"][0] == {
        "type": event["agent"][0]["type"],
        "who": {"display": requestor_of(clinic)},
        "requestor": True,
    }


async def test_book_hold_books_same_appointment_and_clears_hold(clinic: httpx.AsyncClient) -> None:
    proposal = await first_proposal(clinic)
    held = the_appointment(await hold(clinic, ref(proposal["id"])))
    booked = the_appointment(await book(clinic, ("appointment-resource", held)))
    assert (booked["id"], booked["status"]) == (held["id"], "booked")
    assert "extension" not in booked
    assert await audits(clinic, held["id"]) == [("C", "ITI-116", "0"), ("C", "ITI-117", "0")]


async def test_book_retry_returns_same_appointment_unchanged(clinic: httpx.AsyncClient) -> None:
    proposal = await first_proposal(clinic)
    first = the_appointment(await book(clinic, ref(proposal["id"])))
    again = the_appointment(await book(clinic, ref(proposal["id"])))
    assert again == first
    new = appointment(at("11:00"), at("11:30"), "pending", patient="Patient/pat2")
    made = the_appointment(await book(clinic, ("appointment-resource", new)))
    retry = the_appointment(await book(clinic, ("appointment-resource", new)))
    assert retry == made and made["meta"]["versionId"] == "1"
    assert await count(clinic, "Appointment", status="booked") == 2
    assert len(await audits(clinic, made["id"])) == 1


async def test_book_back_to_back_both_succeed(clinic: httpx.AsyncClient) -> None:
    early = appointment(at("09:00"), at("09:30"), "pending")
    late = appointment(at("09:30"), at("10:00"), "pending", patient="Patient/pat2")
    the_appointment(await book(clinic, ("appointment-resource", early)))
    the_appointment(await book(clinic, ("appointment-resource", late)))
    assert await count(clinic, "Appointment", status="booked") == 2


async def test_book_taken_time_returns_409_fatal_and_writes_nothing(
    clinic: httpx.AsyncClient,
) -> None:
    assert (
        await clinic.post("/Appointment", json=appointment(at("09:00"), at("09:30")))
    ).status_code == 201
    overlapping = appointment(at("09:15"), at("09:45"), "pending", patient="Patient/pat2")
    assert_taken(await book(clinic, ("appointment-resource", overlapping)))
    assert await count(clinic, "Appointment") == 1
    assert await count(clinic, "AuditEvent") == 0


async def test_book_without_patient_returns_422(clinic: httpx.AsyncClient) -> None:
    no_patient = appointment(at("09:00"), at("09:30"), "pending", patient=None)
    r = await book(clinic, ("appointment-resource", no_patient))
    assert_outcome(r, 422, "business-rule")
    assert await count(clinic, "Appointment") == 0


async def test_book_patient_reference_and_resource_add_patients(clinic: httpx.AsyncClient) -> None:
    group = appointment(at("10:00"), at("10:30"), "pending", patient=None)
    newcomer = {"resourceType": "Patient", "name": [{"family": "New"}]}
    booked = the_appointment(
        await book(
            clinic,
            ("appointment-resource", group),
            ("patient-reference", {"reference": "Patient/pat2"}),
            ("patient-resource", newcomer),
        )
    )
    patients = [
        p["actor"]["reference"]
        for p in booked["participant"]
        if p["actor"]["reference"].startswith("Patient/")
    ]
    assert patients[0] == "Patient/pat2" and len(patients) == 2
    created = await clinic.get(f"/{patients[1]}")
    assert created.json()["name"] == [{"family": "New"}]


async def test_book_invariant_broken_returns_422(clinic: httpx.AsyncClient) -> None:
    half = appointment(at("09:00"), at("09:30"), "pending")
    del half["end"]
    r = await book(clinic, ("appointment-resource", half))
    assert_outcome(r, 422, "invariant")


async def test_book_if_match_mismatch_returns_412(clinic: httpx.AsyncClient) -> None:
    proposal = await first_proposal(clinic)
    held = the_appointment(await hold(clinic, ref(proposal["id"])))
    assert held["meta"]["versionId"] == "1"  # the proposal was a record, the hold version 1
    stale = await book(clinic, ref(held["id"]), headers={"If-Match": 'W/"2"'})
    assert_outcome(stale, 412, "conflict")
    assert (await read(clinic, held["id"]))["status"] == "pending"
    current = f'W/"{held["meta"]["versionId"]}"'
    the_appointment(await book(clinic, ref(held["id"]), headers={"If-Match": current}))


async def test_book_expired_hold_returns_404(clinic: httpx.AsyncClient) -> None:
    proposal = await first_proposal(clinic)
    held = the_appointment(await hold(clinic, ref(proposal["id"])))
    lapsed = {**held, "extension": [LAPSED]}
    assert (await clinic.put(f"/Appointment/{held['id']}", json=lapsed)).status_code == 200
    assert_outcome(await book(clinic, ref(held["id"])), 404, "not-found")
    # the lapsed hold no longer guards its time: another patient can book it
    other = appointment(held["start"], held["end"], "pending", patient="Patient/pat2")
    the_appointment(await book(clinic, ("appointment-resource", other)))


async def test_book_move_in_place_releases_old_and_claims_new(clinic: httpx.AsyncClient) -> None:
    booked = the_appointment(await book(clinic, ref((await first_proposal(clinic))["id"])))
    moved = {**booked, "start": at("10:00"), "end": at("10:30")}
    after = the_appointment(await book(clinic, ("appointment-resource", moved)))
    assert (after["id"], after["start"], after["status"]) == (booked["id"], at("10:00"), "booked")
    old_time = appointment(booked["start"], booked["end"], "pending", patient="Patient/pat2")
    the_appointment(await book(clinic, ("appointment-resource", old_time)))
    new_time = appointment(at("10:00"), at("10:30"), "pending", patient="Patient/pat3")
    assert_taken(await book(clinic, ("appointment-resource", new_time)))
    assert [a[0] for a in await audits(clinic, booked["id"])] == ["C", "U"]


async def test_book_move_onto_taken_time_returns_409_and_keeps_old(
    clinic: httpx.AsyncClient,
) -> None:
    taken = appointment(at("11:00"), at("11:30"), patient="Patient/pat2")
    assert (await clinic.post("/Appointment", json=taken)).status_code == 201
    booked = the_appointment(await book(clinic, ref((await first_proposal(clinic))["id"])))
    moved = {**booked, "start": at("11:00"), "end": at("11:30")}
    assert_taken(await book(clinic, ("appointment-resource", moved)))
    assert await read(clinic, booked["id"]) == booked


async def test_book_cancel_releases_time_and_audits(clinic: httpx.AsyncClient) -> None:
    booked = the_appointment(await book(clinic, ref((await first_proposal(clinic))["id"])))
    reason = {"text": "patient request"}
    cancel = {**booked, "status": "cancelled", "cancelationReason": reason}
    cancelled = the_appointment(await book(clinic, ("appointment-resource", cancel)))
    assert (cancelled["status"], cancelled["cancelationReason"]) == ("cancelled", reason)
    assert await audits(clinic, booked["id"]) == [("C", "ITI-117", "0"), ("U", "ITI-117", "0")]
    again = appointment(booked["start"], booked["end"], "pending", patient="Patient/pat2")
    the_appointment(await book(clinic, ("appointment-resource", again)))
    retry = the_appointment(await book(clinic, ("appointment-resource", cancel)))
    assert retry["meta"]["versionId"] == cancelled["meta"]["versionId"]


async def test_book_cancelled_appointment_returns_409_illegal_status_change(
    clinic: httpx.AsyncClient,
) -> None:
    booked = the_appointment(await book(clinic, ref((await first_proposal(clinic))["id"])))
    cancelled = the_appointment(
        await book(clinic, ("appointment-resource", {**booked, "status": "cancelled"}))
    )
    r = await book(clinic, ("appointment-resource", {**cancelled, "status": "booked"}))
    assert_outcome(r, 409, "business-rule")
    assert_outcome(await book(clinic, ref(booked["id"])), 409, "business-rule")


async def test_book_reschedule_cancels_old_and_books_new_atomically(
    clinic: httpx.AsyncClient,
) -> None:
    old = the_appointment(await book(clinic, ref((await first_proposal(clinic))["id"])))
    new = appointment(at("10:30"), at("11:00"), "pending")
    cancel_old = ("cancelled-appt-id", {"reference": f"Appointment/{old['id']}"})
    booked = the_appointment(await book(clinic, ("appointment-resource", new), cancel_old))
    assert booked["status"] == "booked" and booked["id"] != old["id"]
    assert (await read(clinic, old["id"]))["status"] == "cancelled"
    retry = the_appointment(await book(clinic, ("appointment-resource", new), cancel_old))
    assert retry == booked
    assert await count(clinic, "Appointment", status="booked") == 1


async def test_book_reschedule_onto_taken_time_leaves_old_booked(
    clinic: httpx.AsyncClient,
) -> None:
    old = the_appointment(await book(clinic, ref((await first_proposal(clinic))["id"])))
    taken = appointment(at("11:00"), at("11:30"), patient="Patient/pat2")
    assert (await clinic.post("/Appointment", json=taken)).status_code == 201
    new = appointment(at("11:00"), at("11:30"), "pending")
    cancel_old = ("cancelled-appt-id", {"reference": f"Appointment/{old['id']}"})
    assert_taken(await book(clinic, ("appointment-resource", new), cancel_old))
    assert await read(clinic, old["id"]) == old
    assert await count(clinic, "Appointment") == 2
    assert await audits(clinic, old["id"]) == [("C", "ITI-117", "0")]


async def test_book_multi_actor_with_room_taken_writes_nothing(clinic: httpx.AsyncClient) -> None:
    room_busy = appointment(
        at("09:00"), at("10:00"), actors=("Location/room",), patient="Patient/pat2"
    )
    assert (await clinic.post("/Appointment", json=room_busy)).status_code == 201
    actors = ("PractitionerRole/dr", "Location/room")
    both = appointment(at("09:30"), at("10:00"), "pending", actors=actors)
    before = (await count(clinic, "Appointment"), await count(clinic, "AuditEvent"))
    assert_taken(await book(clinic, ("appointment-resource", both)))
    assert (await count(clinic, "Appointment"), await count(clinic, "AuditEvent")) == before
    doctor_only = appointment(at("09:30"), at("10:00"), "pending")
    the_appointment(await book(clinic, ("appointment-resource", doctor_only)))


# -- holds that expire, and concurrency (app-level fixture: repository and store) -------------


@dataclass
class Server:
    client: httpx.AsyncClient
    app: FastAPI
    store: ResourceStore

    @property
    def repository(self) -> Repository:
        """A job repository of the server, as the hold sweeper gets one."""
        factory: RepositoryFactory = self.app.state.repositories
        return factory.for_job(SWEEPER, "http://test/fhir")


@asynccontextmanager
async def running(engine: str, tmp_path: Path, **settings: Any) -> AsyncIterator[Server]:
    """The clinic served on `engine` with `settings`, the app at hand."""
    store, drop = make_store(engine, tmp_path)
    app = create_app(make_settings(tmp_path, **settings), store=store)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test/fhir") as c:
                await seed(c)
                yield Server(c, app, store)
    finally:
        if drop is not None:
            await drop()


@pytest.fixture(params=ALL_ENGINES)
async def server(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Server]:
    async with running(request.param, tmp_path) as served:
        yield served


async def test_hold_expiry_sweep_cancels_and_frees_time(server: Server) -> None:
    client = server.client
    held = the_appointment(await hold(client, ref((await first_proposal(client))["id"])))
    taker = appointment(held["start"], held["end"], "pending", patient="Patient/pat2")
    assert_taken(await book(client, ("appointment-resource", taker)))
    assert await sweep_expired_holds(server.repository, now_us()) == []
    later = now_us() + 301_000_000
    assert await sweep_expired_holds(server.repository, later) == [held["id"]]
    cancelled = await read(client, held["id"])
    assert cancelled["status"] == "cancelled" and "extension" not in cancelled
    assert cancelled["cancelationReason"] == {"text": "The hold expired"}
    assert await server.store.claims_of(f"Appointment/{held['id']}") == []
    assert await audits(client, held["id"]) == [("C", "ITI-116", "0"), ("U", "ITI-116", "0")]
    the_appointment(await book(client, ("appointment-resource", taker)))
    assert await sweep_expired_holds(server.repository, later) == []


async def test_hold_expired_and_taken_over_is_still_cancelled_by_sweep(server: Server) -> None:
    client = server.client
    held = the_appointment(await hold(client, ref((await first_proposal(client))["id"])))
    lapsed = {**held, "extension": [LAPSED]}
    assert (await client.put(f"/Appointment/{held['id']}", json=lapsed)).status_code == 200
    taker = appointment(held["start"], held["end"], "pending", patient="Patient/pat2")
    the_appointment(await book(client, ("appointment-resource", taker)))  # takes the claims over
    assert await sweep_expired_holds(server.repository) == [held["id"]]
    assert (await read(client, held["id"]))["status"] == "cancelled"


async def test_hold_background_sweeper_cancels_expired_hold(tmp_path: Path) -> None:
    async with running("sqlite", tmp_path, hold_seconds=1) as server:  # swept every 0.25 s
        client = server.client
        held = the_appointment(await hold(client, ref((await first_proposal(client))["id"])))
        for _ in range(50):
            if (await read(client, held["id"]))["status"] == "cancelled":
                break
            await asyncio.sleep(0.1)
        assert (await read(client, held["id"]))["status"] == "cancelled"
        taker = appointment(held["start"], held["end"], "pending", patient="Patient/pat2")
        the_appointment(await book(client, ("appointment-resource", taker)))


async def test_hold_book_rest_transaction_concurrent_same_time_exactly_one_wins(
    server: Server,
) -> None:
    """50 writers of one time (dr + room 09:00-09:30) by every path: exactly one wins, and no
    minute of any Schedule is claimed or booked twice (SCHEDULING.md "Never double-book")."""
    client = server.client
    actors = ("PractitionerRole/dr", "Location/room")

    def wanted(n: int, status: str) -> dict[str, Any]:
        patient = f"Patient/pat{'' if n % 4 == 0 else n % 4 + 1}"
        return appointment(
            at("09:00"), at("09:30"), status, actors=actors, patient=patient, comment=f"w{n}"
        )

    async def write(n: int) -> httpx.Response:
        kind = n % 4
        if kind == 0:
            return await hold(client, ("appointment-resource", wanted(n, "proposed")))
        if kind == 1:
            return await book(client, ("appointment-resource", wanted(n, "pending")))
        if kind == 2:
            return await client.post("/Appointment", json=wanted(n, "booked"))
        entry = {
            "resource": wanted(n, "booked"),
            "request": {"method": "POST", "url": "Appointment"},
        }
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [entry]}
        return await client.post("", json=bundle)

    responses = await asyncio.gather(*(write(n) for n in range(50)))
    statuses = Counter(r.status_code for r in responses)
    assert statuses[409] == 49 and sum(statuses.values()) == 50, statuses
    for response in responses:
        if response.status_code == 409:
            issue = response.json()["issue"][0]
            assert issue["details"]["coding"][0]["code"] == "slot-unavailable", issue
    assert await count(client, "Appointment", status="booked,pending") == 1
    await assert_never_double_booked(server)


async def assert_never_double_booked(server: Server) -> None:
    """Every live claim key has one owner (the store's guarantee) that is a holding Appointment
    claiming exactly its own minutes; and no Schedule minute is in two holding Appointments."""
    claims = [
        claim
        for schedule in ("s-dr", "s-dr2", "s-room", "s-room2")
        for claim in await server.store.claims_in(f"Schedule/{schedule}", 0, 2**40)
    ]
    assert len({c.key for c in claims}) == len(claims)
    minutes: Counter[tuple[str, int]] = Counter()
    r = await server.client.get(
        "/Appointment", params={"status": "booked,pending", "_count": "1000"}
    )
    by_actor = {
        "PractitionerRole/dr": "s-dr",
        "PractitionerRole/dr2": "s-dr2",
        "Location/room": "s-room",
        "Location/room2": "s-room2",
    }
    owners = set()
    for entry in r.json().get("entry", []):
        appt = entry["resource"]
        owners.add(f"Appointment/{appt['id']}")
        first = parse_instant(appt["start"]) // 60_000_000
        last = parse_instant(appt["end"]) // 60_000_000
        for p in appt["participant"]:
            schedule = by_actor.get(p["actor"]["reference"])
            for minute in range(first, last) if schedule else ():
                minutes[(schedule, minute)] += 1
    assert all(n == 1 for n in minutes.values()), minutes.most_common(3)
    assert {c.owner for c in claims} <= owners
    assert {(c.key.scope.split("/")[1], c.key.quantum) for c in claims} == set(minutes)
