"""Bulk Data `$export` end to end on a live server (uvicorn on 127.0.0.1, authorization on)
over the shared Synthea data and the demo clinic, with SMART Backend Services tokens: counts per
type equal to what was loaded, `_since` with its deletions, Group and patient-confined exports,
polling too fast, cancellation, other tokens refused, and the README's walkthrough as printed.

The tests share one server and run in file order: `_since` (which deletes and updates) comes
after the full export whose counts it would change."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fhir_server.cli import _load_demo
from fhir_server.demo import demo_clinic
from resources.fhir_dates import format_instant, now_us
from resources.indexing import compartments_of
from tests.conftest import LiveServer, make_settings, shared_data
from tests.e2e.test_readme import VENV_BIN, as_run_here, readme_block, server_env
from tests.smart.flows import backend_token, bearer, patient_bearer, run_cli

pytestmark = pytest.mark.shared_data
ASYNC = {"Prefer": "respond-async", "Accept": "application/fhir+json"}
MUNOZ = "demo-patient-munoz"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The demo clinic, then Synthea (1,144 patients with practitioners, organisations and
    locations; 20 patients' full records as transaction Bundles) loaded by `fhir-server load`
    (its own process), then the server, with two backend clients allowed `system/*.rs`
    (`exporter-a`, `exporter-b`; one ES384 key)."""
    paths = [shared_data("synthea-bulk-1000"), shared_data("synthea-gsd-r4", "bundles")]
    tmp = tmp_path_factory.mktemp("bulk")
    server = LiveServer(make_settings(tmp, auth=True, export_poll_seconds=1))
    settings = server.settings
    assert asyncio.run(_load_demo(settings)) > 0
    load = [
        str(VENV_BIN / "fhir-server"),
        "load",
        "--quiet",
        "--database-url",
        settings.database_url,
    ]
    loaded = subprocess.run([*load, *map(str, paths)], capture_output=True, text=True, check=False)
    assert loaded.returncode == 0, loaded.stdout + loaded.stderr
    with server:
        run_cli(settings, "clients", "keygen", str(tmp / "exporter"), "--alg", "ES384")
        for client in ("exporter-a", "exporter-b"):
            public = str(tmp / "exporter.public.json")
            run_cli(
                settings,
                "clients",
                "add",
                client,
                "--type",
                "backend",
                "--jwks-file",
                public,
                "--scope",
                "system/*.rs",
            )
        yield server


def _token(server: LiveServer, client: str, scope: str = "system/*.rs") -> dict[str, str]:
    folder = Path(server.settings.signing_keys).parent
    private = json.loads((folder / "exporter.private.json").read_text())
    return bearer(backend_token(server.base_url, client, private, scope))


@pytest.fixture(scope="module")
def ehr(server: LiveServer) -> dict[str, str]:
    return _token(server, "exporter-a")


@pytest.fixture(scope="module")
def admin(server: LiveServer) -> dict[str, str]:
    """An administrator's `system/*.cruds` token (`fhir-server token`), for writes."""
    return bearer(run_cli(server.settings, "token", "--scope", "system/*.cruds").strip())


def kick_off(server: LiveServer, path: str, auth: dict[str, str]) -> str:
    """The status URL of an accepted export."""
    response = httpx.get(f"{server.base_url}/{path}", headers={**auth, **ASYNC}, timeout=30)
    assert response.status_code == 202, response.text
    assert response.json()["issue"][0]["code"] == "informational"
    return response.headers["content-location"]


