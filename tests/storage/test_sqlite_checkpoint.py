"""The WAL checkpointer keeps the log bounded under a steady write load
(`fhir_server.storage.sqlite_checkpoint`): a PASSIVE copy alone let it grow to 1 GB in
8 s of bench/booking.py, since a writer starts the log over only when it begins with every
frame copied back."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path

from fhir_server.storage import sqlite_checkpoint
from fhir_server.storage.sqlite_checkpoint import Checkpoint, checkpoint_once
from fhir_server.storage.sqlite_schema import PRAGMAS

ROW = os.urandom(3000)


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5)
    for pragma in PRAGMAS:
        conn.execute(pragma)
    return conn


def _write_steadily(path: Path, stop: threading.Event, written: list[int]) -> None:
    """Transactions of 20 rows of 3 KB until `stop`, 1 ms apart (the `$book` pattern: many
    changed pages per commit; a worker spends most of a request outside the write lock)."""
    conn = _connect(path)
    try:
        while not stop.is_set():
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany("INSERT INTO t (doc) VALUES (?)", [(ROW,)] * 20)
            conn.execute("COMMIT")
            written[0] += 1
            time.sleep(0.001)
    finally:
        conn.close()


def _frames(path: Path) -> int:
    wal = Path(f"{path}-wal")
    return (wal.stat().st_size - 32) // (4096 + 24) if wal.exists() else 0


def test_the_log_starts_over_while_writes_go_on(tmp_path: Path) -> None:
    path = tmp_path / "steady.db"
    setup = _connect(path)
    setup.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, doc BLOB)")
    setup.close()
    checkpointer = sqlite3.connect(
        path, check_same_thread=False, timeout=sqlite_checkpoint.RESTART_WAIT_MS / 1000
    )
    stop, written = threading.Event(), [0]
    writer = threading.Thread(target=_write_steadily, args=(path, stop, written))
    writer.start()
    results: list[Checkpoint] = []
    largest = 0
    try:
        # at least 2 s and three times the restart bound written (at most 10 s)
        start = time.monotonic()
        enough = 3 * 2 * sqlite_checkpoint.RESTART_FRAMES * 4096 // (20 * 3000)
        while time.monotonic() < start + 2 or (
            written[0] < enough and time.monotonic() < start + 10
        ):
            time.sleep(0.1)
            results.append(checkpoint_once(checkpointer))
            largest = max(largest, _frames(path))
    finally:
        stop.set()
        writer.join()
        checkpointer.close()
    assert written[0] > 200, written  # the writer really kept writing (~20 pages a commit)
    total_frames = written[0] * 20 * 3000 // 4096
    assert sum(r.restarted for r in results) >= 3, results  # again and again
    # the log never grew far past the restart threshold, whatever was written (PASSIVE
    # copies alone: it held every frame written, ~20,000 here)
    bound = 2 * sqlite_checkpoint.RESTART_FRAMES
    assert largest < bound < total_frames, (largest, total_frames)
    assert max(r.frames for r in results) < bound, results


def test_a_small_log_is_only_copied(tmp_path: Path) -> None:
    path = tmp_path / "quiet.db"
    conn = _connect(path)
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, doc BLOB)")
    conn.execute("INSERT INTO t (doc) VALUES (?)", (ROW,))
    result = checkpoint_once(conn)
    assert result.restarted is False
    assert 0 < result.frames <= sqlite_checkpoint.RESTART_FRAMES
    assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 1
    conn.close()
