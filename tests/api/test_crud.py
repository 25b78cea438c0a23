"""REST interactions over ASGI: create, read, vread, update, patch, delete, conditionals."""

from __future__ import annotations

import asyncio

import httpx

FHIR_JSON = "application/fhir+json"


def patient(family: str = "Chalmers", **extra: object) -> dict[str, object]:
    return {"resourceType": "Patient", "name": [{"family": family, "given": ["Peter"]}], **extra}


async def test_create_valid_patient_returns_201_with_location_etag_and_meta(
    client: httpx.AsyncClient,
) -> None:
    r = await client.post("/Patient", json=patient())
    assert r.status_code == 201
    body = r.json()
    pid = body["id"]
    assert body["meta"]["versionId"] == "1"
    assert r.headers["etag"] == 'W/"1"'
    assert r.headers["location"].endswith(f"/fhir/Patient/{pid}/_history/1")
    assert r.headers["content-type"].startswith(FHIR_JSON)
    assert "last-modified" in r.headers
    read = await client.get(f"/Patient/{pid}")
    assert read.status_code == 200
    assert read.json() == body


async def test_read_unknown_id_returns_404_outcome(client: httpx.AsyncClient) -> None:
    r = await client.get("/Patient/nope")
    assert r.status_code == 404
    outcome = r.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == "not-found"


async def test_update_existing_increments_version_and_vread_returns_both(
    client: httpx.AsyncClient,
) -> None:
    created = (await client.post("/Patient", json=patient())).json()
    pid = created["id"]
    r = await client.put(f"/Patient/{pid}", json={**patient("Smith"), "id": pid})
    assert r.status_code == 200
    assert r.json()["meta"]["versionId"] == "2"
    v1 = await client.get(f"/Patient/{pid}/_history/1")
    v2 = await client.get(f"/Patient/{pid}/_history/2")
    assert v1.json()["name"][0]["family"] == "Chalmers"
    assert v2.json()["name"][0]["family"] == "Smith"
    assert (await client.get(f"/Patient/{pid}/_history/3")).status_code == 404


async def test_update_identical_content_keeps_version(client: httpx.AsyncClient) -> None:
    created = (await client.post("/Patient", json=patient())).json()
    pid = created["id"]
    r = await client.put(f"/Patient/{pid}", json={**patient(), "id": pid})
    assert r.status_code == 200
    assert r.json()["meta"]["versionId"] == "1"


async def test_update_as_create_with_client_id_returns_201(client: httpx.AsyncClient) -> None:
    r = await client.put("/Patient/client-1", json={**patient(), "id": "client-1"})
    assert r.status_code == 201
    assert r.json()["id"] == "client-1"
    assert r.headers["etag"] == 'W/"1"'


async def test_update_id_mismatch_returns_400_with_expression(client: httpx.AsyncClient) -> None:
    r = await client.put("/Patient/a", json={**patient(), "id": "b"})
    assert r.status_code == 400
    issue = r.json()["issue"][0]
    assert issue["code"] == "invalid"
    assert issue["expression"] == ["Patient.id"]
    assert (await client.get("/Patient/a")).status_code == 404


async def test_update_if_match_wrong_version_returns_412_and_changes_nothing(
    client: httpx.AsyncClient,
) -> None:
    pid = (await client.post("/Patient", json=patient())).json()["id"]
    r = await client.put(
        f"/Patient/{pid}", json={**patient("X"), "id": pid}, headers={"If-Match": 'W/"7"'}
    )
    assert r.status_code == 412
    assert r.json()["issue"][0]["code"] == "conflict"
    current = (await client.get(f"/Patient/{pid}")).json()
    assert current["meta"]["versionId"] == "1"
    ok = await client.put(
        f"/Patient/{pid}", json={**patient("X"), "id": pid}, headers={"If-Match": 'W/"1"'}
    )
    assert ok.status_code == 200


async def test_delete_then_read_returns_410_and_history_keeps_versions(
    client: httpx.AsyncClient,
) -> None:
    pid = (await client.post("/Patient", json=patient())).json()["id"]
    r = await client.delete(f"/Patient/{pid}")
    assert r.status_code == 200
    gone = await client.get(f"/Patient/{pid}")
    assert gone.status_code == 410
    assert gone.json()["issue"][0]["code"] == "deleted"
    history = (await client.get(f"/Patient/{pid}/_history")).json()
    assert history["type"] == "history"
    assert history["total"] == 2
    assert history["entry"][0]["request"]["method"] == "DELETE"
    assert "resource" not in history["entry"][0]
    again = await client.put(f"/Patient/{pid}", json={**patient(), "id": pid})
    assert again.status_code == 201
    assert again.json()["meta"]["versionId"] == "3"


