"""The README's examples work as printed against a live server with the demo clinic and
authorization on: the `TOKEN=$(...)` line is run as printed (through the venv's
`fhir-server`), each curl example with that token, and the backend-services walkthrough as one
bash script."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fhir_server.cli import _load_demo
from tests.conftest import LiveServer, make_settings

README = Path(__file__).resolve().parents[2] / "README.md"
PRINTED_BASE = "http://127.0.0.1:8080/fhir"
PRINTED_ORIGIN = "http://127.0.0.1:8080"
VENV_BIN = Path(sys.executable).parent


def readme_block(marker: str, fence: str = "```sh") -> str:
    """The first code block after `marker`."""
    return README.read_text().split(marker, 1)[1].split(fence, 1)[1].split("```", 1)[0]


def as_run_here(command: str, server: LiveServer) -> str:
    """A printed command aimed at the test server and this checkout's virtualenv."""
    origin = server.base_url.rsplit("/fhir", 1)[0]
    return (
        command.replace(PRINTED_BASE, server.base_url)
        .replace(PRINTED_ORIGIN, origin)
        .replace(".venv/bin/", f"{VENV_BIN}/")
    )


def server_env(server: LiveServer) -> dict[str, str]:
    """The environment an administrator's shell has beside the running server."""
    settings = server.settings
    return {
        **os.environ,
        "FHIR_SERVER_DATABASE_URL": settings.database_url,
        "FHIR_SERVER_BASE_URL": settings.base_url,
        "FHIR_SERVER_SIGNING_KEYS": settings.signing_keys,
    }


def readme_examples() -> list[str]:
    text = README.read_text()
    lines: list[str] = []
    for marker in ("<!-- readme-examples", "<!-- readme-scheduling"):
        block = text.split(marker, 1)[1].split("```sh", 1)[1].split("```", 1)[0]
        lines.extend(line for line in block.splitlines() if line.startswith("curl "))
    return lines


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = LiveServer(make_settings(tmp_path_factory.mktemp("readme"), auth=True))
    assert asyncio.run(_load_demo(server.settings)) > 0
    with server:
        yield server


@pytest.fixture(scope="module")
def token(demo_server: LiveServer) -> str:
    """The README's `TOKEN=$(...)` line, run as printed."""
    (line,) = [x for x in readme_block("## Try it").splitlines() if x.startswith("TOKEN=")]
    done = subprocess.run(
        ["bash", "-c", as_run_here(line, demo_server) + ' && printf %s "$TOKEN"'],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
        env=server_env(demo_server),
    )
    assert done.stdout.count(".") == 2, done.stderr  # a JWS
    return done.stdout


def test_readme_has_examples() -> None:
    assert len(readme_examples()) >= 10


@pytest.mark.parametrize("line", readme_examples())
def test_readme_curl_example_succeeds(demo_server: LiveServer, token: str, line: str) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    command = line.split(" | ", maxsplit=1)[0]
    command = as_run_here(re.sub(r"\s+# .*$", "", command), demo_server)
    command = command.replace("curl ", "curl --fail-with-body -w '\\n%{http_code}' ", 1)
    done = subprocess.run(
        ["bash", "-c", command],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "TOKEN": token},
    )
    output = done.stdout
    if " -i " in line:  # the headers were asked for: keep them for the checks below
        head, _, output = output.partition("\n\n")  # text mode turned CRLF into LF
        assert "expires:" in head.lower(), head
    body, _, status = output.rpartition("\n")
    assert done.returncode == 0, f"{line}\n-> {status} {body[:500]} {done.stderr[:300]}"
    assert status in ("200", "201"), body[:500]
    if "_format=xml" in line:
        assert body.startswith("<")
    else:
        parsed = json.loads(body)
        assert parsed["resourceType"] != "OperationOutcome", body[:500]
        if parsed["resourceType"] == "Bundle" and parsed["type"] == "searchset":
            assert parsed.get("entry"), f"{line} found nothing"


def test_readme_refusals_answer_the_status_and_code_printed(
    demo_server: LiveServer, token: str
) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    lines = [x for x in readme_block("<!-- readme-refusals").splitlines() if x.startswith("curl ")]
    assert len(lines) == 4
    for line in lines:
        command, _, expected = line.rpartition("#")
        status, _, detail = expected.strip().partition(" ")
        command = as_run_here(command.strip(), demo_server).replace(
            "curl ", "curl -w '\\n%{http_code}' ", 1
        )
        done = subprocess.run(
            ["bash", "-c", command],
            check=True,
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, "TOKEN": token},
        )
        body, _, got = done.stdout.rpartition("\n")
        assert got == status, f"{line}\n-> {got} {body[:500]}"
        if detail:
            issue = json.loads(body)["issue"][0]
            codes = [c["code"] for c in issue.get("details", {}).get("coding", [])]
            assert codes == [detail], body[:500]


def test_readme_backend_services_walkthrough_runs_as_printed(
    demo_server: LiveServer, tmp_path: Path
) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    script = as_run_here(readme_block("<!-- readme-auth"), demo_server)
    script = script.replace("curl -s ", "curl -s --fail-with-body ")
    done = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", script],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=server_env(demo_server),
    )
    assert done.returncode == 0, f"{done.stdout[-800:]}\n{done.stderr[-800:]}"
    search, launch = _json_documents(done.stdout)[-2:]
    assert search["resourceType"] == "Bundle"
    assert "demo-appt-booked" in [e["resource"]["id"] for e in search["entry"]]
    assert launch["launch"] and launch["iss"] == demo_server.base_url
    assert (tmp_path / "ehr.private.json").stat().st_mode & 0o077 == 0


def test_readme_unauthenticated_request_is_401(demo_server: LiveServer) -> None:
    import httpx

    response = httpx.get(f"{demo_server.base_url}/Patient", timeout=10)
    assert response.status_code == 401
    assert response.json()["issue"][0]["code"] == "login"


def _json_documents(text: str) -> list[Any]:
    """The JSON documents printed one after the other (curl adds no newline)."""
    decoder, out, i = json.JSONDecoder(), [], 0
    while (i := text.find("{", i)) != -1:
        value, i = decoder.raw_decode(text, i)
        out.append(value)
    return out
