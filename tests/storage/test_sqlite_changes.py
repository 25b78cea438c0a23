"""`SQLiteStore.change_stamp` (`sqlite_changes.WalChanges`): equal stamps only while nothing
was committed, by this store or by any other connection (another worker process), through
log restarts and truncations; None where it cannot tell; and the grant check that trusts it
(`smart_auth.grants.Grants.is_active`) sees a revocation or a lapse at once."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from fhir_server.storage import sqlite as sqlite_store
from fhir_server.storage.sqlite import SQLiteStore
from fhir_server.storage.sqlite_changes import WalChanges
from smart_auth.grants import Grant, Grants


async def test_every_commit_of_any_connection_changes_the_stamp_and_reads_do_not(
    sqlite_and_other: tuple[SQLiteStore, sqlite3.Connection],
) -> None:
    store, other = sqlite_and_other
    other.execute("CREATE TABLE t (n INTEGER)")
    seen: set[bytes] = set()
    stamp = store.change_stamp()
    assert stamp is not None
    for n in range(300):
        if n % 3 == 0:
            await store.put_record("code", f"k{n}", {"n": n})  # this store's own commits
        else:
            other.execute("INSERT INTO t VALUES (?)", (n,))  # another process's
        if n % 50 == 49:  # the log copied back and started over (new salts), or cut to 0
            mode = "TRUNCATE" if n % 100 == 99 else "RESTART"
            other.execute(f"PRAGMA wal_checkpoint({mode})")
        after = store.change_stamp()
        assert after is not None and after != stamp, f"commit {n} left the stamp unchanged"
        assert after not in seen, f"commit {n} brought back an earlier stamp"
        seen.add(after)
        stamp = after
    for _ in range(5):  # reads, by either connection, commit nothing
        other.execute("SELECT count(*) FROM t").fetchone()
        await store.get_record("code", "k0")
        assert store.change_stamp() == stamp
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO t VALUES (-1)")
    assert store.change_stamp() == stamp  # not committed yet: nothing visible changed
    other.execute("COMMIT")
    assert store.change_stamp() != stamp


async def test_no_stamp_where_there_is_no_wal_index(tmp_path: Path) -> None:
    memory = SQLiteStore(":memory:")
    await memory.start()
    try:
        await memory.put_record("code", "k", {"n": 1})
        assert memory.change_stamp() is None
        assert await memory.get_record("code", "k") == {"n": 1}  # PRAGMA data_version instead
    finally:
        await memory.close()
    rollback = tmp_path / "rollback.db"
    with sqlite3.connect(rollback) as conn:
        conn.execute("PRAGMA journal_mode=DELETE")
        conn.execute("CREATE TABLE t (n INTEGER)")
    assert WalChanges(str(rollback)).stamp() is None  # no -shm file at all
    (tmp_path / "stale.db-shm").write_bytes(b"\0" * 200)  # a -shm never initialised
    assert WalChanges(str(tmp_path / "stale.db")).stamp() is None
    started = SQLiteStore(str(tmp_path / "closed.db"))
    await started.start()
    assert started.change_stamp() is not None
    await started.close()
    assert started.change_stamp() is None


async def test_the_grant_check_sees_a_revocation_by_another_process_and_a_lapse_at_once(
    sqlite_and_other: tuple[SQLiteStore, sqlite3.Connection],
) -> None:
    store, other = sqlite_and_other
    grants = Grants(store, code_seconds=60, refresh_seconds=3600)
    kept, lapsing = Grant("g-kept", "app", "user/*.rs", "ada"), Grant("g-1s", "app", "", "bo")
    await grants.save(kept, 3600)
    await grants.save(lapsing, 1)
    reads = 0
    real_get = store.get_record

    async def counted(kind: str, key: str) -> dict[str, object] | None:
        nonlocal reads
        reads += 1
        return await real_get(kind, key)

    store.get_record = counted  # type: ignore[method-assign]
    assert await grants.is_active("g-kept") and await grants.is_active("g-1s")
    assert reads == 2
    for _ in range(3):  # nothing committed since: answered without reading the store
        assert await grants.is_active("g-kept")
    assert reads == 2
    # another worker revokes the grant (the stored document, as `Grants.revoke` writes it)
    doc = orjson.loads(
        other.execute("SELECT doc FROM records WHERE kind = 'grant' AND key = 'g-kept'").fetchone()[
            0
        ]
    )
    doc["active"] = False
    other.execute(
        "UPDATE records SET doc = ? WHERE kind = 'grant' AND key = 'g-kept'",
        (orjson.dumps(doc),),
    )
    assert not await grants.is_active("g-kept")
    assert reads == 3
    # the 1-s grant lapses while nothing at all is committed: refused once it has lapsed
    stamp = store.change_stamp()
    assert await grants.is_active("g-1s")
    await asyncio.sleep(1.1)
    assert store.change_stamp() == stamp
    assert not await grants.is_active("g-1s")


async def test_a_header_that_does_not_follow_commits_is_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    class Frozen(WalChanges):  # as a -shm file SQLite does not write would read
        def stamp(self) -> bytes | None:
            return b"\1" * 48

    monkeypatch.setattr(sqlite_store, "WalChanges", Frozen)
    store = SQLiteStore(str(tmp_path / "fhir.db"))
    await store.start()
    try:
        assert store.change_stamp() is None  # so every caller asks the database
        assert "does not follow commits" in caplog.text
        await store.put_record("grant", "g", {"active": True})
        assert await store.get_record("grant", "g") == {"active": True}
    finally:
        await store.close()


DMS_BYTE = 128
"""SQLite's "dead man switch" lock byte of a `-shm` file (unix VFS: UNIX_SHM_DMS = (22 + 8) * 4
+ 8): every process with a connection to the file holds a shared lock on it; a connection
that can lock it exclusively takes itself for the only user and starts the `-shm` over."""

PROBE = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
try:
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, int(sys.argv[2]))
except OSError:
    print("held")
else:
    print("free")
"""


def dms_lock(db: Path) -> str:
    """Whether another process finds the `-shm` file's DMS byte locked ("held") or not."""
    shm = f"{db}-shm"
    found = subprocess.run(
        [sys.executable, "-c", PROBE, shm, str(DMS_BYTE)], capture_output=True, check=True
    )
    return found.stdout.decode().strip()


async def test_the_process_keeps_sqlites_locks_on_the_shm_file(tmp_path: Path) -> None:
    """Mapping the `-shm` file must not drop this process's POSIX locks on it (closing any
    descriptor of a file drops them all): another process would then restart the `-shm`
    under this one, which dies of SIGBUS at its next access (seen under bench/booking.py)."""
    db = tmp_path / "locks.db"
    first, second = SQLiteStore(str(db)), SQLiteStore(str(db))
    await first.start()
    await second.start()
    assert first.change_stamp() is not None
    assert dms_lock(db) == "held"
    await first.close()  # the other store of this process still uses the file
    assert dms_lock(db) == "held"
    stamp = second.change_stamp()
    await second.put_record("code", "k", {"n": 1})
    assert second.change_stamp() not in (None, stamp)
    await second.close()
    # the probe sees the failure it guards against: a descriptor of the file closed while a
    # connection of this process holds the lock
    control = tmp_path / "control.db"
    conn = sqlite3.connect(control, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t (n INTEGER)")
    assert dms_lock(control) == "held"
    os.close(os.open(f"{control}-shm", os.O_RDONLY))
    assert dms_lock(control) == "free"
    conn.close()
