"""End to end against uvicorn on 127.0.0.1: plain httpx and the `fhirclient` library."""

from __future__ import annotations

import asyncio

import httpx
from fhirclient import client as fhirclient_client
from fhirclient.models.humanname import HumanName
from fhirclient.models.patient import Patient

from tests.conftest import LiveServer


def test_fhirclient_create_read_search_round_trip(live_server: LiveServer) -> None:
    smart = fhirclient_client.FHIRClient(
        settings={"app_id": "e2e-test", "api_base": live_server.base_url}
    )
    patient = Patient()
    name = HumanName()
    name.family = "Fhirclient"
    name.given = ["Eve"]
    patient.name = [name]
    patient.gender = "female"
    created = patient.create(smart.server)
    assert created is not None
    new_id = created["id"]
    read = Patient.read(new_id, smart.server)
    assert read.name[0].family == "Fhirclient"
    assert read.meta.versionId == "1"
    found = list(
        Patient.where(struct={"family": "fhirclient"}).perform_resources_iter(smart.server)
    )
    assert [p.id for p in found] == [new_id]


def test_http_conditional_create_race_over_real_server(live_server: LiveServer) -> None:
    async def race() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=live_server.base_url, timeout=30) as c:
            body = {
                "resourceType": "Patient",
                "identifier": [{"system": "urn:e2e", "value": "race-1"}],
            }
            headers = {"If-None-Exist": "identifier=urn:e2e|race-1"}
            return await asyncio.gather(
                *[c.post("/Patient", json=body, headers=headers) for _ in range(20)]
            )

    responses = asyncio.run(race())
    assert sorted(r.status_code for r in responses).count(201) == 1
    assert len({r.json()["id"] for r in responses}) == 1
    total = httpx.get(
        f"{live_server.base_url}/Patient",
        params={"identifier": "urn:e2e|race-1", "_total": "accurate"},
    ).json()["total"]
    assert total == 1


def test_http_crud_history_and_xml_over_real_server(live_server: LiveServer) -> None:
    with httpx.Client(base_url=live_server.base_url, timeout=30) as c:
        r = c.put("/Practitioner/e2e-dr", json={"resourceType": "Practitioner", "id": "e2e-dr"})
        assert r.status_code == 201
        r = c.put(
            "/Practitioner/e2e-dr",
            json={"resourceType": "Practitioner", "id": "e2e-dr", "active": True},
            headers={"If-Match": r.headers["etag"]},
        )
        assert r.status_code == 200 and r.headers["etag"] == 'W/"2"'
        xml = c.get("/Practitioner/e2e-dr", headers={"Accept": "application/fhir+xml"})
        assert xml.status_code == 200 and b'<active value="true"/>' in xml.content
        history = c.get("/Practitioner/e2e-dr/_history").json()
        assert history["total"] == 2
        assert c.delete("/Practitioner/e2e-dr").status_code == 200
        assert c.get("/Practitioner/e2e-dr").status_code == 410
        meta = c.get("/metadata")
        assert meta.status_code == 200 and meta.json()["fhirVersion"] == "4.0.1"
