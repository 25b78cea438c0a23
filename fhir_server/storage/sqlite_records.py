"""Records on SQLite: the `records` table behind `base.RecordStore` (see `sqlite_schema.py`).

`records (kind, key, doc, expires)` has the primary key `(kind, key)`; `doc` is the JSON
object as orjson bytes, `expires` µs since the epoch UTC or NULL ("never"). A row with
`expires < now` counts as absent until `purge_records` deletes it. Every function is one
statement in autocommit mode (the connection has `isolation_level=None`), so each is atomic
on its own and SQLite's file lock orders it against every other process's writes.
"""

from __future__ import annotations

import abc
import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar, cast

import orjson

from fhir_server.storage.base import is_live
from resources.errors import StoreConflict
from resources.fhir_dates import now_us

T = TypeVar("T")
_LIVE = "(expires IS NULL OR expires >= ?)"

_INSERT = (
    "INSERT INTO records (kind, key, doc, expires) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (kind, key) DO UPDATE SET doc = excluded.doc, expires = excluded.expires "
    "WHERE records.expires < ?"
)
"""Insert a new row or replace an expired one; a live row is left alone (no change)."""


def put_record(
    conn: sqlite3.Connection, kind: str, key: str, doc: dict[str, Any], expires: int | None
) -> None:
    """Create or replace the record `(kind, key)`; `expires` µs UTC or None."""
    conn.execute(
        "INSERT INTO records (kind, key, doc, expires) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (kind, key) DO UPDATE SET doc = excluded.doc, expires = excluded.expires",
        (kind, key, orjson.dumps(doc), expires),
    )


def insert_record(
    conn: sqlite3.Connection,
    kind: str,
    key: str,
    doc: dict[str, Any],
    expires: int | None,
    now: int,
) -> None:
    """Create the record unless one live at `now` (µs UTC) exists; an expired one is replaced.

    One upsert statement whose update applies only to an expired row: the primary key, not a
    read-then-write, decides between concurrent inserts.

    Raises:
        StoreConflict: a live record exists (`key` = `{kind}/{key}`); nothing was written.
    """
    changed = conn.execute(_INSERT, (kind, key, orjson.dumps(doc), expires, now)).rowcount
    if changed != 1:
        raise StoreConflict(f"The record {kind}/{key} exists already", key=f"{kind}/{key}")


def take_record(conn: sqlite3.Connection, kind: str, key: str, now: int) -> dict[str, Any] | None:
    """Delete the record live at `now` (µs UTC) and return its document (one statement,
    `DELETE ... RETURNING`, SQLite >= 3.35); None if there was none (an expired row stays)."""
    rows = conn.execute(
        f"DELETE FROM records WHERE kind = ? AND key = ? AND {_LIVE} RETURNING doc",
        (kind, key, now),
    ).fetchall()
    return _doc(rows[0][0]) if rows else None


def delete_record(conn: sqlite3.Connection, kind: str, key: str, now: int) -> bool:
    """Delete the record `(kind, key)`, expired or not; True if it was live at `now` (µs)."""
    rows = conn.execute(
        "DELETE FROM records WHERE kind = ? AND key = ? RETURNING expires", (kind, key)
    ).fetchall()
    return bool(rows) and is_live(rows[0][0], now)


def list_records(conn: sqlite3.Connection, kind: str, now: int) -> list[tuple[str, dict[str, Any]]]:
    """Every record of `kind` live at `now` (µs UTC) as `(key, doc)`, ordered by key."""
    rows = conn.execute(
        f"SELECT key, doc FROM records WHERE kind = ? AND {_LIVE} ORDER BY key", (kind, now)
    ).fetchall()
    return [(str(r[0]), _doc(r[1])) for r in rows]


def purge_records(conn: sqlite3.Connection, now: int) -> int:
    """Delete every record and hit counter with `expires < now` (µs UTC); how many."""
    gone = int(conn.execute("DELETE FROM records WHERE expires < ?", (now,)).rowcount)
    return gone + int(conn.execute("DELETE FROM hits WHERE expires < ?", (now,)).rowcount)


_HIT = (
    "INSERT INTO hits (kind, key, n, expires) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (kind, key) DO UPDATE SET "
    "n = CASE WHEN hits.expires < ? THEN excluded.n ELSE hits.n + excluded.n END, "
    "expires = CASE WHEN hits.expires < ? THEN excluded.expires ELSE hits.expires END "
    "RETURNING n"
)


def count_hit(
    conn: sqlite3.Connection, kind: str, key: str, expires: int, now: int, by: int = 1
) -> int:
    """`RecordStore.count_hit` in one upsert statement on the `hits` table (the primary key
    and SQLite's write lock make it atomic across processes)."""
    return int(conn.execute(_HIT, (kind, key, by, expires, now, now)).fetchone()[0])


