"""The clinic and helpers shared by the `$hold`/`$book` suites (test_hold.py, test_book.py,
test_hold_expiry.py) and the booking, `$find` and workflow suites beside them: two
practitioners and two rooms open 09:00-12:00 UTC on weekdays, four patients; Parameters
bodies, whole-response assertions (SCHEDULING.md "Errors"), reads and counts; and the clinic
served on one engine with the app at hand (`running`).

The `clinic` fixture is imported by name where it is used
(`from tests.api.booking_helpers import clinic as clinic`), so that it never becomes the
default `clinic` of the other modules of tests/api, which have clinics of their own."""

from __future__ import annotations

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
from operations.scheduling.holds import SWEEPER
from tests.conftest import make_settings
from tests.engines import make_store

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
