"""The claims part of the ResourceStore contract, all or nothing (SCHEDULING.md "Never
double-book"): a refused apply writes nothing, takes no claim and leaves nothing to recover,
and concurrent applies never share a key.

Runs on every engine of the `store` fixture (sqlite, mongomock, and a real MongoDB when
FHIR_SERVER_TEST_MONGODB_URL is set); claim builders and conventions (minutes of
`Schedule/s1`, Appointment owners, µs UTC): `test_claims_contract.py`. The race test also runs
on `interleaved_store` (mongomock whose calls interleave, see there). Two MongoDB-only tests
use the same wrapper to line calls up or make one fail (`Fault`).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, cast

import pytest

from fhir_server.storage.base import ClaimSet, ResourceStore, StoredResource, WriteOp
from fhir_server.storage.mongo import MongoStore
from resources.errors import ClaimConflict, StoreConflict
from resources.fhir_dates import now_us
from tests.storage.contract import index, snapshot, version
from tests.storage.interleaving import YieldingDatabase
from tests.storage.test_claims_contract import HOUR, SCOPE, book, held, nothing_of

# -- all or nothing ------------------------------------------------------------------------------


async def test_apply_two_owners_same_key_in_one_call_conflicts_and_writes_nothing(
    store: ResourceStore,
) -> None:
    before = await snapshot(store, "Appointment")
    with pytest.raises(ClaimConflict) as caught:
        await store.apply([book("a", [1, 2]), book("b", [2, 3])])
    assert caught.value.key == f"{SCOPE}#2"
    assert await nothing_of(store, "a")
    assert await nothing_of(store, "b")
    assert await snapshot(store, "Appointment") == before


async def test_apply_version_mismatch_with_claims_leaves_claims_untouched(
    store: ResourceStore,
) -> None:
    await store.apply([book("a", range(3))])
    before = await snapshot(store, "Appointment")
    with pytest.raises(StoreConflict) as caught:
        await store.apply([book("x", [9]), book("a", [5, 6], v=2, expected=7)])
    assert caught.value.key == "Appointment/a"
    assert await nothing_of(store, "x")
    assert await store.claims_of("Appointment/a") == held("Appointment/a", range(3))
    assert await store.claims_in(SCOPE, 0, 100) == held("Appointment/a", range(3))
    assert await snapshot(store, "Appointment") == before


async def test_apply_conflict_in_middle_op_undoes_earlier_ops(store: ResourceStore) -> None:
    await store.apply([book("z", [50])])
    await store.apply([book("m", [60, 61])])
    before = await snapshot(store, "Appointment")
    ops = [
        book("m", [61, 62], v=2),
        book("a2", [49, 50]),
        book("a1", [10, 11], scope="Schedule/s2"),
    ]
    with pytest.raises(ClaimConflict) as caught:
        await store.apply(ops)
    assert caught.value.key == f"{SCOPE}#50"
    assert await nothing_of(store, "a1")
    assert await nothing_of(store, "a2")
    assert await store.vread("Appointment", "m", 2) is None
    assert await store.claims_of("Appointment/m") == held("Appointment/m", [60, 61])
    assert await store.claims_in(SCOPE, 0, 100) == [
        *held("Appointment/z", [50]),
        *held("Appointment/m", [60, 61]),
    ]
    assert await store.claims_in("Schedule/s2", 0, 100) == []
    assert await snapshot(store, "Appointment") == before


async def test_apply_resource_failure_after_claims_undoes_claims(store: ResourceStore) -> None:
    """A failure found only while writing (version 1 of `a` exists already) also puts the
    claims back: taken ones released, given-up ones held again."""
    await store.apply([book("a", range(3))])
    before = await snapshot(store, "Appointment")
    ops = [
        book("b", [5, 6]),
        WriteOp(version("Appointment", "a", 1), None, index(), ClaimSet("Appointment/a", ())),
    ]
    with pytest.raises(StoreConflict):
        await store.apply(ops)
    assert await nothing_of(store, "b")
    assert await store.claims_in(SCOPE, 0, 100) == held("Appointment/a", range(3))
    assert await snapshot(store, "Appointment") == before


async def test_apply_claim_conflict_leaves_nothing_to_recover(store: ResourceStore) -> None:
    """A call refused for a taken key undoes what it took in the process: recovering later
    finds nothing to do, and every claim is as before."""
    await store.apply([book("a", range(3)), book("h", [7], expires=now_us() + HOUR)])
    before = await snapshot(store, "Appointment")
    with pytest.raises(ClaimConflict):
        await store.apply([book("b", [5, 6]), book("a", [0, 9], v=2), book("c", [7])])
    assert await store.recover(now_us() + HOUR) == 0
    assert await nothing_of(store, "b")
    assert await nothing_of(store, "c")
    assert await store.claims_in(SCOPE, 0, 100) == [
        *held("Appointment/a", range(3)),
        *held("Appointment/h", [7], (await store.claims_of("Appointment/h"))[0].expires),
    ]
    assert await snapshot(store, "Appointment") == before


async def test_apply_mongo_failure_after_commit_point_is_completed_by_recover() -> None:
    """MongoDB only: a fault while the given-up claims are released (after the commit point)
    leaves the call committed: apply returns and its versions show; the released keys stay
    held (never freed early) until `recover`, after the call's lease, completes the call."""
    from mongomock_motor import AsyncMongoMockClient

    from fhir_server.storage.mongo_journal import LEASE_US

    deletes = 0

    async def fault(collection: str, method: str) -> None:
        nonlocal deletes
        if collection == "claims" and method == "delete_many":
            deletes += 1
            if deletes == 1:
                raise ConnectionError("lost the connection")

    database: Any = AsyncMongoMockClient()[f"fhir_test_{uuid.uuid4().hex}"]
    store = MongoStore(cast(Any, YieldingDatabase(database, 0, fault)))
    await store.start()
    await store.apply([book("a", [1, 2]), book("b", [3, 4])])
    ops = [book("a", [2], v=2), book("b", [4], v=2), book("c", [5])]
    await store.apply(ops)
    assert deletes == 1
    assert [await store.read("Appointment", id) for id in "abc"] == [o.version for o in ops]
    assert [c.key.quantum for c in await store.claims_in(SCOPE, 0, 100)] == [1, 2, 3, 4, 5]
    assert await store.recover(now_us()) == 0
    assert await store.recover(now_us() + LEASE_US + 1_000_000) == 1
    assert await store.claims_in(SCOPE, 0, 100) == [
        *held("Appointment/a", [2]),
        *held("Appointment/b", [4]),
        *held("Appointment/c", [5]),
    ]
    await store.close()


