"""Shared pieces of the reminder suites: repositories on every engine with chosen settings,
a clock tests move, a clinic with a Patient who has an email and a mobile number."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from fhir_server.app import build_repositories
from fhir_server.repository import Repository, RepositoryFactory
from resources.fhir_dates import parse_instant
from tests.conftest import TEST_BASE_URL, make_settings
from tests.engines import ALL_ENGINES, make_store
from tests.subscriptions.helpers import appointment

NY = {"url": "http://hl7.org/fhir/StructureDefinition/timezone", "valueCode": "America/New_York"}


class Clock:
    """A clock the test sets (µs UTC)."""

    def __init__(self, iso: str) -> None:
        self.now = parse_instant(iso)

    def __call__(self) -> int:
        return self.now

    def set(self, iso: str) -> None:
        self.now = parse_instant(iso)


Factories = Callable[..., Any]


@pytest.fixture(params=ALL_ENGINES)
async def engine(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Callable[..., Any]]:
    """`make(**settings) -> RepositoryFactory` on a fresh started store of each engine."""
    stores: list[Any] = []

    async def make(**extra: Any) -> RepositoryFactory:
        store, drop = make_store(request.param, tmp_path)
        await store.start()
        stores.append((store, drop))
        return build_repositories(store, make_settings(tmp_path, base_url=TEST_BASE_URL, **extra))

    yield make
    for store, drop in stores:
        if drop is not None:
            await drop()
        await store.close()


async def seed(
    repo: Repository, telecom: list[dict[str, Any]] | None = None, **patient: Any
) -> None:
    """Dr. Smith (PractitionerRole `dr` at Location `clinic`, New York hours), Patient `ann`."""
    resources: list[dict[str, Any]] = [
        {
            "resourceType": "Practitioner",
            "id": "smith",
            "name": [{"prefix": ["Dr."], "family": "Smith"}],
        },
        {"resourceType": "Location", "id": "clinic", "name": "Main Street Clinic"},
        {
            "resourceType": "PractitionerRole",
            "id": "dr",
            "extension": [NY],
            "practitioner": {"reference": "Practitioner/smith"},
            "location": [{"reference": "Location/clinic"}],
        },
        {
            "resourceType": "Schedule",
            "id": "s-dr",
            "extension": [NY],
            "actor": [{"reference": "PractitionerRole/dr"}],
        },
        {
            "resourceType": "Patient",
            "id": "ann",
            "name": [{"given": ["Ann"], "family": "Lee"}],
            "telecom": telecom
            if telecom is not None
            else [
                {"system": "phone", "use": "mobile", "value": "+15550001111", "rank": 2},
                {"system": "email", "value": "ann@example.org", "rank": 1},
            ],
            **patient,
        },
    ]
    for resource in resources:
        await repo.update(resource["resourceType"], resource["id"], resource)


def booking(start: str, end: str, status: str = "booked") -> dict[str, Any]:
    """Ann with Dr. Smith (`PractitionerRole/dr`)."""
    return appointment(start, end, "PractitionerRole/dr", "Patient/ann", status)


SMITH_WITH_EMAIL = {
    "resourceType": "Practitioner",
    "id": "smith",
    "name": [{"prefix": ["Dr."], "family": "Smith"}],
    "telecom": [{"system": "email", "value": "smith@example.org"}],
}
"""Dr. Smith with an email (notices reach her)."""


async def reminders(repo: Repository, appointment_id: str) -> dict[str, dict[str, Any]]:
    """The appointment's CommunicationRequests by offset (`identifier` value)."""
    from fhir_server.search.query import ReferenceCondition, ReferenceValue, StoreQuery

    ref = ReferenceValue(ref_type="Appointment", ref_id=appointment_id)
    query = StoreQuery("CommunicationRequest", (ReferenceCondition("based-on", (ref,)),), count=100)
    page = await repo.lookup.search(query)
    out = {}
    for stored in page.resources:
        body = orjson.loads(stored.content or b"{}")
        if body.get("identifier"):  # a reminder (notices have no offset)
            out[body["identifier"][0]["value"]] = body
    return out


async def notices(repo: Repository, appointment_id: str) -> list[dict[str, Any]]:
    """The appointment's confirmation and change notices, oldest first."""
    from fhir_server.search.query import ReferenceCondition, ReferenceValue, StoreQuery

    ref = ReferenceValue(ref_type="Appointment", ref_id=appointment_id)
    query = StoreQuery("CommunicationRequest", (ReferenceCondition("based-on", (ref,)),), count=100)
    page = await repo.lookup.search(query)
    found = [orjson.loads(s.content or b"{}") for s in page.resources]
    return sorted(
        (b for b in found if not b.get("identifier")), key=lambda b: b["occurrenceDateTime"]
    )