def manifest_of(status: str, auth: dict[str, str], timeout: float = 120) -> dict[str, Any]:
    """Poll as the IG asks (waiting `Retry-After`) until the manifest."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = httpx.get(status, headers=auth, timeout=30)
        if response.status_code == 200:
            assert response.headers["content-type"].startswith("application/json")
            assert "expires" in response.headers
            manifest: dict[str, Any] = response.json()
            return manifest
        assert response.status_code == 202, response.text
        assert 0 < len(response.headers["x-progress"]) < 100
        time.sleep(int(response.headers["retry-after"]))
    raise AssertionError(f"{status} did not finish in {timeout} s")


def files_of(
    manifest: dict[str, Any], auth: dict[str, str], kind: str = "output"
) -> dict[str, list[Any]]:
    """The resources of each file of the manifest, by type (checking each file's count)."""
    out: dict[str, list[Any]] = {}
    for item in manifest.get(kind, []):
        response = httpx.get(item["url"], headers=auth, timeout=60)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/fhir+ndjson")
        lines = [json.loads(line) for line in response.text.splitlines()]
        assert len(lines) == item["count"]
        assert {r["resourceType"] for r in lines} == {item["type"]}
        out[item["type"]] = lines
    return out


def loaded_counts() -> Counter[str]:
    """Resources per type the fixture loaded, counted from the files themselves: distinct ids
    (the loader keeps them, so a repeated one updates; Bundle entries included)."""
    resources = [r for line in _lines(shared_data("synthea-bulk-1000")) if (r := json.loads(line))]
    for path in sorted(shared_data("synthea-gsd-r4", "bundles").glob("*.json")):
        resources.extend(e["resource"] for e in json.loads(path.read_text())["entry"])
    resources.extend(demo_clinic(dt.date.today()))
    return Counter(rtype for rtype, _ in {(r["resourceType"], r["id"]) for r in resources})


def _lines(folder: Path) -> Iterator[str]:
    for path in sorted(folder.glob("*.ndjson")):
        yield from (line for line in path.read_text().splitlines() if line.strip())


def test_system_export_counts_per_type_equal_what_was_loaded(
    server: LiveServer, ehr: dict[str, str]
) -> None:
    before = now_us()
    status = kick_off(server, "$export", ehr)
    assert status.startswith(server.base_url.rsplit("/fhir", 1)[0] + "/bulk-export/")
    manifest = manifest_of(status, ehr)
    assert manifest["request"] == f"{server.base_url}/$export"
    assert manifest["requiresAccessToken"] is True and manifest["error"] == []
    assert "deleted" not in manifest
    assert manifest["transactionTime"] >= format_instant(before)
    files = files_of(manifest, ehr)
    expected = loaded_counts()
    assert {t: len(files.get(t, [])) for t in expected} == dict(expected)
    for rtype, resources in files.items():
        assert len({r["id"] for r in resources}) == len(resources), rtype
    assert {s["status"] for s in files["Slot"]} >= {"free"}  # the stored free time
    assert {"OperationDefinition", "StructureDefinition"} <= set(files)


def test_export_polled_faster_than_retry_after_is_429(
    server: LiveServer, ehr: dict[str, str]
) -> None:
    status = kick_off(server, "$export", ehr)
    first = httpx.get(status, headers=ehr, timeout=30)
    second = httpx.get(status, headers=ehr, timeout=30)
    assert first.status_code == 202, first.text
    assert second.status_code == 429
    assert int(second.headers["retry-after"]) >= 1
    issue = second.json()["issue"][0]
    assert (issue["severity"], issue["code"]) == ("error", "throttled")
    assert httpx.delete(status, headers=ehr, timeout=30).status_code == 202


def test_export_delete_cancels_then_status_and_files_are_404(
    server: LiveServer, ehr: dict[str, str]
) -> None:
    running = kick_off(server, "$export", ehr)
    cancelled = httpx.delete(running, headers=ehr, timeout=30)
    assert cancelled.status_code == 202
    assert cancelled.json()["issue"][0]["severity"] == "information"
    gone = httpx.get(running, headers=ehr, timeout=30)
    assert gone.status_code == 404 and gone.json()["issue"][0]["code"] == "not-found"
    done = kick_off(server, "Patient/$export?_type=Patient", ehr)
    (item,) = manifest_of(done, ehr)["output"]
    assert httpx.delete(done, headers=ehr, timeout=30).status_code == 202
    assert httpx.get(item["url"], headers=ehr, timeout=30).status_code == 404
    assert httpx.get(done, headers=ehr, timeout=30).status_code == 404
    folder = Path(server.settings.export_dir)
    for url in (running, done):
        assert not (folder / url.rsplit("/", 1)[1]).exists()


def test_export_of_another_client_is_403_to_poll_download_and_cancel(
    server: LiveServer, ehr: dict[str, str]
) -> None:
    status = kick_off(server, "$export?_type=Practitioner", ehr)
    (item,) = manifest_of(status, ehr)["output"]
    other = _token(server, "exporter-b")
    munoz = patient_bearer(server.base_url, "launch/patient patient/*.rs")
    for auth in (other, munoz):
        for response in (
            httpx.get(status, headers=auth, timeout=30),
            httpx.get(item["url"], headers=auth, timeout=30),
            httpx.delete(status, headers=auth, timeout=30),
        ):
            assert response.status_code == 403, response.text
            assert response.json()["issue"][0]["code"] == "forbidden"
    assert httpx.get(item["url"], timeout=30).status_code == 401
    assert httpx.get(item["url"], headers=ehr, timeout=30).status_code == 200


def test_patient_token_export_is_confined_to_its_compartment(server: LiveServer) -> None:
    munoz = patient_bearer(server.base_url, "launch/patient patient/*.rs")
    files = files_of(manifest_of(kick_off(server, "Patient/$export", munoz), munoz), munoz)
    assert [p["id"] for p in files.pop("Patient")] == [MUNOZ]
    assert "Appointment" in files
    for resources in files.values():
        for resource in resources:
            assert f"Patient/{MUNOZ}" in compartments_of(resource)


def test_group_export_is_the_compartments_of_its_members(
    server: LiveServer, ehr: dict[str, str], admin: dict[str, str]
) -> None:
    base = server.base_url
    encounters = httpx.get(f"{base}/Encounter?_count=200", headers=ehr, timeout=30).json()
    subjects = list(
        dict.fromkeys(e["resource"]["subject"]["reference"] for e in encounters["entry"])
    )
    members = subjects[:2]
    group = {
        "resourceType": "Group",
        "type": "person",
        "actual": True,
        "member": [{"entity": {"reference": m}} for m in members],
    }
    created = httpx.post(f"{base}/Group", json=group, headers=admin, timeout=30)
    assert created.status_code == 201, created.text
    files = files_of(
        manifest_of(kick_off(server, f"Group/{created.json()['id']}/$export", ehr), ehr), ehr
    )
    assert sorted(f"Patient/{p['id']}" for p in files["Patient"]) == sorted(members)
    for rtype in ("Observation", "Encounter", "Claim"):
        expected = sum(
            httpx.get(f"{base}/{m}/{rtype}?_summary=count", headers=ehr, timeout=30).json()["total"]
            for m in members
        )
        assert len(files[rtype]) == expected > 0, rtype


def test_since_export_returns_only_later_changes_and_the_deletions(
    server: LiveServer, ehr: dict[str, str], admin: dict[str, str]
) -> None:
    base = server.base_url
    found = httpx.get(f"{base}/Observation?_count=5", headers=ehr, timeout=30).json()["entry"]
    observations = [e["resource"] for e in found]
    patient = httpx.get(f"{base}/Patient?_count=1", headers=ehr, timeout=30).json()["entry"][0]
    since = format_instant(now_us())
    time.sleep(0.01)
    updated = [*observations[:2], patient["resource"]]
    for resource in updated:
        resource.pop("meta")
        resource.setdefault("extension", []).append(
            {"url": "http://example.org/x", "valueString": "edited"}
        )
        url = f"{base}/{resource['resourceType']}/{resource['id']}"
        assert httpx.put(url, json=resource, headers=admin, timeout=30).status_code == 200
    deleted = [f"Observation/{o['id']}" for o in observations[2:5]]
    for ref in deleted:
        assert httpx.delete(f"{base}/{ref}", headers=admin, timeout=30).status_code == 200
    manifest = manifest_of(kick_off(server, f"$export?_since={since}", ehr), ehr)
    files = files_of(manifest, ehr)
    changed = {f"{r['resourceType']}/{r['id']}" for rs in files.values() for r in rs}
    assert changed == {f"{r['resourceType']}/{r['id']}" for r in updated}
    bundles = files_of(manifest, ehr, "deleted")["Bundle"]
    assert all(b["type"] == "transaction" and len(b["entry"]) == 1 for b in bundles)
    assert sorted(b["entry"][0]["request"]["url"] for b in bundles) == sorted(deleted)
    assert {b["entry"][0]["request"]["method"] for b in bundles} == {"DELETE"}


def test_readme_bulk_export_walkthrough_runs_as_printed(server: LiveServer, tmp_path: Path) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    script = as_run_here(readme_block("<!-- readme-bulk"), server)
    done = subprocess.run(
        [
            "bash",
            "-e",
            "-o",
            "pipefail",
            "-c",
            script.replace("curl -s ", "curl -s --fail-with-body "),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
        env={**server_env(server), "PATH": os.environ.get("PATH", "")},
    )
    assert done.returncode == 0, f"{done.stdout[-800:]}\n{done.stderr[-800:]}"
    assert (tmp_path / "Patient.ndjson").is_file() and (tmp_path / "Slot.ndjson").is_file()
    assert " total" in done.stdout.splitlines()[-1]
