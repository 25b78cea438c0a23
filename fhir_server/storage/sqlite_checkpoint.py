"""The SQLite store's WAL checkpointer: copies the write-ahead log back into the database
file off the event loop, and keeps the log from growing without bound under steady writes.

Connections run with `wal_autocheckpoint=0` (`sqlite_schema.PRAGMAS`), so no request pays
for a checkpoint's copy and fsync; `checkpoint_loop` runs `checkpoint_once` in a worker thread
every CHECKPOINT_SECONDS instead.

Why not PASSIVE alone: SQLite starts the log over from its beginning only when a writer
begins while every frame has been copied back. Under a steady write load a PASSIVE
checkpoint copies what was there when it started while new transactions keep appending, so
that moment never comes: the log grew by ~400 KB per `$book` (about 100 changed pages) to
1 GB in 8 s of bench/booking.py, every page read searched a wal-index grown as large, and
commits slowed as the file kept growing. `checkpoint_once` therefore follows a PASSIVE copy
that found more than RESTART_FRAMES frames with a second PASSIVE copy (the frames appended
meanwhile) and a RESTART checkpoint, which holds new writers back (they wait off the loop,
`sqlite_busy`) for the few frames left and until readers leave the log, so the next writer
starts it over. It waits at most RESTART_WAIT_MS; a busy RESTART is tried again next time.
`journal_size_limit` (`sqlite_schema.PRAGMAS`) then cuts the file back.

Spec: sqlite.org/wal.html ("Avoiding Excessively Large WAL Files"),
sqlite.org/c3ref/wal_checkpoint_v2.html.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from dataclasses import dataclass

__all__ = ["CHECKPOINT_SECONDS", "Checkpoint", "checkpoint_loop", "checkpoint_once"]

CHECKPOINT_SECONDS = 1.0
"""Seconds between checkpoints (`checkpoint_loop`)."""
RESTART_FRAMES = 4096
"""A log of more frames than this (pages of 4 KiB: 16 MiB) is restarted, not only copied."""
RESTART_WAIT_MS = 20
"""How long a RESTART checkpoint may hold new writers back and wait for readers (ms)."""
WARN_FRAMES = 65536
"""A log still this long (256 MiB) after a RESTART found writers busy is logged as a warning:
the write lock was never free for RESTART_WAIT_MS (a busier load than one writer per core)."""

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Checkpoint:
    """What one `checkpoint_once` did: `frames` in the log before it, whether it `restarted`
    the log (False also when RESTART found the database busy)."""

    frames: int
    restarted: bool


def checkpoint_once(conn: sqlite3.Connection) -> Checkpoint:
    """Copy the log of `conn`'s database back into the file; restart a large one (module
    docstring). Blocking: run it off the event loop. `conn` is the checkpointer's own
    connection (busy timeout RESTART_WAIT_MS).

    Raises:
        sqlite3.Error: the database cannot be read (not SQLITE_BUSY: a busy checkpoint
            reports it in its result row and is tried again next time).
    """
    _busy, frames, _copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    if frames <= RESTART_FRAMES:
        return Checkpoint(frames=max(frames, 0), restarted=False)
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
    busy, _log, _copied = conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
    return Checkpoint(frames=frames, restarted=not busy)


async def checkpoint_loop(target: str, every: float = CHECKPOINT_SECONDS) -> None:
    """Run `checkpoint_once` on the database file `target` in a worker thread every `every`
    seconds, until cancelled (`SQLiteStore` runs it as a task; every worker process runs
    one, and SQLite lets one checkpoint run at a time)."""
    conn = sqlite3.connect(target, check_same_thread=False, timeout=RESTART_WAIT_MS / 1000)
    try:
        while True:
            await asyncio.sleep(every)
            job = asyncio.ensure_future(asyncio.to_thread(checkpoint_once, conn))
            try:
                done = await asyncio.shield(job)
                if done.frames > WARN_FRAMES and not done.restarted:
                    _log.warning(
                        "the WAL of %s holds %d frames: writers never left room for a restart",
                        target,
                        done.frames,
                    )
            except sqlite3.Error as exc:  # tried again next time; the log only grows meanwhile
                _log.warning("WAL checkpoint of %s failed: %s", target, exc)
            except asyncio.CancelledError:
                # cancelling does not stop the worker thread: let its checkpoint finish
                # before the connection closes (closing it under a running statement
                # crashes the process)
                await job
                raise
    finally:
        conn.close()
