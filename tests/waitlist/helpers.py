"""Shared pieces of the waitlist suites: a clinic where Dr. Smith sees one patient a day
(10:00-10:30 New York time), four patients with email, waitlist entries, reads."""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson

from fhir_server.repository import Repository
from fhir_server.search.query import StoreQuery, TokenCondition, TokenValue
from tests.subscriptions.helpers import appointment

NY = {"url": "http://hl7.org/fhir/StructureDefinition/timezone", "valueCode": "America/New_York"}
BASE = "https://fhir-scheduling.example.org/StructureDefinition"
OFFER_URL = f"{BASE}/waitlist-offer"
REPLACES_URL = f"{BASE}/waitlist-replaces"
DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
PATIENTS = ("ann", "bob", "cat", "dan")


def day(ahead: int = 5) -> str:
    """A date `ahead` days from today (New York), as `YYYY-MM-DD`."""
    today = dt.datetime.now(dt.UTC).astimezone(dt.timezone(dt.timedelta(hours=-5))).date()
    return (today + dt.timedelta(days=ahead)).isoformat()


def ny(date: str, hhmm: str) -> str:
    """A New York wall time as a UTC instant (`2026-12-10`, `10:00`)."""
    from zoneinfo import ZoneInfo

    local = dt.datetime.fromisoformat(f"{date}T{hhmm}:00").replace(
        tzinfo=ZoneInfo("America/New_York")
    )
    return local.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def clinic(hours: tuple[str, str] = ("10:00:00", "10:30:00")) -> list[dict[str, Any]]:
    """Dr. Smith (PractitionerRole `dr`, Schedule `s-dr`), open `hours` every day in New
    York, and four patients with email."""
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
            "availableTime": [
                {"daysOfWeek": DAYS, "availableStartTime": hours[0], "availableEndTime": hours[1]}
            ],
        },
        {
            "resourceType": "Schedule",
            "id": "s-dr",
            "extension": [NY],
            "actor": [{"reference": "PractitionerRole/dr"}],
        },
    ]
    for pid in PATIENTS:
        resources.append(
            {
                "resourceType": "Patient",
                "id": pid,
                "name": [{"given": [pid.title()], "family": "Lee"}],
                "telecom": [{"system": "email", "value": f"{pid}@example.org"}],
            }
        )
    return resources


async def seed(repo: Repository, hours: tuple[str, str] = ("10:00:00", "10:30:00")) -> None:
    for resource in clinic(hours):
        await repo.update(resource["resourceType"], resource["id"], resource)


def visit(patient: str, start: str, end: str, status: str = "booked") -> dict[str, Any]:
    """An Appointment of `patient` with Dr. Smith."""
    return appointment(start, end, "PractitionerRole/dr", f"Patient/{patient}", status)


def entry(patient: str, date: str, priority: int | None = None, **more: Any) -> dict[str, Any]:
    """A waitlist entry of `patient` for Dr. Smith, any time on `date` (New York)."""
    body: dict[str, Any] = {
        "resourceType": "Appointment",
        "status": "waitlist",
        "participant": [
            {"actor": {"reference": "PractitionerRole/dr"}, "status": "needs-action"},
            {"actor": {"reference": f"Patient/{patient}"}, "status": "accepted"},
        ],
        "requestedPeriod": [{"start": ny(date, "00:00"), "end": ny(date, "23:59")}],
        **more,
    }
    if priority is not None:
        body["priority"] = priority
    return body


async def read(repo: Repository, rtype: str, id: str) -> dict[str, Any]:
    stored = await repo.lookup.read(rtype, id)
    assert stored is not None and stored.content is not None, f"{rtype}/{id}"
    body: dict[str, Any] = orjson.loads(stored.content)
    return body


async def offers(repo: Repository) -> list[dict[str, Any]]:
    """Every Appointment carrying `waitlist-offer`, by start then id."""
    query = StoreQuery(
        "Appointment",
        (
            TokenCondition(
                "status",
                (
                    TokenValue("*", "pending"),
                    TokenValue("*", "booked"),
                    TokenValue("*", "cancelled"),
                ),
            ),
        ),
    )
    found = await repo.lookup.search_all(query)
    out = [a for a in found if any(e.get("url") == OFFER_URL for e in a.get("extension") or [])]
    return sorted(out, key=lambda a: (a.get("start", ""), a["id"]))


def offered_to(offer: dict[str, Any]) -> str:
    """The entry id an offer names."""
    [ext] = [e for e in offer["extension"] if e["url"] == OFFER_URL]
    return str(ext["valueReference"]["reference"]).split("/")[1]
