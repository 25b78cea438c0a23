"""The `store` fixture: every ResourceStore adapter, fresh and started, for the contract suite.

Engines: `sqlite` (a file in tmp_path), `mongomock` (mongomock-motor's in-memory emulator, a
fresh database each time), `mongomock-transactions` (mongomock playing a replica set, so
MongoStore takes its transactional path: `tests/storage/transactions.py`) and `mongodb` (a
real server at `FHIR_SERVER_TEST_MONGODB_URL`, a fresh database dropped afterwards; skipped
when the variable is unset). The race tests also use `interleaved_store`: mongomock whose
calls interleave (`tests/storage/interleaving.py`).
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest

from fhir_server.storage.base import ResourceStore
from fhir_server.storage.mongo import MongoStore
from fhir_server.storage.sqlite import SQLiteStore
from tests.engines import ALL_ENGINES, make_store
from tests.storage.interleaving import YieldingDatabase
from tests.storage.transactions import PlayedReplicaSet


@pytest.fixture(params=[*ALL_ENGINES, "mongomock-transactions"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ResourceStore]:
    """A started, empty store of each engine; closed (and dropped on MongoDB) afterwards."""
    if request.param == "mongomock-transactions":
        from mongomock_motor import AsyncMongoMockClient

        played = PlayedReplicaSet(AsyncMongoMockClient()[f"fhir_test_{uuid.uuid4().hex}"])
        s, drop = MongoStore(cast(Any, played)), None
    else:
        s, drop = make_store(request.param, tmp_path)
    await s.start()
    try:
        yield s
    finally:
        if drop is not None:
            await drop()
        await s.close()


@pytest.fixture(params=[1, 2, 3])
async def interleaved_store(request: pytest.FixtureRequest) -> AsyncIterator[ResourceStore]:
    """A started MongoStore over mongomock whose calls interleave (seed = the param)."""
    from mongomock_motor import AsyncMongoMockClient

    database: Any = AsyncMongoMockClient()[f"fhir_test_{uuid.uuid4().hex}"]
    store = MongoStore(cast(Any, YieldingDatabase(database, request.param)))
    await store.start()
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def sqlite_and_other(
    tmp_path: Path,
) -> AsyncIterator[tuple[SQLiteStore, sqlite3.Connection]]:
    """A started SQLiteStore on a file and a second plain connection to that file (another
    worker process's), both closed afterwards."""
    path = str(tmp_path / "fhir.db")
    store = SQLiteStore(path)
    await store.start()
    other = sqlite3.connect(path, isolation_level=None)
    try:
        yield store, other
    finally:
        other.close()
        await store.close()
