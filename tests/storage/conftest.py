"""The `store` fixture: every ResourceStore adapter, fresh and started, for the contract suite.

Engines: `sqlite` (a file in tmp_path), `mongomock` (mongomock-motor's in-memory emulator, a
fresh database each time) and `mongodb` (a real server at `FHIR_SERVER_TEST_MONGODB_URL`, a
fresh database dropped afterwards; skipped when the variable is unset).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fhir_server.storage.base import ResourceStore
from tests.engines import ALL_ENGINES, make_store


@pytest.fixture(params=ALL_ENGINES)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ResourceStore]:
    """A started, empty store of each engine; closed (and dropped on MongoDB) afterwards."""
    s, drop = make_store(request.param, tmp_path)
    await s.start()
    try:
        yield s
    finally:
        if drop is not None:
            await drop()
        await s.close()