async def test_apply_mongo_simultaneous_takeover_of_expired_hold_one_wins() -> None:
    """MongoDB only: two takers read the same expired hold and update it at the same moment;
    the update filtered on the old owner and `expires` lets exactly one of them through."""
    from mongomock_motor import AsyncMongoMockClient

    arrived = 0
    both = asyncio.Event()

    async def line_up(collection: str, method: str) -> None:
        nonlocal arrived
        if collection == "claims" and method == "find_one_and_update" and arrived < 2:
            arrived += 1
            if arrived == 2:
                both.set()
            await both.wait()

    database: Any = AsyncMongoMockClient()[f"fhir_test_{uuid.uuid4().hex}"]
    store = MongoStore(cast(Any, YieldingDatabase(database, 0, line_up)))
    await store.start()
    await store.apply([book("old", [7], expires=now_us() - 1_000_000)])
    results = await asyncio.gather(
        store.apply([book("p", [7])]), store.apply([book("q", [7])]), return_exceptions=True
    )
    assert arrived == 2
    assert sorted(type(r).__name__ for r in results) == ["ClaimConflict", "NoneType"]
    winner = "p" if results[0] is None else "q"
    assert await store.claims_in(SCOPE, 0, 100) == held(f"Appointment/{winner}", [7])
    assert await nothing_of(store, "q" if winner == "p" else "p")
    await store.close()


async def race_overlapping_claims(store: ResourceStore) -> None:
    """50 applies race for overlapping windows of 5 minutes (owner i wants 2i .. 2i+4)."""
    wants = {f"r{i}": set(range(2 * i, 2 * i + 5)) for i in range(50)}
    results = await asyncio.gather(
        *(store.apply([book(id, sorted(q))]) for id, q in wants.items()), return_exceptions=True
    )
    assert all(r is None or isinstance(r, StoreConflict) for r in results), results
    winners = [id for id, r in zip(wants, results, strict=True) if r is None]
    assert winners
    taken: dict[int, str] = {}
    for id in winners:
        resource = await store.read("Appointment", id)
        assert isinstance(resource, StoredResource)
        assert await store.claims_of(f"Appointment/{id}") == held(f"Appointment/{id}", wants[id])
        for q in wants[id]:
            assert q not in taken, f"minute {q} booked by {taken.get(q)} and {id}"
            taken[q] = f"Appointment/{id}"
    for id in wants:
        if id not in winners:
            assert await nothing_of(store, id)
    claims = await store.claims_in(SCOPE, 0, 1000)
    assert [(c.key.quantum, c.owner) for c in claims] == sorted(taken.items())


async def test_apply_concurrent_overlapping_claims_one_owner_per_key(
    store: ResourceStore,
) -> None:
    await race_overlapping_claims(store)


async def test_apply_interleaved_overlapping_claims_one_owner_per_key(
    interleaved_store: ResourceStore,
) -> None:
    await race_overlapping_claims(interleaved_store)
