"""Fixtures for the SMART tests: a live server with authorization on and the demo clinic
(its public app `demo-app`, users `munoz` (a patient) and `smith` (a practitioner))."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from fhir_server.cli import _load_demo
from tests.conftest import LiveServer, make_settings


@pytest.fixture(scope="module")
def smart_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """uvicorn on 127.0.0.1 with authorization on, its own SQLite file and the demo clinic."""
    tmp = tmp_path_factory.mktemp("smart")
    server = LiveServer(make_settings(tmp, auth=True))
    assert asyncio.run(_load_demo(server.settings)) > 0
    with server:
        yield server


@pytest.fixture
def browser(smart_server: LiveServer) -> Iterator[httpx.Client]:
    """A user's browser: no redirects followed, so each step can be checked."""
    origin = smart_server.base_url.rsplit("/fhir", 1)[0]
    with httpx.Client(base_url=origin, follow_redirects=False, timeout=30) as http:
        yield http
