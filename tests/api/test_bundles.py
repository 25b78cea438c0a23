"""batch and transaction Bundles over ASGI (R4 http.html#transaction)."""

from __future__ import annotations

from typing import Any

import httpx


def tx(entries: list[dict[str, Any]], kind: str = "transaction") -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": entries}


async def count(client: httpx.AsyncClient, query: str) -> int:
    return int((await client.get(f"/{query}&_total=accurate")).json()["total"])


async def test_transaction_urn_uuid_references_are_resolved(client: httpx.AsyncClient) -> None:
    bundle = tx(
        [
            {
                "fullUrl": "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a",
                "resource": {"resourceType": "Patient", "name": [{"family": "Tx"}]},
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "fullUrl": "urn:uuid:88f151c0-a954-468a-88bd-5ae15c08e059",
                "resource": {
                    "resourceType": "Appointment",
                    "status": "booked",
                    "start": "2026-12-01T09:00:00Z",
                    "end": "2026-12-01T09:30:00Z",
                    "participant": [
                        {
                            "actor": {"reference": "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"},
                            "status": "accepted",
                        }
                    ],
                },
                "request": {"method": "POST", "url": "Appointment"},
            },
        ]
    )
    r = await client.post("", json=bundle)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["type"] == "transaction-response"
    assert [e["response"]["status"] for e in body["entry"]] == ["201 Created", "201 Created"]
    patient_id = body["entry"][0]["resource"]["id"]
    appointment = body["entry"][1]["resource"]
    assert appointment["participant"][0]["actor"]["reference"] == f"Patient/{patient_id}"
    found = (await client.get(f"/Appointment?patient={patient_id}")).json()
    assert found["total"] == 1


async def test_transaction_failing_entry_leaves_no_trace(client: httpx.AsyncClient) -> None:
    await client.put(
        "/Patient/keep", json={"resourceType": "Patient", "id": "keep", "gender": "male"}
    )
    versions = (await client.get("/_history?_count=0")).json()["total"]
    bundle = tx(
        [
            {
                "resource": {"resourceType": "Patient", "name": [{"family": "Ghost"}]},
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "resource": {"resourceType": "Patient", "id": "keep", "gender": "female"},
                "request": {"method": "PUT", "url": "Patient/keep"},
            },
            {"request": {"method": "DELETE", "url": "Patient/keep"}},
            {
                "resource": {"resourceType": "Patient", "birthDate": "not-a-date"},
                "request": {"method": "POST", "url": "Patient"},
            },
        ]
    )
    r = await client.post("", json=bundle)
    assert r.status_code == 400
    outcome = r.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert "Bundle.entry[3]" in outcome["issue"][0]["diagnostics"]
    assert await count(client, "Patient?family=ghost") == 0
    kept = (await client.get("/Patient/keep")).json()
    assert kept["gender"] == "male" and kept["meta"]["versionId"] == "1"
    history = (await client.get("/_history?_count=0")).json()
    assert history["total"] == versions


async def test_transaction_if_match_conflict_rolls_back_everything(
    client: httpx.AsyncClient,
) -> None:
    await client.put("/Patient/v", json={"resourceType": "Patient", "id": "v"})
    bundle = tx(
        [
            {
                "resource": {"resourceType": "Patient", "name": [{"family": "Created"}]},
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "resource": {"resourceType": "Patient", "id": "v", "gender": "male"},
                "request": {"method": "PUT", "url": "Patient/v", "ifMatch": 'W/"9"'},
            },
        ]
    )
    r = await client.post("", json=bundle)
    assert r.status_code == 412
    assert await count(client, "Patient?family=created") == 0


async def test_transaction_conditional_create_and_reference(client: httpx.AsyncClient) -> None:
    await client.put(
        "/Patient/known",
        json={
            "resourceType": "Patient",
            "id": "known",
            "identifier": [{"system": "urn:mrn", "value": "K1"}],
        },
    )
    bundle = tx(
        [
            {
                "resource": {
                    "resourceType": "Patient",
                    "identifier": [{"system": "urn:mrn", "value": "K1"}],
                },
                "request": {
                    "method": "POST",
                    "url": "Patient",
                    "ifNoneExist": "identifier=urn:mrn|K1",
                },
            },
            {
                "resource": {
                    "resourceType": "Appointment",
                    "status": "proposed",
                    "participant": [
                        {
                            "actor": {"reference": "Patient?identifier=urn:mrn|K1"},
                            "status": "needs-action",
                        }
                    ],
                },
                "request": {"method": "POST", "url": "Appointment"},
            },
        ]
    )
    r = await client.post("", json=bundle)
    assert r.status_code == 200, r.text
    entries = r.json()["entry"]
    assert entries[0]["response"]["status"] == "200 OK"
    assert entries[1]["resource"]["participant"][0]["actor"]["reference"] == "Patient/known"


async def test_batch_failures_are_per_entry(client: httpx.AsyncClient) -> None:
    bundle = tx(
        [
            {
                "resource": {"resourceType": "Patient", "name": [{"family": "Ok"}]},
                "request": {"method": "POST", "url": "Patient"},
            },
            {"request": {"method": "GET", "url": "Patient/missing"}},
            {
                "resource": {"resourceType": "Patient", "birthDate": "1990-13-45"},
                "request": {"method": "POST", "url": "Patient"},
            },
            {"request": {"method": "GET", "url": "Patient?family=ok"}},
        ],
        kind="batch",
    )
    r = await client.post("", json=bundle)
    assert r.status_code == 200
    statuses = [e["response"]["status"] for e in r.json()["entry"]]
    assert statuses == ["201 Created", "404", "400", "200 OK"]
    assert r.json()["entry"][1]["response"]["outcome"]["issue"][0]["code"] == "not-found"
    assert r.json()["entry"][3]["resource"]["total"] == 1


async def test_bundle_of_wrong_type_returns_400(client: httpx.AsyncClient) -> None:
    r = await client.post("", json={"resourceType": "Bundle", "type": "collection"})
    assert r.status_code == 400
    assert r.json()["issue"][0]["expression"] == ["Bundle.type"]
