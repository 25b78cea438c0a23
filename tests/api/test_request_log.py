"""One JSON access-log line per request, with the request id: the caller's `X-Request-ID`
when well-formed, else a fresh one; echoed on the response; the token's client id, never the
query string or the token."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import LiveServer, make_settings
from tests.smart.flows import bearer, run_cli


def _lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [orjson.loads(r.getMessage()) for r in caplog.records if r.name == "fhir_server.access"]


def test_request_ids_and_access_lines(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="fhir_server.access")
    with LiveServer(make_settings(tmp_path, auth=True)) as server:
        token = run_cli(server.settings, "token", "--scope", "system/*.rs").strip()
        given = httpx.get(
            f"{server.base_url}/Patient?name=secret-name",
            headers={**bearer(token), "X-Request-ID": "trace-42.a"},
        )
        assert given.status_code == 200
        assert given.headers["x-request-id"] == "trace-42.a"
        made_up = httpx.get(f"{server.base_url}/metadata", headers={"X-Request-ID": "bad id!"})
        assert made_up.headers["x-request-id"] != "bad id!"
        assert len(made_up.headers["x-request-id"]) == 32
        refused = httpx.get(f"{server.base_url}/Patient")
        assert refused.status_code == 401
        health = httpx.get(server.base_url.replace("/fhir", "/healthz"))
    lines = {line["request_id"]: line for line in _lines(caplog)}
    first = lines["trace-42.a"]
    assert (first["method"], first["path"], first["status"]) == ("GET", "/fhir/Patient", 200)
    assert first["client_id"] == "fhir-server-cli"
    assert first["ms"] >= 0
    assert lines[made_up.headers["x-request-id"]]["client_id"] is None
    assert lines[refused.headers["x-request-id"]]["status"] == 401
    assert lines[health.headers["x-request-id"]]["path"] == "/healthz"
    text = caplog.text
    assert "secret-name" not in text and token not in text  # no query string, no token
