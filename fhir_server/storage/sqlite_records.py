"""Records on SQLite: the `records` table behind `base.RecordStore` (see `sqlite_schema.py`).

`records (kind, key, doc, expires)` has the primary key `(kind, key)`; `doc` is the JSON
object as orjson bytes, `expires` µs since the epoch UTC or NULL ("never"). A row with
`expires < now` counts as absent until `purge_records` deletes it. Every function is one
statement in autocommit mode (the connection has `isolation_level=None`), so each is atomic
on its own and SQLite's file lock orders it against every other process's writes.
"""

from __future__ import annotations

import sqlite3
from typing import Any, cast

import orjson

from fhir_server.storage.base import is_live
from resources.errors import StoreConflict

_LIVE = "(expires IS NULL OR expires >= ?)"

_INSERT = (
    "INSERT INTO records (kind, key, doc, expires) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (kind, key) DO UPDATE SET doc = excluded.doc, expires = excluded.expires "
    "WHERE records.expires < ?"
)
"""Insert a new row or replace an expired one; a live row is left alone (no change)."""


def get_record(conn: sqlite3.Connection, kind: str, key: str, now: int) -> dict[str, Any] | None:
    """The document of the record `(kind, key)` live at `now` (µs UTC), or None."""
    row = conn.execute(
        "SELECT doc, expires FROM records WHERE kind = ? AND key = ?", (kind, key)
    ).fetchone()
    return _doc(row[0]) if row is not None and is_live(row[1], now) else None


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
    "INSERT INTO hits (kind, key, n, expires) VALUES (?, ?, 1, ?) "
    "ON CONFLICT (kind, key) DO UPDATE SET "
    "n = CASE WHEN hits.expires < ? THEN 1 ELSE hits.n + 1 END, "
    "expires = CASE WHEN hits.expires < ? THEN excluded.expires ELSE hits.expires END "
    "RETURNING n"
)


def count_hit(conn: sqlite3.Connection, kind: str, key: str, expires: int, now: int) -> int:
    """`RecordStore.count_hit` in one upsert statement on the `hits` table (the primary key
    and SQLite's write lock make it atomic across processes)."""
    return int(conn.execute(_HIT, (kind, key, expires, now, now)).fetchone()[0])


def _doc(blob: bytes) -> dict[str, Any]:
    return cast(dict[str, Any], orjson.loads(blob))
