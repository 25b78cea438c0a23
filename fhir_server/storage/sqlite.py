"""SQLite adapter of the ResourceStore: the embedded default (one file, WAL, zero setup).

Schema: `sqlite_schema.py`; SQL compilation: `sqlite_query.py`; claims: `sqlite_claims.py`;
writes: `sqlite_writes.py`, grouped into transactions by `sqlite_group.py`; the WAL
checkpointer: `sqlite_checkpoint.py`; the event log and leases:
`sqlite_events.py`; rows read back as values: `sqlite_rows.py`; records (`base.RecordStore`):
`sqlite_records.py`; whether anything changed (`change_stamp`): `sqlite_changes.py`; the lock:
`locks.py`.

Every statement runs on the calling (event-loop) thread's own connection. SQLite answers our
indexed queries in microseconds to a few milliseconds, and handing work to threads costs more
than it saves: under load the GIL convoy between the event loop and worker threads adds up to
several milliseconds per hop (measured with bench/rest.py: create p99 830 ms with a writer
thread). A write is one `BEGIN IMMEDIATE` transaction with no await inside it (the `apply`
calls of one event-loop turn share one, each in its own savepoint: `sqlite_group.py`), so
within a process writes never interleave; across processes (`--workers`) SQLite's file lock
serialises them: a statement that finds the lock taken waits at most 1 ms in place, then is retried
after an `asyncio.sleep` (`sqlite_busy.py`), so a waiting writer never holds its event loop.
WAL readers never wait for writers and see every committed write. A process killed inside a
write leaves nothing of it (SQLite rolls the open transaction back when the file is next
opened), so `recover` has nothing to do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from fhir_server.search.query import Condition, StoreQuery
from fhir_server.storage import locks, sqlite_busy, sqlite_claims, sqlite_events, sqlite_records
from fhir_server.storage.base import (
    Claim,
    ClaimRun,
    Event,
    HistoryScope,
    Page,
    StoredResource,
    WriteOp,
    final_claim_sets,
)
from fhir_server.storage.sqlite_changes import WalChanges
from fhir_server.storage.sqlite_checkpoint import checkpoint_loop
from fhir_server.storage.sqlite_group import GroupCommit
from fhir_server.storage.sqlite_query import compile_search, compile_where
from fhir_server.storage.sqlite_rows import page_of, stored_row
from fhir_server.storage.sqlite_schema import PRAGMAS, create_schema
from fhir_server.storage.sqlite_writes import apply_ops, release_lock, take_lock
from resources.fhir_dates import now_us

T = TypeVar("T")
log = logging.getLogger(__name__)
YEAR_US = 365 * 86_400_000_000


class SQLiteStore(sqlite_records.RecordMethods):
    """ResourceStore on one SQLite file.

    Args:
        path: the database file (created with its folder if missing), or `:memory:` for a
            private in-memory database shared by this store's connections.
    """

    def __init__(self, path: str) -> None:
        if path == ":memory:":
            self._target = f"file:fhir-{uuid.uuid4().hex}?mode=memory&cache=shared"
            self._uri = True
        else:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._target = path
            self._uri = False
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._keeper: sqlite3.Connection | None = None
        self._conn_lock = threading.Lock()
        self._checkpointer: asyncio.Task[None] | None = None
        self._changes: WalChanges | None = None
        self._shm: WalChanges | None = None
        self._group = GroupCommit(self._connection)

    # -- plumbing -------------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self._target,
                uri=self._uri,
                isolation_level=None,
                check_same_thread=False,
                timeout=10.0,  # only while the pragmas below run (WAL switch on a new file)
            )
            for pragma in PRAGMAS:
                conn.execute(pragma)
            conn.execute(f"PRAGMA busy_timeout = {sqlite_busy.SPIN_MS}")  # then sqlite_busy.run
            self._local.conn = conn
            with self._conn_lock:
                self._connections.append(conn)
        return conn

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._connection()
        return await sqlite_busy.run(lambda: fn(conn))

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        self._records_cache().writes += 1  # this connection's own change (RecordCache)
        return await self._read(fn)

    def change_stamp(self) -> bytes | None:
        """`RecordStore.change_stamp`: the WAL-index header of the file (`sqlite_changes`);
        None for an in-memory database or before `start`."""
        return self._changes.stamp() if self._changes is not None else None

    def _records_cache(self) -> sqlite_records.RecordCache:
        cache: sqlite_records.RecordCache | None = getattr(self._local, "records", None)
        if cache is None:
            cache = self._local.records = sqlite_records.RecordCache()
        return cache

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Create the schema and indexes if missing, upgrade an older file (idempotent;
        `sqlite_schema.create_schema`)."""
        if self._uri:  # keep the shared in-memory database alive while the store is open
            self._keeper = sqlite3.connect(self._target, uri=True, check_same_thread=False)
        await self._write(create_schema)
        if not self._uri:
            self._checkpointer = asyncio.create_task(checkpoint_loop(self._target))
            self._changes = await self._watch_changes()

    async def _watch_changes(self) -> WalChanges | None:
        """The file's WAL-index header (`sqlite_changes`), once seen to change with a commit
        of this store; else None (no WAL, or a `-shm` file that does not follow the
        commits): `change_stamp` then stays None and callers ask the database."""
        mode = await self._read(lambda conn: conn.execute("PRAGMA journal_mode").fetchone()[0])
        if str(mode).lower() != "wal":
            return None
        changes = self._shm = WalChanges(self._target)  # closed after the connections
        before = changes.stamp()
        await self.count_hit("store", "change-stamp check", now_us() + YEAR_US)  # a commit
        if before is not None and changes.stamp() not in (None, before):
            return changes
        log.warning("%s: the WAL-index header does not follow commits; not used", self._target)
        return None

    async def close(self) -> None:
        """Stop the checkpointer, checkpoint the WAL once more, close every connection, then
        the `-shm` descriptor of `change_stamp` (`sqlite_changes.WalChanges`)."""
        self._changes = None  # change_stamp answers None from now on
        if self._checkpointer is not None:
            self._checkpointer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checkpointer
            self._checkpointer = None
            with contextlib.suppress(sqlite3.Error):
                self._connection().execute("PRAGMA wal_checkpoint(TRUNCATE)")
        with self._conn_lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        if self._shm is not None:  # only now: closing its descriptor drops the file's locks
            self._shm.close()
            self._shm = None
        if self._keeper is not None:
            self._keeper.close()

    # -- reads ----------------------------------------------------------------------------

    async def read(self, resource_type: str, id: str) -> StoredResource | None:
        """Return the current version (possibly a deletion marker), or None."""

        def run(conn: sqlite3.Connection) -> StoredResource | None:
            row = conn.execute(
                "SELECT res_type, res_id, version_id, last_updated, deleted, content, method "
                "FROM resources WHERE res_type = ? AND res_id = ?",
                (resource_type, id),
            ).fetchone()
            return stored_row(row) if row else None

        return await self._read(run)

    async def read_many(self, refs: Sequence[tuple[str, str]]) -> list[StoredResource]:
        """Return the live current versions of the given `(type, id)` pairs that exist."""
        if not refs:
            return []

        def run(conn: sqlite3.Connection) -> list[StoredResource]:
            out: list[StoredResource] = []
            unique = list(dict.fromkeys(refs))
            for start in range(0, len(unique), 400):
                chunk = unique[start : start + 400]
                where = " OR ".join("(res_type = ? AND res_id = ?)" for _ in chunk)
                args = [x for pair in chunk for x in pair]
                rows = conn.execute(
                    "SELECT res_type, res_id, version_id, last_updated, deleted, content, "
                    f"method FROM resources WHERE deleted = 0 AND ({where})",
                    args,
                ).fetchall()
                out.extend(stored_row(r) for r in rows)
            return out

        return await self._read(run)

    async def vread(self, resource_type: str, id: str, version_id: int) -> StoredResource | None:
        """Return one version (possibly a deletion marker), or None."""

        def run(conn: sqlite3.Connection) -> StoredResource | None:
            row = conn.execute(
                "SELECT res_type, res_id, version_id, last_updated, deleted, content, method "
                "FROM history WHERE res_type = ? AND res_id = ? AND version_id = ?",
                (resource_type, id, version_id),
            ).fetchone()
            return stored_row(row) if row else None

        return await self._read(run)

    async def history(
        self,
        scope: HistoryScope,
        resource_type: str | None = None,
        id: str | None = None,
        since: int | None = None,
        before: int | None = None,
        count: int = 20,
        offset: int = 0,
    ) -> tuple[list[StoredResource], int]:
        """Return versions newest first and the total number of matching versions."""
        where: list[str] = ["1"]
        args: list[Any] = []
        if scope in ("instance", "type"):
            where.append("res_type = ?")
            args.append(resource_type)
        if scope == "instance":
            where.append("res_id = ?")
            args.append(id)
        if since is not None:
            where.append("last_updated >= ?")
            args.append(since)
        if before is not None:
            where.append("last_updated < ?")
            args.append(before)
        clause = " AND ".join(where)

        def run(conn: sqlite3.Connection) -> tuple[list[StoredResource], int]:
            total = conn.execute(f"SELECT COUNT(*) FROM history WHERE {clause}", args).fetchone()
            rows = conn.execute(
                "SELECT res_type, res_id, version_id, last_updated, deleted, content, method "
                f"FROM history WHERE {clause} ORDER BY last_updated DESC, hseq DESC "
                "LIMIT ? OFFSET ?",
                [*args, count, offset],
            ).fetchall()
            return [stored_row(r) for r in rows], int(total[0])

        return await self._read(run)

    async def search(self, query: StoreQuery, *, with_total: bool = False) -> Page:
        """Return one page of current matches in the query's order (keyset paging)."""
        (sql, args), n_sort = compile_search(query)
        count_sql, count_args = compile_where("r", query.resource_type, query.conditions)

        def run(conn: sqlite3.Connection) -> Page:
            rows = conn.execute(sql, args).fetchall()
            total = None
            if with_total:
                total = int(
                    conn.execute(
                        f"SELECT COUNT(*) FROM resources r WHERE {count_sql}", count_args
                    ).fetchone()[0]
                )
            return page_of(query, rows, n_sort, total)

        return await self._read(run)

    async def count(self, resource_type: str, conditions: Sequence[Condition]) -> int:
        """Count current matches of all conditions."""
        sql, args = compile_where("r", resource_type, tuple(conditions))

        def run(conn: sqlite3.Connection) -> int:
            return int(
                conn.execute(f"SELECT COUNT(*) FROM resources r WHERE {sql}", args).fetchone()[0]
            )

        return await self._read(run)

    async def claims_in(self, scope: str, low: int, high: int) -> list[Claim]:
        """The claims of `scope` with `low <= quantum < high` live now, ordered by quantum."""
        now = now_us()
        return await self._read(lambda conn: sqlite_claims.claims_in(conn, scope, low, high, now))

    async def claim_runs(self, scope: str, low: int, high: int) -> list[ClaimRun]:
        """The live claims of `scope` in `[low, high)` as each owner's runs (`base`)."""
        now = now_us()
        return await self._read(lambda c: sqlite_claims.claim_runs(c, scope, low, high, now))

    async def claims_of(self, owner: str) -> list[Claim]:
        """Every claim of `owner` (expired ones included), ordered by scope, quantum."""
        return await self._read(lambda conn: sqlite_claims.claims_of(conn, owner))

    async def release_expired(self, now: int) -> list[str]:
        """Delete the claims with `expires < now` (µs UTC); return their owners, sorted."""
        return await self._write(lambda conn: sqlite_claims.release_expired(conn, now))

    async def iter_all(self, resource_type: str | None = None) -> AsyncIterator[StoredResource]:
        """Iterate the live current versions, by seq, in batches of 500."""
        last = 0
        while True:
            where = "deleted = 0 AND seq > ?" + (" AND res_type = ?" if resource_type else "")
            args: list[Any] = [last] + ([resource_type] if resource_type else [])

            def run(conn: sqlite3.Connection, w: str = where, a: list[Any] = args) -> list[Any]:
                return conn.execute(
                    "SELECT res_type, res_id, version_id, last_updated, deleted, content, method,"
                    f" seq FROM resources WHERE {w} ORDER BY seq LIMIT 500",
                    a,
                ).fetchall()

            rows = await self._read(run)
            if not rows:
                return
            for row in rows:
                yield stored_row(row)
            last = rows[-1][7]

    # -- writes ---------------------------------------------------------------------------

    async def apply(self, ops: Sequence[WriteOp]) -> None:
        """Write all versions and claim sets in one savepoint of a `BEGIN IMMEDIATE`
        transaction shared with the other `apply` calls of this event-loop turn
        (`sqlite_group.GroupCommit`): all of them or nothing, committed before it returns.

        Claims follow `ResourceStore.apply` (SCHEDULING.md "Never double-book"); see
        `sqlite_claims.apply_claims`.

        Raises:
            StoreConflict: a version mismatch, or a claim key held live by another owner or
                wanted by two owners of the call; the database is left unchanged.
        """
        if not ops:
            return
        claim_sets = final_claim_sets(ops)
        self._records_cache().writes += 1  # this connection's own change (RecordCache)
        await self._group.submit(lambda conn: apply_ops(conn, ops, claim_sets))

    async def recover(self, now: int) -> int:
        """Nothing to recover: a crash rolls an apply's transaction back. Returns 0."""
        return 0

    def lock(
        self, key: str, *, timeout: float = 10.0
    ) -> contextlib.AbstractAsyncContextManager[None]:
        """A cross-process mutex held in the `locks` table under an owner token (`locks.hold`).

        Raises:
            StoreConflict: still held by another after `timeout` seconds.
        """
        return locks.hold(key, timeout, self._take_lock, self._release_lock, poll_s=0.01)

    async def _take_lock(self, key: str, owner: str, now: int, expires: int) -> bool:
        return await self._write(lambda conn: take_lock(conn, key, owner, now, expires))

    async def _release_lock(self, key: str, owner: str) -> None:
        await self._write(lambda conn: release_lock(conn, key, owner))

    # -- events and leases (sqlite_events.py) ----------------------------------------------

    async def seal_events(self, limit: int = 1000) -> int:
        """Nothing to seal: `history.hseq` is the event number, in commit order. Returns 0."""
        return 0

    async def events_after(self, after: int, limit: int = 500) -> list[Event]:
        """The history rows with `hseq > after`, in order, at most `limit`, as events."""
        return await self._read(lambda conn: sqlite_events.events_after(conn, after, limit))

    async def latest_event(self) -> int:
        """The highest history `hseq` (0 for none)."""
        return await self._read(sqlite_events.latest_event)

    async def lease(self, key: str, owner: str, ttl_us: int) -> bool:
        """Take or renew the lease `key` for `owner` for `ttl_us` µs; False while another
        owner's lease runs (`base.ResourceStore.lease`)."""
        now = now_us()
        return await self._write(
            lambda conn: sqlite_events.take_lease(conn, key, owner, now, now + ttl_us)
        )

    async def end_lease(self, key: str, owner: str) -> None:
        """Give the lease `key` up if `owner` holds it."""
        await self._release_lock(key, owner)
