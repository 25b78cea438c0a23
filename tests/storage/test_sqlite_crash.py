"""Crash safety of `SQLiteStore.apply`: its one `BEGIN IMMEDIATE` transaction is all or nothing
even when the process is killed inside it (SCHEDULING.md "Never double-book").

A child process applies a call and blocks inside the transaction, after the resource rows and
the claims and before the COMMIT (by wrapping `sqlite_claims.apply_claims`, which runs last in
the transaction); the test reads the file meanwhile, kills the child with SIGKILL (no cleanup
runs), reopens the file and checks that nothing of the call is visible and no claim of it
remains. Instants are µs UTC.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
from pathlib import Path

import pytest

from fhir_server.storage.base import ResourceStore
from fhir_server.storage.sqlite import SQLiteStore
from resources.fhir_dates import now_us
from tests.storage.contract import snapshot
from tests.storage.test_claims_contract import SCOPE, book, held, nothing_of

ROOT = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent(
    """
    import asyncio, sys, time
    from fhir_server.storage import sqlite_claims
    from fhir_server.storage.sqlite import SQLiteStore
    from tests.storage.test_claims_contract import book

    inner = sqlite_claims.apply_claims

    def apply_then_block(conn, sets, now):
        inner(conn, sets, now)
        print("inside", flush=True)
        time.sleep(120)

    sqlite_claims.apply_claims = apply_then_block

    async def main():
        store = SQLiteStore(sys.argv[1])
        await store.start()
        await store.apply([book("a", [2, 3, 4], v=2), book("b", [1, 5])])

    asyncio.run(main())
    """
)
"""The dying process: `a` gives up minute 1 and takes 4, `b` takes 1 and 5, in one call."""


async def everything(store: ResourceStore) -> tuple[object, ...]:
    return (
        await snapshot(store, "Appointment"),
        await store.claims_in(SCOPE, 0, 100),
        await store.claims_of("Appointment/a"),
    )


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX SIGKILL")
async def test_apply_process_killed_inside_transaction_leaves_nothing(tmp_path: Path) -> None:
    path = str(tmp_path / "fhir.db")
    store = SQLiteStore(path)
    await store.start()
    await store.apply([book("a", [1, 2, 3])])
    before = await everything(store)
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        path,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(child.stdout.readline(), timeout=60)
        assert line == b"inside\n", child.stderr and await child.stderr.read()
        assert await everything(store) == before  # a reader never sees the open transaction
    finally:
        os.kill(child.pid, signal.SIGKILL)
        await asyncio.wait_for(child.wait(), timeout=30)
    assert child.returncode == -signal.SIGKILL
    await store.close()

    reopened = SQLiteStore(path)
    await reopened.start()
    try:
        assert await everything(reopened) == before
        assert await nothing_of(reopened, "b")
        assert await reopened.claims_of("Appointment/a") == held("Appointment/a", [1, 2, 3])
        assert await reopened.recover(now_us() + 3_600_000_000) == 0
        await reopened.apply([book("c", [4, 5])])  # the time the dead call wanted is free
        assert await reopened.claims_of("Appointment/c") == held("Appointment/c", [4, 5])
    finally:
        await reopened.close()
