"""Unstarted ResourceStores of every engine for tests: `sqlite` (a file), `mongomock`
(mongomock-motor's in-memory emulator) and `mongodb` (a real server at
FHIR_SERVER_TEST_MONGODB_URL; skipped when unset)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import pytest

from fhir_server.storage.base import ResourceStore
from fhir_server.storage.mongo import MongoStore
from fhir_server.storage.sqlite import SQLiteStore

MONGODB_URL_VAR = "FHIR_SERVER_TEST_MONGODB_URL"
ALL_ENGINES = ("sqlite", "mongomock", "mongodb")

Cleanup = Callable[[], Awaitable[None]] | None


def make_store(engine: str, tmp_path: Path) -> tuple[ResourceStore, Cleanup]:
    """A fresh, unstarted store of `engine` and an optional cleanup (drop) to await after
    closing it. Skips the test for `mongodb` when no server is configured."""
    db_name = f"fhir_test_{uuid.uuid4().hex}"
    if engine == "sqlite":
        return SQLiteStore(str(tmp_path / f"{db_name}.db")), None
    if engine == "mongomock":
        from mongomock_motor import AsyncMongoMockClient

        # mongomock-motor's stubs describe Motor's types; its calls match PyMongo's async API
        return MongoStore(cast(Any, AsyncMongoMockClient()[db_name])), None
    url = os.environ.get(MONGODB_URL_VAR)
    if not url:
        pytest.skip(f"{MONGODB_URL_VAR} is not set: no real MongoDB to test against")
    from pymongo import AsyncMongoClient

    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url)

    async def drop_database() -> None:
        await client.drop_database(db_name)

    return MongoStore(client[db_name], client=client), drop_database
