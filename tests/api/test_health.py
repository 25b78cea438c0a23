"""`/healthz` and `/readyz`: public, no-store; ready only once start-up finished and while
the store answers; a 503 is an OperationOutcome (`transient`) with Retry-After."""

from __future__ import annotations

from pathlib import Path

import httpx

from fhir_server.app import create_app
from fhir_server.storage.sqlite import SQLiteStore
from tests.conftest import LiveServer, make_settings


def test_live_server_is_alive_and_ready_without_a_token(tmp_path: Path) -> None:
    with LiveServer(make_settings(tmp_path, auth=True)) as server:
        origin = server.base_url.rsplit("/fhir", 1)[0]
        alive = httpx.get(f"{origin}/healthz")
        ready = httpx.get(f"{origin}/readyz")
        assert (alive.status_code, alive.json()) == (200, {"status": "alive"})
        assert (ready.status_code, ready.json()) == (200, {"status": "ready"})
        assert ready.headers["cache-control"] == "no-store"
        assert httpx.get(f"{server.base_url}/Patient").status_code == 401  # the API is not open


def _outcome(response: httpx.Response, words: str) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "5"
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["code"] == "transient"
    assert words in body["issue"][0]["diagnostics"]


async def test_not_ready_before_start_up_and_when_the_store_stops_answering(
    tmp_path: Path,
) -> None:
    store = SQLiteStore(str(tmp_path / "ready.db"))
    app = create_app(make_settings(tmp_path), store=store)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        _outcome(await http.get("/readyz"), "starting")  # no start-up has run
        assert (await http.get("/healthz")).status_code == 200
        async with app.router.lifespan_context(app):
            assert (await http.get("/readyz")).status_code == 200
            await store.close()  # the database goes away under the running server
            _outcome(await http.get("/readyz"), "store does not answer")
            assert (await http.get("/healthz")).status_code == 200
