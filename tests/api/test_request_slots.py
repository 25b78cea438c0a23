"""`Settings.request_slots`: a server process works on at most that many FHIR requests at
once; the others wait for a free slot (in arrival order) and are all answered. Unset: 4 on
SQLite, no limit on MongoDB; 0: no limit (`fhir_server.api.fhir_endpoint.request_slots`)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from fhir_server.api.fhir_endpoint import request_slots
from fhir_server.config import Settings
from tests.conftest import LiveServer, make_settings

CONCURRENT = 12


def _peak_of(server: LiveServer, requests: list[tuple[str, str]]) -> tuple[int, list[int]]:
    """Send `requests` (method, path) all at once to `server`; each interaction is held for
    0.2 s. The most interactions seen running at once, and the status codes."""
    interactions = server.app.state.interactions
    real = interactions.dispatch
    running = peak = 0

    async def counting(freq: Any, repository: Any) -> Any:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        try:
            await asyncio.sleep(0.2)
            return await real(freq, repository)
        finally:
            running -= 1

    interactions.dispatch = counting

    async def send_all() -> list[int]:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
            answers = await asyncio.gather(*(http.request(m, p) for m, p in requests))
        return [a.status_code for a in answers]

    statuses = asyncio.run(send_all())
    return peak, statuses


@pytest.mark.parametrize(("slots", "expected"), [(None, 4), (2, 2), (0, CONCURRENT)])
def test_a_process_works_on_at_most_its_slots_of_requests_at_once(
    tmp_path: Path, slots: int | None, expected: int
) -> None:
    extra = {} if slots is None else {"request_slots": slots}
    with LiveServer(make_settings(tmp_path, **extra)) as server:
        peak, statuses = _peak_of(server, [("GET", "/metadata")] * CONCURRENT)
    assert statuses == [200] * CONCURRENT
    assert peak == expected


def test_a_failed_request_gives_its_slot_back(tmp_path: Path) -> None:
    with LiveServer(make_settings(tmp_path, request_slots=1)) as server:
        requests = [("GET", "/Patient/missing"), ("POST", "/Nothing"), ("GET", "/metadata")]
        peak, statuses = _peak_of(server, requests * 3)
    assert statuses == [404, 404, 200] * 3
    assert peak == 1


def test_no_limit_on_mongodb_unless_set() -> None:
    assert request_slots(Settings(database_url="mongodb://127.0.0.1/fhir")) is None
    limited = request_slots(Settings(database_url="mongodb://127.0.0.1/fhir", request_slots=8))
    assert limited is not None
    assert request_slots(Settings(database_url="sqlite:///x.db", request_slots=0)) is None
