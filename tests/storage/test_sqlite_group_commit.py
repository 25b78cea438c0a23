"""SQLite group commit (`fhir_server.storage.sqlite_group`): the `apply` calls of one
event-loop turn share one `BEGIN IMMEDIATE` transaction, each in its own savepoint. A refused
apply leaves nothing and the others commit; a group waits for another process's write lock
off the event loop; a caller cancelled before its group is written is left out; a failed
COMMIT fails every apply of the group and writes nothing.

The transaction statements are observed with a trace callback on the store's connection."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fhir_server.storage.base import WriteOp
from fhir_server.storage.sqlite import SQLiteStore
from fhir_server.storage.sqlite_group import MAX_GROUP
from resources.errors import ClaimConflict, StoreConflict
from tests.storage.contract import index, version
from tests.storage.test_claims_contract import book, held, nothing_of


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    sqlite_store = SQLiteStore(str(tmp_path / "group.db"))
    await sqlite_store.start()
    yield sqlite_store
    await sqlite_store.close()


def traced(store: SQLiteStore) -> list[str]:
    """The statements the store's connection on this thread runs from now on."""
    statements: list[str] = []
    store._connection().set_trace_callback(statements.append)
    return statements


def transactions(statements: list[str]) -> list[str]:
    words = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")
    return [s for s in statements if s.split(" ", 1)[0] in words]


async def test_the_applies_of_one_turn_share_one_transaction(store: SQLiteStore) -> None:
    statements = traced(store)
    await asyncio.gather(*(store.apply([book(f"a{i}", [10 * i, 10 * i + 1])]) for i in range(10)))
    steps = transactions(statements)
    assert steps.count("BEGIN IMMEDIATE") == 1
    assert steps.count("COMMIT") == 1
    assert steps.count("SAVEPOINT unit") == steps.count("RELEASE unit") == 10
    for i in range(10):
        claims = await store.claims_of(f"Appointment/a{i}")
        assert claims == held(f"Appointment/a{i}", [10 * i, 10 * i + 1])
    # one apply alone is a group of one
    statements.clear()
    await store.apply([book("alone", [500])])
    assert transactions(statements) == [
        "BEGIN IMMEDIATE",
        "SAVEPOINT unit",
        "RELEASE unit",
        "COMMIT",
    ]


async def test_a_group_takes_at_most_max_group_applies(store: SQLiteStore) -> None:
    statements = traced(store)
    n = 2 * MAX_GROUP + 6
    await asyncio.gather(*(store.apply([book(f"m{i}", [1000 + i])]) for i in range(n)))
    steps = transactions(statements)
    assert steps.count("BEGIN IMMEDIATE") == steps.count("COMMIT") == 3
    assert steps.count("SAVEPOINT unit") == n
    commits = [i for i, step in enumerate(steps) if step == "COMMIT"]
    per_group = [steps[:c].count("SAVEPOINT unit") for c in commits]
    assert per_group == [MAX_GROUP, 2 * MAX_GROUP, n]
    for i in (0, MAX_GROUP, n - 1):
        assert await store.claims_of(f"Appointment/m{i}") == held(f"Appointment/m{i}", [1000 + i])


async def test_a_refused_apply_leaves_nothing_and_the_others_commit(store: SQLiteStore) -> None:
    statements = traced(store)
    half_written = [
        book("c", [30]),  # written first, then undone with the version conflict below
        WriteOp(version("Appointment", "d", 2), 1, index(), None),  # d is at version 0
    ]
    results = await asyncio.gather(
        store.apply([book("a", [1, 2])]),
        store.apply([book("b", [2, 3])]),  # minute 2 is a's
        store.apply(half_written),
        store.apply([book("e", [40])]),
        return_exceptions=True,
    )
    assert results[0] is None and results[3] is None
    assert isinstance(results[1], ClaimConflict)
    assert isinstance(results[2], StoreConflict) and not isinstance(results[2], ClaimConflict)
    assert await nothing_of(store, "b")
    assert await nothing_of(store, "c")
    assert await nothing_of(store, "d")
    assert await store.claims_of("Appointment/a") == held("Appointment/a", [1, 2])
    assert await store.claims_of("Appointment/e") == held("Appointment/e", [40])
    assert transactions(statements).count("BEGIN IMMEDIATE") == 1
    assert transactions(statements).count("ROLLBACK TO unit") == 2


def hold_write_lock(tmp_path: Path) -> sqlite3.Connection:
    """Another process's writer: a connection of its own holding the file's write lock."""
    other = sqlite3.connect(tmp_path / "group.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    return other


async def test_a_group_waits_for_another_writer_off_the_event_loop(
    store: SQLiteStore, tmp_path: Path
) -> None:
    other = hold_write_lock(tmp_path)
    group = asyncio.gather(*(store.apply([book(f"w{i}", [100 + i])]) for i in range(3)))
    ticks = 0
    for _ in range(40):  # 0.2 s during which the group cannot write
        await asyncio.sleep(0.005)
        ticks += 1
        assert not group.done()
    other.execute("COMMIT")
    other.close()
    await asyncio.wait_for(group, 10)
    assert ticks == 40
    for i in range(3):
        assert await store.claims_of(f"Appointment/w{i}") == held(f"Appointment/w{i}", [100 + i])


async def test_a_caller_cancelled_before_its_group_is_written_is_left_out(
    store: SQLiteStore, tmp_path: Path
) -> None:
    other = hold_write_lock(tmp_path)
    gone = asyncio.create_task(store.apply([book("gone", [7])]))
    kept = asyncio.create_task(store.apply([book("kept", [8])]))
    await asyncio.sleep(0.05)  # both in one group, waiting for the lock
    gone.cancel()
    await asyncio.sleep(0.01)
    other.execute("COMMIT")
    other.close()
    await asyncio.wait_for(kept, 10)
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert await nothing_of(store, "gone")
    assert await store.claims_of("Appointment/kept") == held("Appointment/kept", [8])


async def test_a_failed_commit_fails_every_apply_of_the_group_and_writes_nothing(
    store: SQLiteStore,
) -> None:
    conn = store._connection()

    def no_commit(action: int, arg1: str | None, *_: object) -> int:
        refused = action == sqlite3.SQLITE_TRANSACTION and arg1 == "COMMIT"
        return sqlite3.SQLITE_DENY if refused else sqlite3.SQLITE_OK

    conn.set_authorizer(no_commit)
    results = await asyncio.gather(
        store.apply([book("x", [1])]), store.apply([book("y", [2])]), return_exceptions=True
    )
    assert all(isinstance(r, sqlite3.DatabaseError) for r in results), results
    conn.set_authorizer(None)
    assert not conn.in_transaction
    assert await nothing_of(store, "x")
    assert await nothing_of(store, "y")
    await store.apply([book("x", [1])])  # the store goes on
    assert await store.claims_of("Appointment/x") == held("Appointment/x", [1])
