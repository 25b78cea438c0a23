"""Group commit for the SQLite store: the `apply` calls of one event-loop turn written in one
`BEGIN IMMEDIATE` transaction, each inside its own savepoint.

Why: a write transaction holds SQLite's file lock, which all server processes share; each
`$book` held it 1.36 ms (its rows 0.49 ms, its time claims 0.28 ms, the COMMIT of ~100 pages
0.60 ms), so two workers waited for each other and bench/booking.py's closed loop stayed
near 470 bookings/s with a p99 3.5-3.8 x its p50 (a writer that found the lock taken
waited off the loop and resumed behind every other request in progress). Writing the
bookings that are ready together in one transaction pays the lock, the COMMIT and the pages
every booking touches (index leaves, the table ends) once for all of them, and takes the
lock a fraction as often: 601-704/s, p99/p50 2.4-3.0 in six runs on this 2-core machine
(447-478/s, 3.5-3.8 one transaction each, measured alternately in one session); REST create
(bench/rest.py, 1 worker) 414 -> 527/s.

How: `GroupCommit.submit(unit)` queues `unit` and, if it is the first of a new group,
schedules `flush` with `loop.call_soon`, so the group runs after every callback already
ready (the other requests that will also reach their write); a group takes at most
MAX_GROUP units. `flush` runs, on the event-loop
thread and without an await (no other request sees a half-written group): `BEGIN
IMMEDIATE`; per unit `SAVEPOINT` / the unit / `RELEASE`, or `ROLLBACK TO` when the unit
raised, so a unit that fails (a version or claim conflict) leaves nothing and the others
still commit; `COMMIT`. Each caller gets its own unit's result or exception. When the file
lock is held by another process after SQLite's 1 ms in-place wait, the group waits off the
loop (`sqlite_busy.run`) and is tried again whole; a unit whose caller was cancelled
meanwhile is left out (never written). If BEGIN or COMMIT fails otherwise, the transaction
is rolled back and every unit of the group gets the error: nothing of it was written.

Units must be synchronous, leave the connection's transaction alone and raise an Exception
for a refusal (`sqlite_writes.apply_ops`). Spec: sqlite.org/lang_savepoint.html.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fhir_server.storage import sqlite_busy

__all__ = ["MAX_GROUP", "GroupCommit", "Unit"]

MAX_GROUP = 32
"""The most units one transaction writes: the lock is then held for at most about that many
writes (~30 ms of `$book`s) before another process may take it; more units in one loop turn
make several groups, written one after the other."""

Unit = Callable[[sqlite3.Connection], Any]
"""One caller's writes, run inside a savepoint of the group's transaction."""


@dataclass
class _Pending:
    unit: Unit
    future: asyncio.Future[Any]


@dataclass
class _Outcome:
    value: Any = None
    error: BaseException | None = None


@dataclass
class _Groups(threading.local):
    """The group being gathered on this thread (each thread has its own loop and connection)."""

    gathering: list[_Pending] = field(default_factory=list)


class GroupCommit:
    """Groups the units submitted during one event-loop turn into one transaction.

    Args:
        connection: returns this thread's connection of the store (busy timeout
            `sqlite_busy.SPIN_MS`).
    """

    def __init__(self, connection: Callable[[], sqlite3.Connection]) -> None:
        self._connection = connection
        self._groups = _Groups()
        self._retries: set[asyncio.Future[None]] = set()

    async def submit(self, unit: Unit) -> Any:
        """Run `unit` in the next group's transaction; its result once committed.

        Raises:
            Whatever `unit` raised (its savepoint rolled back, the group's other units
            unaffected); ServiceUnavailable (503) if the file lock stayed taken for
            `sqlite_busy.BUSY_DEADLINE_S`; the sqlite3.Error of a failed BEGIN or COMMIT
            (nothing of the group written).
        """
        loop = asyncio.get_running_loop()
        pending = _Pending(unit, loop.create_future())
        groups = self._groups
        group = groups.gathering
        group.append(pending)
        if len(group) == 1:
            loop.call_soon(self.flush, group)
        if len(group) >= MAX_GROUP:
            groups.gathering = []  # full: the next unit starts the next group
        return await pending.future

    def flush(self, group: list[_Pending]) -> None:
        """Write `group` (an event-loop callback, `call_soon`); units submitted from now on
        start the next group."""
        if self._groups.gathering is group:
            self._groups.gathering = []
        try:
            outcomes = self._run(group)
        except Exception as exc:
            if isinstance(exc, sqlite3.OperationalError) and sqlite_busy.is_busy(exc):
                retry = asyncio.ensure_future(self._retry(group))
                self._retries.add(retry)  # kept until done (the loop holds tasks weakly)
                retry.add_done_callback(self._retries.discard)
                return
            _fail(group, exc)
            return
        except BaseException as exc:  # KeyboardInterrupt, SystemExit: fail the group, go on up
            _fail(group, exc)
            raise
        _settle(group, outcomes)

    async def _retry(self, group: list[_Pending]) -> None:
        try:
            outcomes = await sqlite_busy.run(lambda: self._run(group))
        except BaseException as exc:
            _fail(group, exc)
            if not isinstance(exc, Exception):
                raise
            return
        _settle(group, outcomes)

    def _run(self, group: list[_Pending]) -> list[_Outcome | None]:
        """One transaction for the units of `group` whose callers still wait (None for the
        others). Raises what BEGIN or COMMIT raised, with the transaction rolled back."""
        live = [p if not p.future.done() else None for p in group]
        if not any(live):
            return [None] * len(group)
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        outcomes: list[_Outcome | None] = []
        try:
            for pending in live:
                outcomes.append(None if pending is None else _in_savepoint(conn, pending.unit))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return outcomes


def _in_savepoint(conn: sqlite3.Connection, unit: Unit) -> _Outcome:
    conn.execute("SAVEPOINT unit")
    try:
        value = unit(conn)
    except Exception as exc:
        conn.execute("ROLLBACK TO unit")
        conn.execute("RELEASE unit")
        return _Outcome(error=exc)
    conn.execute("RELEASE unit")
    return _Outcome(value=value)


def _settle(group: list[_Pending], outcomes: list[_Outcome | None]) -> None:
    for pending, outcome in zip(group, outcomes, strict=True):
        if outcome is None or pending.future.done():
            continue
        if outcome.error is not None:
            pending.future.set_exception(outcome.error)
        else:
            pending.future.set_result(outcome.value)


def _fail(group: list[_Pending], exc: BaseException) -> None:
    for pending in group:
        if not pending.future.done():
            pending.future.set_exception(exc)
