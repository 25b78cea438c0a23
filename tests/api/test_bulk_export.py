"""Bulk Data `$export` over HTTP on every engine (SQLite, mongomock, SQLite with a system token):
kick-off refusals with their OperationOutcomes, `_typeFilter` ORed without duplicates, what
`_since` reports as changed and deleted, the Patient and Group compartments, the
CapabilityStatement, and (on an app of their own) expiry, purge and an interrupted export."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fhir_server.access import SystemPolicy
from fhir_server.app import create_app
from operations.bulk_export import STOPPED
from operations.bulk_export_jobs import JOB, Job, owner_of
from resources.fhir_dates import format_instant, now_us
from tests.conftest import TEST_BASE_URL, make_settings
from tests.engines import ALL_ENGINES, make_store

ASYNC = {"Prefer": "respond-async", "Accept": "application/fhir+json"}


async def kick_off(client: httpx.AsyncClient, path: str) -> str:
    response = await client.get(path, headers=ASYNC)
    assert response.status_code == 202, response.text
    return response.headers["content-location"]


async def manifest_of(client: httpx.AsyncClient, status: str) -> dict[str, Any]:
    """Poll (after letting the export run) until the manifest, waiting `Retry-After`."""
    await asyncio.sleep(0.2)
    for _ in range(30):
        response = await client.get(status)
        if response.status_code == 200:
            manifest: dict[str, Any] = response.json()
            return manifest
        assert response.status_code == 202, response.text
        await asyncio.sleep(int(response.headers["retry-after"]))
    raise AssertionError(f"{status} did not finish")


async def exported(
    client: httpx.AsyncClient, path: str
) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The manifest of an export and the ids (output) or DELETE urls (deleted) per file."""
    manifest = await manifest_of(client, await kick_off(client, path))
    ids: dict[str, list[str]] = {}
    for item in [*manifest["output"], *manifest.get("deleted", [])]:
        lines = (await client.get(item["url"])).text.splitlines()
        assert len(lines) == item["count"]
        key = "deleted" if item["type"] == "Bundle" else item["type"]
        ids[key] = sorted(_id_of(httpx.Response(200, content=line).json()) for line in lines)
    return manifest, ids


def _id_of(resource: dict[str, Any]) -> str:
    if resource["resourceType"] == "Bundle":
        return str(resource["entry"][0]["request"]["url"])
    return str(resource["id"])


async def put(client: httpx.AsyncClient, resource: dict[str, Any]) -> None:
    url = f"/{resource['resourceType']}/{resource['id']}"
    response = await client.put(url, json=resource)
    assert response.status_code in (200, 201), response.text


def patient(id: str, gender: str = "female") -> dict[str, Any]:
    return {"resourceType": "Patient", "id": id, "gender": gender}


def observation(id: str, subject: str, performer: str | None = None) -> dict[str, Any]:
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "id": id,
        "status": "final",
        "code": {"text": "weight"},
        "subject": {"reference": subject},
    }
    if performer:
        obs["performer"] = [{"reference": performer}]
    return obs