def _doc(blob: bytes) -> dict[str, Any]:
    return cast(dict[str, Any], orjson.loads(blob))


class RecordCache:
    """`get_record` answers kept while the database is unchanged, for one connection.

    Unchanged means: the store's `change_stamp` (the WAL-index header, `sqlite_changes`) is
    the one the answers were read under; where the store has no stamp (an in-memory
    database), `PRAGMA data_version` (which changes when another connection commits) and
    `writes` (this connection's own writes: the store bumps it on every write call) stand
    still. A record read before then reads the same now. Documents are kept as the stored
    JSON bytes and parsed per call, so a caller may change what it gets.
    """

    LIMIT = 10_000

    def __init__(self) -> None:
        self.writes = 0
        self._stamp: bytes | tuple[int, int] | None = None
        self._entries: dict[tuple[str, str], tuple[bytes | None, int | None]] = {}

    def get(
        self, conn: sqlite3.Connection, kind: str, key: str, now: int, changes: bytes | None
    ) -> dict[str, Any] | None:
        """`get_record(conn, kind, key, now)`, from the cache when nothing changed since;
        `changes` is the store's `change_stamp()` taken before this call, or None."""
        stamp: bytes | tuple[int, int] = changes or (
            int(conn.execute("PRAGMA data_version").fetchone()[0]),
            self.writes,
        )
        if stamp != self._stamp:
            self._entries.clear()
            self._stamp = stamp
        hit = self._entries.get((kind, key))
        if hit is None:
            row = conn.execute(
                "SELECT doc, expires FROM records WHERE kind = ? AND key = ?", (kind, key)
            ).fetchone()
            hit = (row[0], row[1]) if row is not None else (None, None)
            if len(self._entries) < self.LIMIT:
                self._entries[(kind, key)] = hit
        blob, expires = hit
        return _doc(blob) if blob is not None and is_live(expires, now) else None


class RecordMethods(abc.ABC):
    """The `RecordStore` methods of `SQLiteStore`, over the functions above; the store
    supplies the three abstract methods."""

    @abc.abstractmethod
    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` on the loop thread's connection (waiting off the loop while another
        process holds the write lock) and return its result."""

    @abc.abstractmethod
    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """`_read` for a unit that writes (counted by the record cache)."""

    @abc.abstractmethod
    def _records_cache(self) -> RecordCache:
        """This connection's `RecordCache`."""

    @abc.abstractmethod
    def change_stamp(self) -> bytes | None:
        """`RecordStore.change_stamp`."""

    async def get_record(self, kind: str, key: str) -> dict[str, Any] | None:
        """The live record's document, or None."""
        now, cache, changes = now_us(), self._records_cache(), self.change_stamp()
        return await self._read(lambda conn: cache.get(conn, kind, key, now, changes))

    async def put_record(
        self, kind: str, key: str, doc: dict[str, Any], expires: int | None = None
    ) -> None:
        """Create or replace the record; `expires` µs UTC or None (never)."""
        await self._write(lambda conn: put_record(conn, kind, key, doc, expires))

    async def insert_record(
        self, kind: str, key: str, doc: dict[str, Any], expires: int | None = None
    ) -> None:
        """Create the record unless a live one exists (an expired one is replaced).

        Raises:
            StoreConflict: a live record exists (`key` = `{kind}/{key}`); nothing is written.
        """
        now = now_us()
        await self._write(lambda conn: insert_record(conn, kind, key, doc, expires, now))

    async def take_record(self, kind: str, key: str) -> dict[str, Any] | None:
        """Delete the live record and return its document in one statement; None if none."""
        now = now_us()
        return await self._write(lambda conn: take_record(conn, kind, key, now))

    async def delete_record(self, kind: str, key: str) -> bool:
        """Delete the record; True if a live one existed."""
        now = now_us()
        return await self._write(lambda conn: delete_record(conn, kind, key, now))

    async def list_records(self, kind: str) -> list[tuple[str, dict[str, Any]]]:
        """Every live record of `kind` as `(key, doc)`, ordered by key."""
        now = now_us()
        return await self._read(lambda conn: list_records(conn, kind, now))

    async def purge_records(self, now: int) -> int:
        """Delete every record and hit counter with `expires < now` (µs UTC); how many."""
        return await self._write(lambda conn: purge_records(conn, now))

    async def count_hit(self, kind: str, key: str, expires: int, by: int = 1) -> int:
        """Add `by` to the counter and return it (`RecordStore.count_hit`)."""
        now = now_us()
        return await self._write(lambda conn: count_hit(conn, kind, key, expires, now, by))
