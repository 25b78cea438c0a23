"""Time claims on SQLite: the `claims` table behind SCHEDULING.md "Never double-book".

`claims` (see `sqlite_schema.py`) has the primary key `(scope, quantum)`, so two owners can
never hold one key. `apply_claims` runs inside one `apply`'s savepoint of a group's `BEGIN
IMMEDIATE` transaction (`sqlite_group.py`), which SQLite's file lock serialises across
processes; a StoreConflict raised here rolls that savepoint back: nothing of the call
(resources, history, index and claims) is written, the group's other calls still are.
Instants are µs since the epoch, UTC.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from operator import itemgetter
from typing import Any

from fhir_server.storage.base import Claim, ClaimKey, ClaimRun, ClaimSet, is_live
from resources.errors import ClaimConflict

_TAKE = (
    "INSERT INTO claims (scope, quantum, owner, expires) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (scope, quantum) DO UPDATE SET owner = excluded.owner, "
    "expires = excluded.expires "
    "WHERE claims.owner = excluded.owner OR claims.expires < ?"
)
"""Take a free key, keep (re-date) one the owner holds, or take over an expired hold; a key
held live by another owner is left alone and counts no change."""


def apply_claims(conn: sqlite3.Connection, sets: Sequence[ClaimSet], now: int) -> None:
    """Make each owner of `sets` hold exactly its keys, inside the caller's transaction.

    Releases come first, so a key one owner of the call gives up may be taken by another.

    Args:
        conn: a connection inside a write transaction (the caller rolls its savepoint back
            on error).
        sets: the final claim sets of the call (`base.final_claim_sets`: keys unique and no
            key wanted by two owners).
        now: µs UTC; a claim of another owner with `expires < now` may be taken over.

    Raises:
        StoreConflict: a key is held by another owner whose claim is live (`key` =
            `{scope}#{quantum}`).
    """
    for cs in sets:
        wanted = {(k.scope, k.quantum) for k in cs.keys}
        held = conn.execute(
            "SELECT scope, quantum FROM claims WHERE owner = ?", (cs.owner,)
        ).fetchall()
        gone = [(s, q) for s, q in held if (s, q) not in wanted]
        if gone:
            conn.executemany("DELETE FROM claims WHERE scope = ? AND quantum = ?", gone)
    for cs in sets:
        if not cs.keys:
            continue
        rows = [(k.scope, k.quantum, cs.owner, cs.expires, now) for k in cs.keys]
        if conn.executemany(_TAKE, rows).rowcount != len(rows):
            _raise_conflict(conn, cs, now)


def _raise_conflict(conn: sqlite3.Connection, cs: ClaimSet, now: int) -> None:
    """Raise StoreConflict for the first key of `cs` held live by another owner."""
    for key in cs.keys:
        row = conn.execute(
            "SELECT owner, expires FROM claims WHERE scope = ? AND quantum = ?",
            (key.scope, key.quantum),
        ).fetchone()
        if row is not None and row[0] != cs.owner and is_live(row[1], now):
            raise ClaimConflict(f"{key} is held by {row[0]}", key=str(key))
    raise ClaimConflict(f"A claim of {cs.owner} could not be taken", key=cs.owner)


def claims_in(conn: sqlite3.Connection, scope: str, low: int, high: int, now: int) -> list[Claim]:
    """The claims of `scope` with `low <= quantum < high` live at `now` (µs), by quantum."""
    rows = conn.execute(
        "SELECT scope, quantum, owner, expires FROM claims "
        "WHERE scope = ? AND quantum >= ? AND quantum < ? "
        "AND (expires IS NULL OR expires >= ?) ORDER BY quantum",
        (scope, low, high, now),
    ).fetchall()
    return [_claim(r) for r in rows]


_LIVE_IN = "scope = ? AND quantum >= ? AND quantum < ? AND (expires IS NULL OR expires >= ?)"
_SPANS = (
    "SELECT owner, min(quantum), max(quantum) + 1, count(*) FROM claims "
    f"WHERE {_LIVE_IN} GROUP BY owner"
)
_QUANTA = f"SELECT quantum FROM claims WHERE {_LIVE_IN} AND owner = ? ORDER BY quantum"


def claim_runs(
    conn: sqlite3.Connection, scope: str, low: int, high: int, now: int
) -> list[ClaimRun]:
    """`ResourceStore.claim_runs`, live at `now` (µs): each owner's first and last quantum
    and count in the window, grouped by SQLite; an owner holding as many quanta as its span
    is one run (a booking), one with gaps in its span is read quantum by quantum. Measured
    on a schedule's 31 days with 2,340 claims (78 bookings): 0.63 ms, against 0.96 ms for
    merging the rows of the primary key's order in Python (most of it making 2,340 row
    tuples) and 2.5 ms for the same merge with a window function."""
    runs: list[ClaimRun] = []
    for owner, first, end, count in conn.execute(_SPANS, (scope, low, high, now)).fetchall():
        if count == end - first:
            runs.append((owner, first, end))
            continue
        start = stop = first
        for (quantum,) in conn.execute(_QUANTA, (scope, first, end, now, owner)).fetchall():
            if quantum != stop:
                runs.append((owner, start, stop))
                start = quantum
            stop = quantum + 1
        runs.append((owner, start, stop))
    runs.sort(key=itemgetter(1))
    return runs


def claims_of(conn: sqlite3.Connection, owner: str) -> list[Claim]:
    """Every claim of `owner`, expired ones included, by scope, quantum."""
    rows = conn.execute(
        "SELECT scope, quantum, owner, expires FROM claims WHERE owner = ? ORDER BY scope, quantum",
        (owner,),
    ).fetchall()
    return [_claim(r) for r in rows]


def release_expired(conn: sqlite3.Connection, now: int) -> list[str]:
    """Delete the claims with `expires < now` (µs) in one statement; the owners, sorted."""
    rows = conn.execute("DELETE FROM claims WHERE expires < ? RETURNING owner", (now,)).fetchall()
    return sorted({r[0] for r in rows})


def _claim(row: Sequence[Any]) -> Claim:
    return Claim(ClaimKey(row[0], int(row[1])), row[2], None if row[3] is None else int(row[3]))
