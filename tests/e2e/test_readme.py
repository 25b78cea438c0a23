"""The README's curl examples work as printed against a live server with the demo clinic."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from fhir_server.cli import _load_demo
from tests.conftest import LiveServer, make_settings

README = Path(__file__).resolve().parents[2] / "README.md"
PRINTED_BASE = "http://127.0.0.1:8080/fhir"


def readme_examples() -> list[str]:
    text = README.read_text()
    lines: list[str] = []
    for marker in ("<!-- readme-examples", "<!-- readme-scheduling"):
        block = text.split(marker, 1)[1].split("```sh", 1)[1].split("```", 1)[0]
        lines.extend(line for line in block.splitlines() if line.startswith("curl "))
    return lines


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    settings = make_settings(tmp_path_factory.mktemp("readme"))
    assert asyncio.run(_load_demo(settings)) > 0
    with LiveServer(settings) as server:
        yield server


def test_readme_has_examples() -> None:
    assert len(readme_examples()) >= 10


@pytest.mark.parametrize("line", readme_examples())
def test_readme_curl_example_succeeds(demo_server: LiveServer, line: str) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    command = line.split(" | ", maxsplit=1)[0]
    command = re.sub(r"\s+# .*$", "", command).replace(PRINTED_BASE, demo_server.base_url)
    command = command.replace("curl ", "curl --fail-with-body -w '\\n%{http_code}' ", 1)
    done = subprocess.run(
        ["bash", "-c", command], check=False, capture_output=True, text=True, timeout=30
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