async def test_export_without_prefer_respond_async_is_400_required(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/$export", headers={"Accept": "application/fhir+json"})
    assert response.status_code == 400
    (issue,) = response.json()["issue"]
    assert (issue["severity"], issue["code"]) == ("error", "required")
    assert "Prefer: respond-async" in issue["diagnostics"]


@pytest.mark.parametrize(
    ("path", "code", "said"),
    [
        ("$export?_outputFormat=application/fhir%2Bjson", "not-supported", "_outputFormat"),
        ("$export?_outputFormat=ndjson&_outputFormat=ndjson", "invalid", "once"),
        ("$export?_type=Patient,NoSuchType", "not-supported", "'NoSuchType'"),
        ("Patient/$export?_type=Practitioner", "not-supported", "Patient compartment"),
        (
            "$export?_type=Patient&_typeFilter=Observation%3Fstatus%3Dfinal",
            "invalid",
            "does not include",
        ),
        ("$export?_typeFilter=Patient%3F_sort%3Dname", "invalid", "_sort"),
        ("$export?_typeFilter=Patient%3F_include%3DPatient:organization", "invalid", "_include"),
        ("$export?_typeFilter=status%3Dfinal", "invalid", "Type?param=value"),
        ("$export?_typeFilter=Patient%3Fno-such-param%3D1", "not-supported", "no-such-param"),
        ("$export?_since=2026-11-22", "invalid", "_since"),
        ("$export?_elements=id", "not-supported", "_elements"),
        (
            "$export?includeAssociatedData=LatestProvenanceResources",
            "not-supported",
            "includeAssociatedData",
        ),
        ("$export?_count=10", "not-supported", "_count"),
    ],
)
async def test_export_bad_parameter_is_refused_and_starts_nothing(
    client: httpx.AsyncClient, path: str, code: str, said: str
) -> None:
    response = await client.get(f"/{path}", headers=ASYNC)
    assert response.status_code == 400, response.text
    (issue,) = response.json()["issue"]
    assert (issue["severity"], issue["code"]) == ("error", code)
    assert said in issue["diagnostics"]
    assert "content-location" not in response.headers


async def test_export_asking_for_xml_is_406(client: httpx.AsyncClient) -> None:
    response = await client.get("/$export", headers={**ASYNC, "Accept": "application/fhir+xml"})
    assert response.status_code == 406


async def test_export_at_unsupported_levels_is_404_or_405(client: httpx.AsyncClient) -> None:
    await put(client, patient("p1"))
    for path in ("/Patient/p1/$export", "/Group/$export", "/Observation/$export"):
        response = await client.get(path, headers=ASYNC)
        assert response.status_code == 404, path
        assert response.json()["issue"][0]["code"] == "not-supported"
    posted = await client.post("/$export", headers=ASYNC, json={"resourceType": "Parameters"})
    assert posted.status_code == 405
    unknown = await client.get("http://test/bulk-export/0123456789abcdef0123456789abcdef")
    assert unknown.status_code == 404 and unknown.json()["issue"][0]["code"] == "not-found"


async def test_capability_statement_lists_the_three_bulk_data_operations(
    client: httpx.AsyncClient,
) -> None:
    statement = (await client.get("/metadata")).json()
    assert (
        "http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data" in statement["instantiates"]
    )
    rest = statement["rest"][0]
    root = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/"
    assert {"name": "export", "definition": root + "export"} in rest["operation"]
    for rtype, definition in (("Patient", "patient-export"), ("Group", "group-export")):
        (entry,) = [e for e in rest["resource"] if e["type"] == rtype]
        assert {"name": "export", "definition": root + definition} in entry["operation"]
    stored = await client.get("/OperationDefinition/group-export")
    assert stored.status_code == 200 and stored.json()["url"] == root + "group-export"


async def test_export_type_filters_are_ored_without_duplicates(client: httpx.AsyncClient) -> None:
    for id, gender in (("f1", "female"), ("m1", "male"), ("o1", "other"), ("f2", "female")):
        await put(client, patient(id, gender))
    filters = "Patient%3Fgender%3Dfemale,Patient%3Fgender%3Dfemale%2Cmale"
    manifest, ids = await exported(
        client, f"/$export?_type=Patient&_outputFormat=ndjson&_typeFilter={filters}"
    )
    assert ids == {"Patient": ["f1", "f2", "m1"]}
    assert manifest["error"] == [] and "deleted" not in manifest


async def test_since_export_reports_changes_and_only_standing_deletions(
    client: httpx.AsyncClient,
) -> None:
    for id in ("gone", "back", "edited", "kept"):
        await put(client, patient(id))
    since = format_instant(now_us())
    await asyncio.sleep(0.01)
    assert (await client.delete("/Patient/gone")).status_code == 200
    assert (await client.delete("/Patient/back")).status_code == 200
    await put(client, patient("back", "male"))
    await put(client, patient("edited", "male"))
    manifest, ids = await exported(client, f"/$export?_type=Patient&_since={since}")
    assert ids == {"Patient": ["back", "edited"], "deleted": ["Patient/gone"]}
    assert [d["type"] for d in manifest["deleted"]] == ["Bundle"]


async def test_patient_and_group_exports_follow_the_patient_compartment(
    client: httpx.AsyncClient,
) -> None:
    for id in ("a", "b", "c"):
        await put(client, patient(id))
    await put(client, observation("a-by-b", "Patient/a", "Patient/b"))
    await put(client, observation("c-own", "Patient/c"))
    await put(client, observation("device", "Device/d"))
    group = {
        "resourceType": "Group",
        "id": "ab",
        "type": "person",
        "actual": True,
        "member": [
            {"entity": {"reference": "Patient/b"}},
            {"entity": {"reference": "Patient/a"}},
            {"entity": {"reference": "Patient/c"}, "inactive": True},
        ],
    }
    await put(client, group)
    _, everyone = await exported(client, "/Patient/$export?_type=Patient,Observation")
    assert everyone == {"Patient": ["a", "b", "c"], "Observation": ["a-by-b", "c-own"]}
    _, members = await exported(client, "/Group/ab/$export?_type=Patient,Observation")
    assert members == {"Patient": ["a", "b"], "Observation": ["a-by-b"]}


@pytest.fixture(params=ALL_ENGINES)
async def short_lived(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    """An app whose export files last 1 s (`export_seconds=1`), and a client on it."""
    store, drop = make_store(request.param, tmp_path)
    app = create_app(make_settings(tmp_path, export_seconds=1, export_poll_seconds=1), store=store)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url=TEST_BASE_URL) as c:
                yield app, c
    finally:
        if drop is not None:
            await drop()


async def test_export_files_expire_then_answer_404_and_are_purged_by_the_background_job(
    short_lived: tuple[Any, httpx.AsyncClient],
) -> None:
    app, client = short_lived
    await put(client, patient("p1"))
    status = await kick_off(client, "/$export?_type=Patient")
    (item,) = (await manifest_of(client, status))["output"]
    folder = Path(app.state.settings.export_dir) / status.rsplit("/", 1)[1]
    assert (folder / "Patient.ndjson").is_file()
    await asyncio.sleep(1.5)
    assert (await client.get(status)).status_code == 404
    assert (await client.get(item["url"])).status_code == 404
    for _ in range(50):  # the background purge runs every second (half the file lifetime)
        if not folder.exists():
            break
        await asyncio.sleep(0.1)
    assert not folder.exists()
    assert folder.parent.is_dir()


async def test_export_whose_process_ended_answers_500_incomplete(
    short_lived: tuple[Any, httpx.AsyncClient],
) -> None:
    app, client = short_lived
    records = app.state.repositories.for_job("test").records
    job = Job("0" * 32, owner_of(SystemPolicy("anonymous")), "http://test/fhir/$export", now_us())
    job.lease = now_us() - 1  # its process died before renewing it
    await records.put_record(JOB, job.id, job.to_doc(), now_us() + 60_000_000)
    response = await client.get(f"http://test/bulk-export/{job.id}")
    assert response.status_code == 500
    (issue,) = response.json()["issue"]
    assert (issue["severity"], issue["code"]) == ("error", "incomplete")
    assert "Kick off a new export" in issue["diagnostics"]


async def test_export_stopped_with_the_server_answers_500_after_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("operations.bulk_export_run.SHARE", 0.001)  # pause ~1000x each page
    settings = make_settings(tmp_path)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=TEST_BASE_URL) as client:
            await put(client, patient("p1"))
            status = await kick_off(client, "/$export")
            assert (await client.get(status)).status_code == 202
    folder = Path(settings.export_dir) / status.rsplit("/", 1)[1]
    assert not folder.exists()
    restarted = create_app(settings)
    async with restarted.router.lifespan_context(restarted):
        transport = httpx.ASGITransport(app=restarted)
        async with httpx.AsyncClient(transport=transport, base_url=TEST_BASE_URL) as client:
            response = await client.get(status)
    assert response.status_code == 500
    (issue,) = response.json()["issue"]
    assert (issue["code"], issue["diagnostics"]) == ("exception", STOPPED)
