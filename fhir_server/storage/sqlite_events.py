"""SQLite's event log and leases (`base.ResourceStore` "Events", "Leases").

The event log is the `history` table: every committed version has a row, written in the
apply's own transaction, and its `hseq` (INTEGER PRIMARY KEY AUTOINCREMENT) is its event
number. Writers are serialised by `BEGIN IMMEDIATE` (across processes by the file lock), so
`hseq` grows in commit order and a WAL reader never sees a smaller number appear later: there
is nothing to seal. Leases are rows of the `locks` table `(key, expires, owner)`, given up with
`sqlite_writes.release_lock`.

Instants are µs since the epoch, UTC.
"""

from __future__ import annotations

import sqlite3

from fhir_server.model import Event
from fhir_server.storage.sqlite_rows import stored_row

__all__ = ["events_after", "latest_event", "take_lease"]


def events_after(conn: sqlite3.Connection, after: int, limit: int) -> list[Event]:
    """The history rows with `hseq > after`, by hseq, at most `limit`, as events."""
    rows = conn.execute(
        "SELECT hseq, res_type, res_id, version_id, last_updated, deleted, content, method "
        "FROM history WHERE hseq > ? ORDER BY hseq LIMIT ?",
        (after, limit),
    ).fetchall()
    return [Event(int(r[0]), stored_row(r[1:])) for r in rows]


def latest_event(conn: sqlite3.Connection) -> int:
    """The highest `hseq` (0 for an empty history)."""
    row = conn.execute("SELECT max(hseq) FROM history").fetchone()
    return int(row[0] or 0)


def take_lease(conn: sqlite3.Connection, key: str, owner: str, now: int, expires: int) -> bool:
    """Insert the lease `key` for `owner` until `expires`, or renew / take it over when it is
    `owner`'s or lapsed before `now`; False while another owner's lease runs."""
    cur = conn.execute(
        "INSERT INTO locks (key, expires, owner) VALUES (?, ?, ?) "
        "ON CONFLICT (key) DO UPDATE SET expires = excluded.expires, owner = excluded.owner "
        "WHERE locks.owner = excluded.owner OR locks.expires < ?",
        (key, expires, owner, now),
    )
    return cur.rowcount == 1
