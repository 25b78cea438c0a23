"""The ResourceStore contract: the event log (the outbox) and leases.

Every committed version is an event, numbered in the order readers first see it; a failed
apply leaves none (ARCHITECTURE.md "Events and background work"). Leases are renewable and
owner-checked. Builders and the `store` fixture: `contract.py`, `conftest.py`.
"""

from __future__ import annotations

import pytest

from fhir_server.storage.base import ResourceStore, WriteOp
from resources.errors import StoreConflict
from tests.storage.contract import create, delete, index, update, version


async def _events(store: ResourceStore, after: int) -> list[tuple[int, str, int, bool]]:
    await store.seal_events()
    return [
        (
            e.number,
            f"{e.version.resource_type}/{e.version.id}",
            e.version.version_id,
            e.version.deleted,
        )
        for e in await store.events_after(after, 100)
    ]


async def test_events_every_committed_version_in_commit_order_deletes_included(
    store: ResourceStore,
) -> None:
    start = await store.latest_event()
    a1 = await create(store, "Patient", "a")
    b1 = await create(store, "Appointment", "b")
    await update(store, a1)
    await delete(store, b1)
    events = await _events(store, start)
    assert [e[1:] for e in events] == [
        ("Patient/a", 1, False),
        ("Appointment/b", 1, False),
        ("Patient/a", 2, False),
        ("Appointment/b", 2, True),
    ]
    numbers = [e[0] for e in events]
    assert numbers == sorted(set(numbers)) and numbers[0] > start
    assert await store.latest_event() == numbers[-1]
    assert await _events(store, numbers[-1]) == []
    assert [e[0] for e in await _events(store, numbers[1])] == numbers[2:]
    assert len(await store.events_after(start, 3)) == 3


async def test_events_content_is_the_version_written(store: ResourceStore) -> None:
    start = await store.latest_event()
    written = await create(store, "Slot", "s")
    await store.seal_events()
    [event] = await store.events_after(start)
    assert event.version == written


async def test_events_failed_apply_leaves_no_event(store: ResourceStore) -> None:
    await create(store, "Patient", "a")
    start = await _events(store, 0)
    ops = [
        WriteOp(version("Patient", "b"), 0, index()),
        WriteOp(version("Patient", "a", 1), None, index()),  # version 1 exists: conflict
    ]
    with pytest.raises(StoreConflict):
        await store.apply(ops)
    assert await _events(store, start[-1][0]) == []
    c = await create(store, "Patient", "c")
    assert [e[1] for e in await _events(store, start[-1][0])] == [f"Patient/{c.id}"]


async def test_events_seal_is_idempotent(store: ResourceStore) -> None:
    await create(store, "Patient", "a")
    await store.seal_events()
    assert await store.seal_events() == 0
    assert len(await store.events_after(0)) == 1


# -- leases -----------------------------------------------------------------------------------

SECOND = 1_000_000


async def test_lease_one_owner_at_a_time_renewable_by_its_owner(store: ResourceStore) -> None:
    assert await store.lease("dispatcher", "A", 10 * SECOND)
    assert not await store.lease("dispatcher", "B", 10 * SECOND)
    assert await store.lease("dispatcher", "A", 10 * SECOND)  # renewed
    assert await store.lease("sweeper", "B", 10 * SECOND)  # another key is free
    await store.end_lease("dispatcher", "B")  # not B's: left alone
    assert not await store.lease("dispatcher", "B", 10 * SECOND)
    await store.end_lease("dispatcher", "A")
    assert await store.lease("dispatcher", "B", 10 * SECOND)


async def test_lease_lapsed_is_taken_over_and_old_owner_cannot_renew(
    store: ResourceStore,
) -> None:
    assert await store.lease("dispatcher", "A", -SECOND)  # lapsed at once
    assert await store.lease("dispatcher", "B", 10 * SECOND)
    assert not await store.lease("dispatcher", "A", 10 * SECOND)
