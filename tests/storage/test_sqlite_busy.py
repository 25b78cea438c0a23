"""Another process holding SQLite's write lock never freezes this process's event loop
(`sqlite_busy.py`): the waiting write sleeps with asyncio while other work goes on, then
commits; past its deadline it fails with 503 `transient` and writes nothing.

The "other process" is a second connection on the file (`BEGIN IMMEDIATE` taken and held),
which takes the same file lock another `serve` worker would.
"""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from fhir_server.storage import sqlite_busy
from fhir_server.storage.sqlite import SQLiteStore
from resources.errors import ServiceUnavailable
from tests.storage.test_claims_contract import book, held


async def _ticks_while(task: asyncio.Task[object], every: float = 0.005) -> int:
    """How many `every`-second ticks the loop ran while `task` was not done."""
    n = 0
    while not task.done():
        await asyncio.sleep(every)
        n += 1
    return n


async def test_a_write_waits_for_another_process_without_blocking_the_loop(
    sqlite_and_other: tuple[SQLiteStore, sqlite3.Connection],
) -> None:
    store, other = sqlite_and_other
    other.execute("BEGIN IMMEDIATE")  # the other worker's write transaction
    write = asyncio.ensure_future(store.apply([book("a", [1, 2])]))
    ticker = asyncio.ensure_future(_ticks_while(write))  # type: ignore[arg-type]
    await asyncio.sleep(0.3)
    assert not write.done()
    assert await store.read("Appointment", "a") is None  # reads go on meanwhile
    other.execute("COMMIT")
    await asyncio.wait_for(write, timeout=5)
    ticks = await ticker
    # a loop blocked inside SQLite's busy handler would have ticked about once
    assert ticks >= 20, ticks
    assert await store.claims_of("Appointment/a") == held("Appointment/a", [1, 2])


async def test_past_the_deadline_the_write_fails_503_and_leaves_nothing(
    sqlite_and_other: tuple[SQLiteStore, sqlite3.Connection], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, other = sqlite_and_other
    run = sqlite_busy.run
    monkeypatch.setattr(sqlite_busy, "run", lambda fn: run(fn, 0.2))
    other.execute("BEGIN IMMEDIATE")
    with pytest.raises(ServiceUnavailable) as raised:
        await store.apply([book("a", [1, 2])])
    assert raised.value.status == 503 and raised.value.headers["Retry-After"] == "1"
    other.execute("ROLLBACK")
    assert await store.read("Appointment", "a") is None
    assert await store.claims_of("Appointment/a") == []
    await store.apply([book("a", [1, 2])])  # the lock is free again: it writes
    assert await store.claims_of("Appointment/a") == held("Appointment/a", [1, 2])


def test_busy_is_told_from_other_operational_errors() -> None:
    conn = sqlite3.connect(":memory:")
    with pytest.raises(sqlite3.OperationalError) as raised:
        conn.execute("SELECT * FROM no_such_table")
    assert not sqlite_busy.is_busy(raised.value)
    conn.close()
