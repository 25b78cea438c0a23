"""Search results over HTTP, on every engine: `_include`/`_revinclude` with `:iterate` and `*`,
`_summary` modes, `_count=0`, `_total=estimate`, chaining with a type modifier, unknown and
ambiguous chains, and keyset paging while the data changes (R4 search.html#include, #summary,
#chaining, #count)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

BASE = "http://test/fhir"


async def put(client: httpx.AsyncClient, resource: dict[str, Any]) -> dict[str, Any]:
    r = await client.put(f"/{resource['resourceType']}/{resource['id']}", json=resource)
    assert r.status_code in (200, 201), r.text
    return dict(r.json())


async def search(client: httpx.AsyncClient, query: str) -> dict[str, Any]:
    r = await client.get(f"/{query}")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["resourceType"] == "Bundle" and body["type"] == "searchset"
    return dict(body)


def ids(bundle: dict[str, Any], mode: str = "match") -> list[str]:
    """`Type/id` of the entries of `mode`, in bundle order."""
    return [
        f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in bundle.get("entry", [])
        if e["search"]["mode"] == mode
    ]


def link(bundle: dict[str, Any], relation: str) -> str | None:
    found = [x["url"] for x in bundle["link"] if x["relation"] == relation]
    return found[0].removeprefix(BASE) if found else None


def appointment(aid: str, *actors: str, status: str = "booked") -> dict[str, Any]:
    return {
        "resourceType": "Appointment",
        "id": aid,
        "status": status,
        "start": "2026-12-01T09:00:00Z",
        "end": "2026-12-01T09:30:00Z",
        "participant": [{"actor": {"reference": a}, "status": "accepted"} for a in actors],
    }


@pytest.fixture
async def clinic(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """Two practitioners in two roles, a patient, a location, two appointments (appt1 with
    role pr1, appt2 with role pr2) and a response to appt1."""
    for did in ("d1", "d2"):
        await put(client, {"resourceType": "Practitioner", "id": did, "name": [{"family": did}]})
        await put(
            client,
            {
                "resourceType": "PractitionerRole",
                "id": f"pr{did[1]}",
                "practitioner": {"reference": f"Practitioner/{did}"},
            },
        )
    await put(
        client,
        {
            "resourceType": "Patient",
            "id": "pa",
            "text": {
                "status": "generated",
                "div": '<div xmlns="http://www.w3.org/1999/xhtml">A</div>',
            },
            "name": [{"family": "Able"}],
            "gender": "female",
            "contact": [{"name": {"family": "Kin"}}],
        },
    )
    await put(client, {"resourceType": "Location", "id": "loc1", "name": "Room 1"})
    await put(client, appointment("appt1", "PractitionerRole/pr1", "Patient/pa", "Location/loc1"))
    await put(client, appointment("appt2", "PractitionerRole/pr2", status="proposed"))
    await put(
        client,
        {
            "resourceType": "AppointmentResponse",
            "id": "ar1",
            "appointment": {"reference": "Appointment/appt1"},
            "actor": {"reference": "Patient/pa"},
            "participantStatus": "accepted",
        },
    )
    return client


ACTORS = ["Location/loc1", "Patient/pa", "PractitionerRole/pr1"]


@pytest.mark.parametrize(
    ("query", "matches", "included"),
    [
        ("Appointment?_id=appt1&_include=Appointment:actor", ["Appointment/appt1"], ACTORS),
        (
            "Appointment?_id=appt1&_include=Appointment:actor"
            "&_include:iterate=PractitionerRole:practitioner",
            ["Appointment/appt1"],
            sorted([*ACTORS, "Practitioner/d1"]),
        ),
        (
            "Appointment?_id=appt1&_include=Appointment:actor:PractitionerRole"
            "&_include:iterate=PractitionerRole:practitioner",
            ["Appointment/appt1"],
            ["Practitioner/d1", "PractitionerRole/pr1"],
        ),
        ("Appointment?_id=appt1&_include=*", ["Appointment/appt1"], ACTORS),
        (
            "Patient?_id=pa&_revinclude=Appointment:patient",
            ["Patient/pa"],
            ["Appointment/appt1"],
        ),
        (
            "Patient?_id=pa&_revinclude=Appointment:patient"
            "&_revinclude:iterate=AppointmentResponse:appointment",
            ["Patient/pa"],
            ["Appointment/appt1", "AppointmentResponse/ar1"],
        ),
        (
            "Patient?_id=pa&_revinclude=Appointment:patient"
            "&_revinclude=AppointmentResponse:appointment",
            ["Patient/pa"],
            ["Appointment/appt1"],
        ),
        ("Patient?_id=pa&_revinclude=Appointment:*", ["Patient/pa"], ["Appointment/appt1"]),
        (
            "Patient?_id=pa&_revinclude=AppointmentResponse:actor:Patient",
            ["Patient/pa"],
            ["AppointmentResponse/ar1"],
        ),
        ("Patient?_id=pa&_revinclude=AppointmentResponse:actor:Practitioner", ["Patient/pa"], []),
        (
            "Practitioner?_id=d1&_revinclude=PractitionerRole:practitioner"
            "&_revinclude:iterate=Appointment:actor",
            ["Practitioner/d1"],
            ["Appointment/appt1", "PractitionerRole/pr1"],
        ),
    ],
)
async def test_search_include_revinclude_adds_expected_include_entries(
    clinic: httpx.AsyncClient, query: str, matches: list[str], included: list[str]
) -> None:
    bundle = await search(clinic, query)
    assert ids(bundle) == matches
    assert sorted(ids(bundle, "include")) == included


async def test_search_revinclude_wildcard_source_returns_400(clinic: httpx.AsyncClient) -> None:
    r = await clinic.get("/Patient?_revinclude=*")
    assert r.status_code == 400
    issue = r.json()["issue"][0]
    assert issue["code"] == "not-supported" and issue["expression"] == ["_revinclude"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("Appointment?actor:PractitionerRole.practitioner=Practitioner/d1", ["appt1"]),
        ("Appointment?actor:PractitionerRole.practitioner=d1,d2", ["appt1", "appt2"]),
        ("Appointment?actor:PractitionerRole.practitioner=d2&status=booked", []),
        ("Appointment?actor:PractitionerRole.practitioner:Practitioner=d2", ["appt2"]),
        ("Appointment?actor:Patient.gender=female", ["appt1"]),
    ],
)
async def test_search_chain_with_type_modifier_matches_expected_ids(
    clinic: httpx.AsyncClient, query: str, expected: list[str]
) -> None:
    bundle = await search(clinic, query)
    assert sorted(ids(bundle)) == [f"Appointment/{i}" for i in expected]


async def test_search_chain_ambiguous_without_type_returns_400(clinic: httpx.AsyncClient) -> None:
    r = await clinic.get("/Appointment?actor.name=Room")
    assert r.status_code == 400
    issue = r.json()["issue"][0]
    assert issue["code"] == "invalid"
    assert "ambiguous" in issue["diagnostics"]


@pytest.mark.parametrize("param", ["actor:PractitionerRole.nonsense", "actor.nonsense"])
async def test_search_chain_unknown_parameter_ignored_then_400_when_strict(
    clinic: httpx.AsyncClient, param: str
) -> None:
    bundle = await search(clinic, f"Appointment?{param}=x&status=booked")
    assert ids(bundle) == ["Appointment/appt1"]
    assert "nonsense" not in bundle["link"][0]["url"]
    assert "status=booked" in bundle["link"][0]["url"]
    r = await clinic.get(f"/Appointment?{param}=x", headers={"Prefer": "handling=strict"})
    assert r.status_code == 400
    assert r.json()["issue"][0]["code"] == "not-supported"


def subsetted(resource: dict[str, Any]) -> bool:
    return any(t.get("code") == "SUBSETTED" for t in resource.get("meta", {}).get("tag", []))


async def test_search_summary_modes_subset_each_entry(clinic: httpx.AsyncClient) -> None:
    text = (await search(clinic, "Patient?_id=pa&_summary=text"))["entry"][0]["resource"]
    assert set(text) == {"resourceType", "id", "meta", "text"}
    assert subsetted(text)
    data = (await search(clinic, "Patient?_id=pa&_summary=data"))["entry"][0]["resource"]
    assert "text" not in data and data["contact"] == [{"name": {"family": "Kin"}}]
    assert subsetted(data)
    true = (await search(clinic, "Patient?_id=pa&_summary=true"))["entry"][0]["resource"]
    assert true["name"] == [{"family": "Able"}] and true["gender"] == "female"
    assert "text" not in true and "contact" not in true
    assert subsetted(true)
    full = (await search(clinic, "Patient?_id=pa&_summary=false"))["entry"][0]["resource"]
    assert "contact" in full and "text" in full and not subsetted(full)


async def test_search_count_zero_returns_total_without_entries(clinic: httpx.AsyncClient) -> None:
    bundle = await search(clinic, "Appointment?_count=0")
    assert bundle["total"] == 2
    assert "entry" not in bundle
    booked = await search(clinic, "Appointment?status=booked&_count=0")
    assert booked["total"] == 1 and "entry" not in booked


async def test_search_total_estimate_reports_a_total_with_paging(
    clinic: httpx.AsyncClient,
) -> None:
    bundle = await search(clinic, "Practitioner?_count=1&_total=estimate")
    assert bundle["total"] == 2
    assert len(ids(bundle)) == 1
    assert link(bundle, "next") is not None


async def test_search_paging_newest_first_survives_a_create_between_pages(
    client: httpx.AsyncClient,
) -> None:
    for i in range(5):
        await put(client, {"resourceType": "Patient", "id": f"pg{i}"})
    bundle = await search(client, "Patient?_count=2&_sort=-_lastUpdated")
    pages = [ids(bundle)]
    await put(client, {"resourceType": "Patient", "id": "pg-late"})
    while (nxt := link(bundle, "next")) is not None:
        bundle = await search(client, nxt.removeprefix("/"))
        pages.append(ids(bundle))
    seen = [rid for page in pages for rid in page]
    assert seen == [f"Patient/pg{i}" for i in (4, 3, 2, 1, 0)]
    assert [len(p) for p in pages] == [2, 2, 1]
    fresh = await search(client, "Patient?_count=2&_sort=-_lastUpdated")
    assert ids(fresh) == ["Patient/pg-late", "Patient/pg4"]