async def test_patch_json_patch_replaces_family(client: httpx.AsyncClient) -> None:
    pid = (await client.post("/Patient", json=patient())).json()["id"]
    ops = [{"op": "replace", "path": "/name/0/family", "value": "Jones"}]
    r = await client.request(
        "PATCH",
        f"/Patient/{pid}",
        json=ops,
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert r.status_code == 200
    assert r.json()["name"][0]["family"] == "Jones"
    assert r.json()["meta"]["versionId"] == "2"


async def test_patch_changing_id_returns_422_and_changes_nothing(
    client: httpx.AsyncClient,
) -> None:
    pid = (await client.post("/Patient", json=patient())).json()["id"]
    ops = [{"op": "replace", "path": "/id", "value": "other"}]
    r = await client.request(
        "PATCH",
        f"/Patient/{pid}",
        json=ops,
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert r.status_code == 422
    assert (await client.get(f"/Patient/{pid}")).json()["meta"]["versionId"] == "1"


async def test_conditional_create_existing_match_returns_200_without_new_resource(
    client: httpx.AsyncClient,
) -> None:
    body = patient(identifier=[{"system": "urn:mrn", "value": "42"}])
    first = await client.post(
        "/Patient", json=body, headers={"If-None-Exist": "identifier=urn:mrn|42"}
    )
    assert first.status_code == 201
    second = await client.post(
        "/Patient", json=body, headers={"If-None-Exist": "identifier=urn:mrn|42"}
    )
    assert second.status_code == 200
    assert second.json()["id"] == first.json()["id"]
    bundle = (await client.get("/Patient?identifier=urn:mrn|42")).json()
    assert bundle["total"] == 1


async def test_conditional_create_concurrent_same_criteria_creates_exactly_one(
    client: httpx.AsyncClient,
) -> None:
    body = patient(identifier=[{"system": "urn:mrn", "value": "race"}])
    headers = {"If-None-Exist": "identifier=urn:mrn|race"}
    results = await asyncio.gather(
        *[client.post("/Patient", json=body, headers=headers) for _ in range(12)]
    )
    statuses = sorted(r.status_code for r in results)
    assert statuses.count(201) == 1
    assert statuses.count(200) == 11
    assert len({r.json()["id"] for r in results}) == 1
    bundle = (await client.get("/Patient?identifier=urn:mrn|race")).json()
    assert bundle["total"] == 1


async def test_conditional_update_no_match_creates_then_updates(client: httpx.AsyncClient) -> None:
    body = patient(identifier=[{"system": "urn:mrn", "value": "7"}])
    r1 = await client.put("/Patient?identifier=urn:mrn|7", json=body)
    assert r1.status_code == 201
    r2 = await client.put("/Patient?identifier=urn:mrn|7", json={**body, "gender": "male"})
    assert r2.status_code == 200
    assert r2.json()["id"] == r1.json()["id"]
    assert r2.json()["meta"]["versionId"] == "2"


async def test_conditional_delete_single_match_deletes(client: httpx.AsyncClient) -> None:
    body = patient(identifier=[{"system": "urn:mrn", "value": "del"}])
    pid = (await client.post("/Patient", json=body)).json()["id"]
    r = await client.delete("/Patient?identifier=urn:mrn|del")
    assert r.status_code == 200
    assert (await client.get(f"/Patient/{pid}")).status_code == 410


async def test_prefer_minimal_returns_empty_body_with_location(client: httpx.AsyncClient) -> None:
    r = await client.post("/Patient", json=patient(), headers={"Prefer": "return=minimal"})
    assert r.status_code == 201
    assert r.content == b""
    assert "location" in r.headers


async def test_prefer_operation_outcome_returns_outcome(client: httpx.AsyncClient) -> None:
    r = await client.post("/Patient", json=patient(), headers={"Prefer": "return=OperationOutcome"})
    assert r.status_code == 201
    assert r.json()["resourceType"] == "OperationOutcome"
    assert r.json()["issue"][0]["severity"] == "information"
