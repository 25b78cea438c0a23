"""SQLite writes: one `apply` (versions, history, index entries, sort keys, compartments and
claims together) inside a savepoint of a group's `BEGIN IMMEDIATE` transaction
(`sqlite_group.py`), and the lock table (`locks.py`). The WAL checkpointer is
`sqlite_checkpoint.py`.

Called by `sqlite.SQLiteStore` on the event-loop thread; see `sqlite_schema.py` for the tables.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from fhir_server.storage import sqlite_claims
from fhir_server.storage.base import ClaimSet, WriteOp
from fhir_server.storage.sqlite_schema import INDEX_TABLES
from resources.errors import StoreConflict
from resources.fhir_dates import now_us
from resources.index_values import (
    DateEntry,
    NumberEntry,
    QuantityEntry,
    ReferenceEntry,
    ResourceIndex,
    StringEntry,
    TokenEntry,
    UriEntry,
)


def apply_ops(
    conn: sqlite3.Connection, ops: Sequence[WriteOp], claim_sets: Sequence[ClaimSet]
) -> None:
    """Write the versions of `ops` and the final `claim_sets` of one `apply`, inside the
    caller's write transaction (a savepoint of a group, `sqlite_group`).

    Raises:
        StoreConflict: a version mismatch, or a claim key held live by another owner; the
            caller rolls its savepoint back.
    """
    for op in ops:
        _apply_one(conn, op)
    if claim_sets:
        sqlite_claims.apply_claims(conn, claim_sets, now_us())


def _apply_one(conn: sqlite3.Connection, op: WriteOp) -> None:
    v = op.version
    row = conn.execute(
        "SELECT seq, version_id FROM resources WHERE res_type = ? AND res_id = ?",
        (v.resource_type, v.id),
    ).fetchone()
    current = row[1] if row else 0
    if op.expected_version is not None and op.expected_version != current:
        raise StoreConflict(
            f"{v.resource_type}/{v.id} is at version {current}, "
            f"not the expected {op.expected_version}",
            key=f"{v.resource_type}/{v.id}",
        )
    values = (v.version_id, v.last_updated, int(v.deleted), v.method, v.content)
    if row:
        seq = int(row[0])
        conn.execute(
            "UPDATE resources SET version_id = ?, last_updated = ?, deleted = ?, method = ?, "
            "content = ? WHERE seq = ?",
            (*values, seq),
        )
        for table in INDEX_TABLES:
            conn.execute(f"DELETE FROM {table} WHERE seq = ?", (seq,))
    else:
        cur = conn.execute(
            "INSERT INTO resources (res_type, res_id, version_id, last_updated, deleted, "
            "method, content) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (v.resource_type, v.id, *values),
        )
        seq = int(cur.lastrowid or 0)
    try:
        conn.execute(
            "INSERT INTO history (res_type, res_id, version_id, last_updated, deleted, method, "
            "content) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (v.resource_type, v.id, *values),
        )
    except sqlite3.IntegrityError as exc:
        raise StoreConflict(
            f"Version {v.version_id} of {v.resource_type}/{v.id} exists already",
            key=f"{v.resource_type}/{v.id}",
        ) from exc
    if not v.deleted and op.index is not None:
        _insert_index(conn, seq, v.resource_type, op.index)


def _insert_index(conn: sqlite3.Connection, seq: int, rtype: str, index: ResourceIndex) -> None:
    rows: dict[str, list[tuple[Any, ...]]] = {}
    for e in index.entries:
        match e:
            case StringEntry():
                rows.setdefault("idx_string", []).append((seq, rtype, e.param, e.norm, e.exact))
            case TokenEntry():
                rows.setdefault("idx_token", []).append(
                    (seq, rtype, e.param, e.system, e.code, e.text)
                )
            case DateEntry():
                rows.setdefault("idx_date", []).append((seq, rtype, e.param, e.low, e.high))
            case ReferenceEntry():
                rows.setdefault("idx_reference", []).append(
                    (
                        seq,
                        rtype,
                        e.param,
                        e.ref_type,
                        e.ref_id,
                        e.url,
                        e.identifier_system,
                        e.identifier_value,
                    )
                )
            case NumberEntry():
                rows.setdefault("idx_number", []).append((seq, rtype, e.param, e.value))
            case QuantityEntry():
                rows.setdefault("idx_quantity", []).append(
                    (seq, rtype, e.param, e.value, e.system, e.code, e.unit)
                )
            case UriEntry():
                rows.setdefault("idx_uri", []).append((seq, rtype, e.param, e.value))
    for table, values in rows.items():
        marks = ", ".join("?" * len(values[0]))
        conn.executemany(f"INSERT INTO {table} VALUES ({marks})", values)
    if index.sort_keys:
        conn.executemany(
            "INSERT OR REPLACE INTO idx_sort VALUES (?, ?, ?, ?)",
            [(seq, k.param, k.asc, k.desc) for k in index.sort_keys],
        )
    if index.compartments:
        conn.executemany(
            "INSERT OR IGNORE INTO compartments VALUES (?, ?)",
            [(seq, c) for c in dict.fromkeys(index.compartments)],
        )


def take_lock(conn: sqlite3.Connection, key: str, owner: str, now: int, expires: int) -> bool:
    """`locks.Take` on the `locks` table: insert `key` for `owner` until `expires` (µs UTC),
    or take it over if its lease ended before `now`; False while another holds it."""
    try:
        conn.execute(
            "INSERT INTO locks (key, expires, owner) VALUES (?, ?, ?)", (key, expires, owner)
        )
    except sqlite3.IntegrityError:
        cur = conn.execute(
            "UPDATE locks SET expires = ?, owner = ? WHERE key = ? AND expires < ?",
            (expires, owner, key, now),
        )
        return cur.rowcount == 1
    return True


def release_lock(conn: sqlite3.Connection, key: str, owner: str) -> None:
    """`locks.Release` on the `locks` table: delete `key` only while `owner` holds it."""
    conn.execute("DELETE FROM locks WHERE key = ? AND owner = ?", (key, owner))
