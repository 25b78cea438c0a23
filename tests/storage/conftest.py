"""The `store` fixture: every ResourceStore adapter, fresh and started, for the contract suite.

Engines: `sqlite` (a file in tmp_path), `mongomock` (mongomock-motor's in-memory emulator, a
fresh database each time) and `mongodb` (a real server at `FHIR_SERVER_TEST_MONGODB_URL`, a
fresh database dropped afterwards; skipped when the variable is unset).
"""

from __future__ import annotations

import importlib.util
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest

from fhir_server.storage.base import ResourceStore
from fhir_server.storage.mongo import MongoStore

MONGODB_URL_VAR = "FHIR_SERVER_TEST_MONGODB_URL"


@pytest.fixture(params=["sqlite", "mongomock", "mongodb"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ResourceStore]:
    """A started, empty store of each engine; closed (and dropped on MongoDB) afterwards."""
    engine: str = request.param
    db_name = f"fhir_test_{uuid.uuid4().hex}"
    drop = None
    s: ResourceStore
    if engine == "sqlite":
        if importlib.util.find_spec("fhir_server.storage.sqlite") is None:
            pytest.skip("fhir_server.storage.sqlite does not exist yet")
        from fhir_server.storage.sqlite import SQLiteStore

        s = SQLiteStore(str(tmp_path / "t.db"))
    elif engine == "mongomock":
        from mongomock_motor import AsyncMongoMockClient

        # mongomock-motor's stubs describe Motor's types; its calls match PyMongo's async API
        s = MongoStore(cast(Any, AsyncMongoMockClient()[db_name]))
    else:
        url = os.environ.get(MONGODB_URL_VAR)
        if not url:
            pytest.skip(f"{MONGODB_URL_VAR} is not set: no real MongoDB to test against")
        from pymongo import AsyncMongoClient

        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url)
        s = MongoStore(client[db_name], client=client)

        async def drop_database() -> None:
            await client.drop_database(db_name)

        drop = drop_database
    await s.start()
    try:
        yield s
    finally:
        if drop is not None:
            await drop()
        await s.close()
