"""The SQLite schema on files made by older versions (`fhir_server/storage/sqlite_schema.py`)."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from fhir_server.storage.sqlite import SQLiteStore


def columns(path: Path, table: str) -> list[str]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]


def rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return conn.execute(sql).fetchall()


async def test_start_on_file_with_ownerless_locks_table_adds_owner_and_locks_work(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    first = SQLiteStore(str(path))
    await first.start()
    await first.close()
    with contextlib.closing(sqlite3.connect(path)) as conn:  # the table as versions before
        conn.execute("DROP TABLE locks")
        conn.execute("CREATE TABLE locks (key TEXT PRIMARY KEY, expires INTEGER NOT NULL)")
        conn.execute("INSERT INTO locks VALUES ('stale', 1)")  # left by a crashed old process
        conn.commit()
    for _ in range(2):  # idempotent: the second start finds the column
        again = SQLiteStore(str(path))
        await again.start()
        try:
            async with again.lock("stale", timeout=1.0), again.lock("fresh", timeout=1.0):
                held = rows(path, "SELECT key, length(owner) FROM locks ORDER BY key")
                assert held == [("fresh", 32), ("stale", 32)]  # uuid4 hex owner tokens
        finally:
            await again.close()
        assert columns(path, "locks") == ["key", "expires", "owner"]
        assert rows(path, "SELECT key FROM locks") == []
        assert rows(path, "SELECT version FROM schema_version") == [(1,)]
