"""Search over ASGI: every parameter type, modifiers, prefixes, chaining, _has, includes,
sorting, paging, _summary/_elements, _total, unknown parameters (R4 search.html)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest


async def put(client: httpx.AsyncClient, resource: dict[str, Any]) -> dict[str, Any]:
    r = await client.put(f"/{resource['resourceType']}/{resource['id']}", json=resource)
    assert r.status_code in (200, 201), r.text
    return dict(r.json())


def ids(bundle: dict[str, Any], mode: str = "match") -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == mode]


@pytest.fixture
async def people(client: httpx.AsyncClient) -> httpx.AsyncClient:
    await put(client, {"resourceType": "Organization", "id": "org1", "name": "Acme Clinic"})
    await put(
        client,
        {
            "resourceType": "Practitioner",
            "id": "dr1",
            "name": [{"family": "Careful", "given": ["Adam"]}],
        },
    )
    await put(
        client,
        {
            "resourceType": "Patient",
            "id": "p1",
            "gender": "male",
            "birthDate": "1974-12-25",
            "name": [{"family": "Chalmers", "given": ["Peter", "James"]}],
            "identifier": [{"system": "urn:mrn", "value": "111"}],
            "managingOrganization": {"reference": "Organization/org1"},
            "generalPractitioner": [{"reference": "Practitioner/dr1"}],
            "active": True,
        },
    )
    await put(
        client,
        {
            "resourceType": "Patient",
            "id": "p2",
            "gender": "female",
            "birthDate": "1990-06",
            "name": [{"family": "Müller", "given": ["Zoë"]}],
            "identifier": [{"system": "urn:other", "value": "111"}],
            "active": False,
        },
    )
    await put(
        client,
        {
            "resourceType": "Patient",
            "id": "p3",
            "gender": "female",
            "birthDate": "2001-01-01",
            "name": [{"family": "Chalmerson", "given": ["Anna"]}],
            "managingOrganization": {"reference": "Organization/org1"},
        },
    )
    return client


async def search(client: httpx.AsyncClient, query: str) -> dict[str, Any]:
    r = await client.get(f"/{query}")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["resourceType"] == "Bundle" and body["type"] == "searchset"
    return dict(body)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("Patient?family=chalm", ["p1", "p3"]),
        ("Patient?family:exact=Chalmers", ["p1"]),
        ("Patient?family:exact=chalmers", []),
        ("Patient?family:contains=ALMER", ["p1", "p3"]),
        ("Patient?name=muller", ["p2"]),
        ("Patient?given=zoe", ["p2"]),
        ("Patient?family=chalmers,muller", ["p1", "p2", "p3"]),
        ("Patient?gender=female", ["p2", "p3"]),
        ("Patient?gender:not=female", ["p1"]),
        ("Patient?identifier=urn:mrn|111", ["p1"]),
        ("Patient?identifier=111", ["p1", "p2"]),
        ("Patient?identifier=urn:other|", ["p2"]),
        ("Patient?identifier=|111", []),
        ("Patient?active=true", ["p1"]),
        ("Patient?active:missing=true", ["p3"]),
        ("Patient?active:missing=false", ["p1", "p2"]),
        ("Patient?birthdate=1974-12-25", ["p1"]),
        ("Patient?birthdate=1974", ["p1"]),
        ("Patient?birthdate=ge1990-01-01", ["p2", "p3"]),
        ("Patient?birthdate=lt1990-06-15", ["p1", "p2"]),
        ("Patient?birthdate=gt1990-06-15", ["p2", "p3"]),
        ("Patient?birthdate=sa1990-06-30", ["p3"]),
        ("Patient?birthdate=eb1990-06-01", ["p1"]),
        ("Patient?birthdate=ne1974-12-25", ["p2", "p3"]),
        ("Patient?birthdate=ge1990&birthdate=le2000", ["p2"]),
        ("Patient?organization=Organization/org1", ["p1", "p3"]),
        ("Patient?organization=org1", ["p1", "p3"]),
        ("Patient?general-practitioner:Practitioner=dr1", ["p1"]),
        ("Patient?organization.name=acme", ["p1", "p3"]),
        ("Patient?organization:Organization.name=nomatch", []),
        ("Patient?_id=p1,p3", ["p1", "p3"]),
        ("Organization?_has:Patient:organization:gender=female", ["org1"]),
        ("Practitioner?_has:Patient:general-practitioner:family=nobody", []),
    ],
)
async def test_search_parameter_matches_expected_ids(
    people: httpx.AsyncClient, query: str, expected: list[str]
) -> None:
    bundle = await search(people, query)
    assert sorted(ids(bundle)) == expected


async def test_search_sort_descending_orders_by_family(people: httpx.AsyncClient) -> None:
    bundle = await search(people, "Patient?_sort=-family")
    assert ids(bundle) == ["p2", "p3", "p1"]
    asc = await search(people, "Patient?_sort=birthdate")
    assert ids(asc) == ["p1", "p2", "p3"]


async def test_search_paging_follows_next_and_previous_without_gaps(
    client: httpx.AsyncClient,
) -> None:
    for i in range(7):
        await put(client, {"resourceType": "Patient", "id": f"x{i}", "name": [{"family": f"F{i}"}]})
    seen: list[str] = []
    bundle = await search(client, "Patient?_count=3&_sort=family")
    pages = [ids(bundle)]
    while True:
        nxt = [link for link in bundle["link"] if link["relation"] == "next"]
        if not nxt:
            break
        r = await client.get(nxt[0]["url"].replace("http://test/fhir", ""))
        bundle = r.json()
        pages.append(ids(bundle))
    for page in pages:
        seen.extend(page)
    assert seen == [f"x{i}" for i in range(7)]
    assert [len(p) for p in pages] == [3, 3, 1]
    prev = next(link for link in bundle["link"] if link["relation"] == "previous")["url"]
    back = (await client.get(prev.replace("http://test/fhir", ""))).json()
    assert ids(back) == ["x3", "x4", "x5"]


async def test_search_total_accurate_counts_all_matches(client: httpx.AsyncClient) -> None:
    for i in range(5):
        await put(client, {"resourceType": "Patient", "id": f"t{i}", "gender": "other"})
    bundle = await search(client, "Patient?gender=other&_count=2&_total=accurate")
    assert bundle["total"] == 5
    assert len(ids(bundle)) == 2
    count_only = await search(client, "Patient?gender=other&_summary=count")
    assert count_only["total"] == 5
    assert "entry" not in count_only


async def test_search_include_and_revinclude_add_include_entries(people: httpx.AsyncClient) -> None:
    bundle = await search(people, "Patient?_id=p1&_include=Patient:organization")
    assert ids(bundle) == ["p1"]
    assert ids(bundle, "include") == ["org1"]
    rev = await search(people, "Organization?_id=org1&_revinclude=Patient:organization")
    assert ids(rev) == ["org1"]
    assert sorted(ids(rev, "include")) == ["p1", "p3"]


async def test_search_unknown_parameter_is_ignored_and_left_out_of_self(
    people: httpx.AsyncClient,
) -> None:
    bundle = await search(people, "Patient?gender=male&foo=bar")
    assert ids(bundle) == ["p1"]
    self_link = bundle["link"][0]["url"]
    assert "foo" not in self_link and "gender=male" in self_link


async def test_search_unknown_parameter_strict_returns_400(people: httpx.AsyncClient) -> None:
    r = await people.get("/Patient?foo=bar", headers={"Prefer": "handling=strict"})
    assert r.status_code == 400
    assert r.json()["issue"][0]["code"] == "not-supported"


async def test_search_bad_date_returns_400_with_parameter_named(people: httpx.AsyncClient) -> None:
    r = await people.get("/Patient?birthdate=notadate")
    assert r.status_code == 400
    issue = r.json()["issue"][0]
    assert issue["code"] == "invalid"
    assert issue["expression"] == ["birthdate"]
    assert "birthdate" in issue["diagnostics"]


async def test_search_post_form_equals_get(people: httpx.AsyncClient) -> None:
    r = await people.post("/Patient/_search", data={"family": "chalm"})
    assert r.status_code == 200
    assert sorted(ids(r.json())) == ["p1", "p3"]


async def test_search_summary_true_marks_subsetted(people: httpx.AsyncClient) -> None:
    bundle = await search(people, "Patient?_id=p1&_elements=gender")
    resource = bundle["entry"][0]["resource"]
    assert resource["gender"] == "male"
    assert "name" not in resource
    assert any(t["code"] == "SUBSETTED" for t in resource["meta"]["tag"])


async def test_search_sees_write_immediately(client: httpx.AsyncClient) -> None:
    assert ids(await search(client, "Patient?family=fresh")) == []
    await put(client, {"resourceType": "Patient", "id": "f", "name": [{"family": "Fresh"}]})
    assert ids(await search(client, "Patient?family=fresh")) == ["f"]
    await client.delete("/Patient/f")
    assert ids(await search(client, "Patient?family=fresh")) == []


async def test_search_compartment_returns_only_patient_resources(client: httpx.AsyncClient) -> None:
    for pid in ("a", "b"):
        await put(client, {"resourceType": "Patient", "id": pid})
    await put(
        client,
        {
            "resourceType": "Appointment",
            "id": "appt-a",
            "status": "booked",
            "start": "2026-12-01T09:00:00Z",
            "end": "2026-12-01T09:30:00Z",
            "participant": [{"actor": {"reference": "Patient/a"}, "status": "accepted"}],
        },
    )
    await put(
        client,
        {
            "resourceType": "Appointment",
            "id": "appt-b",
            "status": "booked",
            "start": "2026-12-01T10:00:00Z",
            "end": "2026-12-01T10:30:00Z",
            "participant": [{"actor": {"reference": "Patient/b"}, "status": "accepted"}],
        },
    )
    bundle = await search(client, "Patient/a/Appointment")
    assert ids(bundle) == ["appt-a"]
    by_param = await search(client, "Appointment?patient=Patient/b&date=ge2026-12-01")
    assert ids(by_param) == ["appt-b"]
    everything = (await client.get("/Patient/a/$everything")).json()
    assert sorted(e["resource"]["id"] for e in everything["entry"]) == ["a", "appt-a"]
