"""The ResourceStore contract: recover (what a crashed apply left behind) and lock.

A lock's lease is shortened by monkeypatching `fhir_server.storage.locks.LOCK_TTL_US`, the one
lease every adapter uses, so no test sleeps through 30 seconds. Builders and the `store`
fixture: `contract.py`, `conftest.py`.
"""

from __future__ import annotations

import pytest

from fhir_server.storage import locks
from fhir_server.storage.base import ResourceStore, WriteOp
from resources.errors import StoreConflict
from resources.fhir_dates import now_us
from tests.storage.contract import DAY, create, delete, index, snapshot, tok, update, version

# -- recover: what a crashed apply left behind (SQLite: nothing, ever) ------------------------


async def test_recover_with_nothing_left_over_returns_zero_and_changes_nothing(
    store: ResourceStore,
) -> None:
    a1 = await create(store, "Patient", "a", tok("active", None, "true"))
    await update(store, a1, tok("active", None, "false"))
    await delete(store, await create(store, "Patient", "b"))
    before = await snapshot(store, "Patient")
    assert await store.recover(now_us() + DAY) == 0
    assert await store.recover(now_us() + DAY) == 0
    assert await snapshot(store, "Patient") == before


async def test_apply_failed_part_way_leaves_nothing_to_recover(store: ResourceStore) -> None:
    """An apply that fails while writing (version 1 of `a` exists already) undoes itself in
    the process: a later recovery finds nothing to do and changes nothing."""
    await create(store, "Patient", "a", tok("active", None, "true"))
    before = await snapshot(store, "Patient")
    ops = [
        WriteOp(version("Patient", "b"), 0, index(tok("active", None, "true"))),
        WriteOp(version("Patient", "c"), 0, index()),
        WriteOp(version("Patient", "a", 1), None, index(tok("active", None, "false"))),
    ]
    with pytest.raises(StoreConflict):
        await store.apply(ops)
    assert await store.recover(now_us() + DAY) == 0
    assert await snapshot(store, "Patient") == before
    assert await store.read("Patient", "b") is None


# -- lock -------------------------------------------------------------------------------------


async def test_lock_held_second_holder_times_out_with_conflict(store: ResourceStore) -> None:
    async with store.lock("Patient?identifier=x"):
        with pytest.raises(StoreConflict):
            async with store.lock("Patient?identifier=x", timeout=0.2):
                pytest.fail("a second holder entered a held lock")
        async with store.lock("Patient?identifier=y", timeout=0.2):
            pass
    async with store.lock("Patient?identifier=x", timeout=1.0):
        pass


async def test_lock_released_on_error_can_be_taken_again(store: ResourceStore) -> None:
    with pytest.raises(RuntimeError):
        async with store.lock("k"):
            raise RuntimeError("boom")
    async with store.lock("k", timeout=0.5):
        pass


async def test_lock_lapsed_holder_exits_after_takeover_new_holder_keeps_lock(
    store: ResourceStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = "Patient?identifier=lapsed"
    with monkeypatch.context() as lease:  # A's lease has lapsed by the time anyone looks
        lease.setattr(locks, "LOCK_TTL_US", -1_000_000)
        holder_a = store.lock(key, timeout=0.2)
        await holder_a.__aenter__()
    async with store.lock(key, timeout=0.2):  # B takes the lapsed lock over
        await holder_a.__aexit__(None, None, None)  # A's block ends while B holds the lock
        with pytest.raises(StoreConflict):
            async with store.lock(key, timeout=0.2):
                pytest.fail("a third holder entered the lock B holds")
    async with store.lock(key, timeout=0.2):  # B's own release frees it
        pass
