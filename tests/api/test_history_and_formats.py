"""History (instance, type, system), capabilities, XML, $validate, conditional read headers."""

from __future__ import annotations

import httpx


async def test_history_type_and_system_newest_first_with_since(client: httpx.AsyncClient) -> None:
    published = (await client.get("/_history?_count=0")).json()["total"]  # our conformance
    await client.put("/Patient/h1", json={"resourceType": "Patient", "id": "h1"})
    await client.put("/Patient/h1", json={"resourceType": "Patient", "id": "h1", "gender": "male"})
    await client.put(
        "/Organization/o1", json={"resourceType": "Organization", "id": "o1", "name": "O"}
    )
    patient_history = (await client.get("/Patient/_history")).json()
    assert patient_history["total"] == 2
    assert [e["resource"]["meta"]["versionId"] for e in patient_history["entry"]] == ["2", "1"]
    system = (await client.get("/_history?_count=2")).json()
    assert system["total"] == published + 3
    assert system["entry"][0]["resource"]["resourceType"] == "Organization"
    assert [link["relation"] for link in system["link"]] == ["self", "next"]
    nxt = next(link["url"] for link in system["link"] if link["relation"] == "next")
    page2 = (await client.get(nxt.replace("http://test/fhir", ""))).json()
    first = page2["entry"][0]["resource"]
    assert (first["id"], first["meta"]["versionId"]) == ("h1", "1")
    since = system["entry"][0]["resource"]["meta"]["lastUpdated"]
    recent = (await client.get("/_history", params={"_since": since})).json()
    assert recent["total"] == 1


async def test_history_unknown_instance_returns_404(client: httpx.AsyncClient) -> None:
    r = await client.get("/Patient/none/_history")
    assert r.status_code == 404


async def test_metadata_lists_types_interactions_and_operations(client: httpx.AsyncClient) -> None:
    r = await client.get("/metadata")
    assert r.status_code == 200
    cs = r.json()
    assert cs["resourceType"] == "CapabilityStatement"
    assert cs["fhirVersion"] == "4.0.1"
    resources = {res["type"]: res for res in cs["rest"][0]["resource"]}
    assert {"Patient", "Appointment", "Slot", "Schedule"} <= set(resources)
    slot_params = {p["name"] for p in resources["Slot"]["searchParam"]}
    assert {"schedule", "start", "status", "_id", "_lastUpdated"} <= slot_params
    assert "everything" in {o["name"] for o in resources["Patient"]["operation"]}
    assert {i["code"] for i in cs["rest"][0]["interaction"]} == {
        "transaction",
        "batch",
        "history-system",
    }


async def test_read_xml_by_format_and_accept(client: httpx.AsyncClient) -> None:
    await client.put("/Patient/x", json={"resourceType": "Patient", "id": "x", "gender": "female"})
    r = await client.get("/Patient/x?_format=xml")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/fhir+xml")
    assert b'<gender value="female"/>' in r.content
    r2 = await client.get("/Patient/x", headers={"Accept": "application/fhir+xml"})
    assert r2.content == r.content


async def test_create_from_xml_body(client: httpx.AsyncClient) -> None:
    xml = (
        b'<Patient xmlns="http://hl7.org/fhir"><name><family value="Xml"/></name>'
        b'<birthDate value="2000-01-01"/></Patient>'
    )
    r = await client.post("/Patient", content=xml, headers={"Content-Type": "application/fhir+xml"})
    assert r.status_code == 201, r.text
    assert r.json()["name"][0]["family"] == "Xml"


async def test_xml_with_doctype_is_refused(client: httpx.AsyncClient) -> None:
    xml = (
        b'<?xml version="1.0"?><!DOCTYPE p [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b'<Patient xmlns="http://hl7.org/fhir"><id value="&x;"/></Patient>'
    )
    r = await client.post("/Patient", content=xml, headers={"Content-Type": "application/fhir+xml"})
    assert r.status_code == 400
    assert r.json()["issue"][0]["code"] == "structure"


async def test_validate_operation_reports_issues_without_storing(client: httpx.AsyncClient) -> None:
    bad = {"resourceType": "Patient", "birthDate": "1990-02-30"}
    r = await client.post("/Patient/$validate", json=bad)
    assert r.status_code == 200
    outcome = r.json()
    assert outcome["issue"][0]["severity"] == "error"
    good = await client.post("/Patient/$validate", json={"resourceType": "Patient"})
    assert good.json()["issue"][0]["severity"] == "information"
    assert (await client.get("/Patient?_summary=count")).json()["total"] == 0
    get = await client.get("/Patient/$validate")
    assert get.status_code == 405


async def test_read_if_none_match_current_returns_304(client: httpx.AsyncClient) -> None:
    await client.put("/Patient/c", json={"resourceType": "Patient", "id": "c"})
    r = await client.get("/Patient/c", headers={"If-None-Match": 'W/"1"'})
    assert r.status_code == 304
    assert r.content == b""


async def test_read_summary_true_subsets_resource(client: httpx.AsyncClient) -> None:
    await client.put(
        "/Patient/s",
        json={
            "resourceType": "Patient",
            "id": "s",
            "gender": "male",
            "text": {
                "status": "generated",
                "div": '<div xmlns="http://www.w3.org/1999/xhtml">x</div>',
            },
            "contact": [{"name": {"family": "Kin"}}],
        },
    )
    r = (await client.get("/Patient/s?_summary=true")).json()
    assert r["gender"] == "male"
    assert "contact" not in r and "text" not in r


async def test_error_in_xml_request_is_xml_outcome(client: httpx.AsyncClient) -> None:
    r = await client.get("/Patient/missing?_format=xml")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/fhir+xml")
    assert b"<OperationOutcome" in r.content
    assert b'<code value="not-found"/>' in r.content
