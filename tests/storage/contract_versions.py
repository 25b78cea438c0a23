"""The ResourceStore contract: create, read, vread, read_many, iter_all; apply's atomicity and
expected versions; update, delete and recreate; history.

Builders and the `store` fixture: `contract.py`, `conftest.py`.
"""

from __future__ import annotations

import asyncio

import pytest

from fhir_server.search.query import TokenCondition, TokenValue
from fhir_server.storage.base import ResourceStore, WriteOp
from resources.errors import StoreConflict
from tests.storage.contract import (
    T0,
    create,
    delete,
    ids,
    index,
    ordered,
    snapshot,
    tok,
    update,
    version,
)

# -- create / read / vread / read_many / iter_all --------------------------------------------


async def test_read_never_stored_returns_none(store: ResourceStore) -> None:
    assert await store.read("Patient", "nope") is None
    assert await store.vread("Patient", "nope", 1) is None


async def test_create_then_read_returns_the_version(store: ResourceStore) -> None:
    ver = await create(store, "Patient", "p1")
    assert await store.read("Patient", "p1") == ver
    assert await store.vread("Patient", "p1", 1) == ver
    assert await store.read("Practitioner", "p1") is None


async def test_vread_each_version_returns_that_version(store: ResourceStore) -> None:
    v1 = await create(store, "Patient", "p1")
    v2 = await update(store, v1)
    v3 = await update(store, v2)
    assert [await store.vread("Patient", "p1", n) for n in (1, 2, 3)] == [v1, v2, v3]
    assert await store.vread("Patient", "p1", 4) is None
    assert await store.read("Patient", "p1") == v3


async def test_read_many_mixed_refs_returns_live_current_only(store: ResourceStore) -> None:
    a = await create(store, "Patient", "a")
    b = await update(store, await create(store, "Patient", "b"))
    await delete(store, await create(store, "Patient", "gone"))
    got = await store.read_many(
        [("Patient", "a"), ("Patient", "b"), ("Patient", "gone"), ("Patient", "x"), ("Slot", "a")]
    )
    assert sorted(got, key=lambda r: r.id) == [a, b]
    assert await store.read_many([]) == []


async def test_iter_all_by_type_yields_live_current_versions(store: ResourceStore) -> None:
    ops = [WriteOp(version("Slot", f"s{i:04}"), 0, index()) for i in range(620)]
    await store.apply(ops)
    gone = await create(store, "Slot", "gone")
    await delete(store, gone)
    first = await store.read("Slot", "s0000")
    assert first is not None
    v2 = await update(store, first)
    await create(store, "Patient", "p1")
    slots = [r async for r in store.iter_all("Slot")]
    assert len(slots) == 620
    assert len({r.id for r in slots}) == 620
    assert slots[0] == v2
    assert {r.resource_type for r in [r async for r in store.iter_all()]} == {"Slot", "Patient"}
    assert len([r async for r in store.iter_all()]) == 621


# -- apply: atomicity and expected versions -------------------------------------------------


async def test_apply_several_ops_all_visible(store: ResourceStore) -> None:
    a1 = await create(store, "Patient", "a")
    ops = [
        WriteOp(version("Patient", "b"), 0, index(tok("active", None, "true"))),
        WriteOp(version("Patient", "a", 2), 1, index(tok("active", None, "true"))),
        WriteOp(version("Slot", "s"), None, index()),
    ]
    await store.apply(ops)
    assert await store.read("Patient", "b") == ops[0].version
    assert await store.read("Patient", "a") == ops[1].version
    assert await store.read("Slot", "s") == ops[2].version
    assert await store.vread("Patient", "a", 1) == a1
    active = TokenCondition("active", (TokenValue("*", "true"),))
    assert await ids(store, "Patient", active) == {"a", "b"}


@pytest.mark.parametrize("bad_position", [0, 1, 2])
async def test_apply_expected_version_mismatch_anywhere_writes_nothing(
    store: ResourceStore, bad_position: int
) -> None:
    a1 = await create(store, "Patient", "a", tok("active", None, "true"))
    before = await snapshot(store, "Patient")
    ops = [
        WriteOp(version("Patient", "b"), 0, index(tok("active", None, "true"))),
        WriteOp(version("Patient", "a", 2), 1, index(tok("active", None, "false"))),
        WriteOp(version("Patient", "c"), 0, index(tok("active", None, "true"))),
    ]
    bad = ops[bad_position]
    ops[bad_position] = WriteOp(bad.version, 7, bad.index)
    with pytest.raises(StoreConflict):
        await store.apply(ops)
    assert await store.read("Patient", "a") == a1
    assert await store.read("Patient", "b") is None
    assert await store.read("Patient", "c") is None
    assert await store.vread("Patient", "a", 2) is None
    assert await snapshot(store, "Patient") == before
    active = TokenCondition("active", (TokenValue("*", "true"),))
    assert await ids(store, "Patient", active) == {"a"}


async def test_apply_duplicate_version_part_way_writes_nothing(store: ResourceStore) -> None:
    """A failure found only while writing (version 1 of `a` exists already) leaves no trace."""
    a1 = await create(store, "Patient", "a", tok("active", None, "true"))
    before = await snapshot(store, "Patient")
    ops = [
        WriteOp(version("Patient", "b"), 0, index(tok("active", None, "true"))),
        WriteOp(version("Patient", "a", 1), None, index(tok("active", None, "false"))),
    ]
    with pytest.raises(StoreConflict):
        await store.apply(ops)
    assert await store.read("Patient", "a") == a1
    assert await store.read("Patient", "b") is None
    assert await snapshot(store, "Patient") == before
    active = TokenCondition("active", (TokenValue("*", "true"),))
    assert await ids(store, "Patient", active) == {"a"}


async def test_apply_expected_zero_on_existing_conflicts(store: ResourceStore) -> None:
    a1 = await create(store, "Patient", "a")
    with pytest.raises(StoreConflict) as caught:
        await store.apply([WriteOp(version("Patient", "a"), 0, index())])
    assert caught.value.status == 409
    assert await store.read("Patient", "a") == a1


async def test_apply_expected_zero_on_deletion_marker_conflicts(store: ResourceStore) -> None:
    gone = await delete(store, await create(store, "Patient", "a"))
    with pytest.raises(StoreConflict):
        await store.apply([WriteOp(version("Patient", "a", 3), 0, index())])
    assert await store.read("Patient", "a") == gone


async def test_apply_expected_version_on_missing_conflicts(store: ResourceStore) -> None:
    with pytest.raises(StoreConflict):
        await store.apply([WriteOp(version("Patient", "a", 2), 1, index())])
    assert await store.read("Patient", "a") is None


async def test_apply_expected_none_skips_the_check(store: ResourceStore) -> None:
    await create(store, "Patient", "a")
    v2 = version("Patient", "a", 2)
    await store.apply([WriteOp(v2, None, index())])
    new = version("Patient", "n")
    await store.apply([WriteOp(new, None, index())])
    assert await store.read("Patient", "a") == v2
    assert await store.read("Patient", "n") == new


async def test_apply_concurrent_updates_same_expected_version_one_wins(
    store: ResourceStore,
) -> None:
    a1 = await create(store, "Patient", "a")
    left, right = version("Patient", "a", 2), version("Patient", "a", 2)
    results = await asyncio.gather(
        store.apply([WriteOp(left, a1.version_id, index())]),
        store.apply([WriteOp(right, a1.version_id, index())]),
        return_exceptions=True,
    )
    assert sorted(type(r).__name__ for r in results) == ["NoneType", "StoreConflict"]
    winner = left if results[0] is None else right
    assert await store.read("Patient", "a") == winner
    assert await store.history("instance", "Patient", "a") == ([winner, a1], 2)


async def test_apply_concurrent_creates_same_id_one_wins(store: ResourceStore) -> None:
    first, second = version("Patient", "a"), version("Patient", "a")
    results = await asyncio.gather(
        store.apply([WriteOp(version("Slot", "s1"), 0, index()), WriteOp(first, 0, index())]),
        store.apply([WriteOp(version("Slot", "s2"), 0, index()), WriteOp(second, 0, index())]),
        return_exceptions=True,
    )
    assert sorted(type(r).__name__ for r in results) == ["NoneType", "StoreConflict"]
    winner, slot = (first, "s1") if results[0] is None else (second, "s2")
    assert await store.read("Patient", "a") == winner
    assert [r.id async for r in store.iter_all("Slot")] == [slot]
    assert (await store.history("system"))[1] == 2


async def test_apply_empty_ops_does_nothing(store: ResourceStore) -> None:
    await store.apply([])
    assert [r async for r in store.iter_all()] == []


async def test_update_keeps_seq_and_replaces_index(store: ResourceStore) -> None:
    a1 = await create(store, "Patient", "a", tok("active", None, "true"))
    await create(store, "Patient", "b", tok("active", None, "true"))
    await update(store, a1, tok("active", None, "false"))
    assert await ordered(store, "Patient") == ["a", "b"]
    active = TokenCondition("active", (TokenValue("*", "true"),))
    inactive = TokenCondition("active", (TokenValue("*", "false"),))
    assert await ids(store, "Patient", active) == {"b"}
    assert await ids(store, "Patient", inactive) == {"a"}


async def test_delete_marker_read_returns_deleted_search_excludes_history_keeps(
    store: ResourceStore,
) -> None:
    a1 = await create(store, "Patient", "a", tok("active", None, "true"))
    await create(store, "Patient", "b", tok("active", None, "true"))
    gone = await delete(store, a1)
    current = await store.read("Patient", "a")
    assert current == gone
    assert current is not None
    assert current.deleted
    assert current.content is None
    assert current.version_id == 2
    assert await store.vread("Patient", "a", 1) == a1
    assert await ids(store, "Patient") == {"b"}
    active = TokenCondition("active", (TokenValue("*", "true"),))
    assert await ids(store, "Patient", active) == {"b"}
    assert await store.count("Patient", [active]) == 1
    hist, total = await store.history("instance", "Patient", "a")
    assert (hist, total) == ([gone, a1], 2)


async def test_recreate_after_delete_keeps_seq(store: ResourceStore) -> None:
    a1 = await create(store, "Patient", "a")
    await create(store, "Patient", "b")
    gone = await delete(store, a1)
    a3 = version("Patient", "a", 3)
    await store.apply([WriteOp(a3, gone.version_id, index())])
    assert await store.read("Patient", "a") == a3
    assert await ordered(store, "Patient") == ["a", "b"]


# -- history --------------------------------------------------------------------------------


async def test_history_instance_newest_first_with_total(store: ResourceStore) -> None:
    v1 = await create(store, "Patient", "a", at=T0)
    v2 = await update(store, v1, at=T0 + 10)
    v3 = await update(store, v2, at=T0 + 20)
    await create(store, "Patient", "b", at=T0 + 5)
    assert await store.history("instance", "Patient", "a") == ([v3, v2, v1], 3)
    assert await store.history("instance", "Patient", "zzz") == ([], 0)


async def test_history_type_and_system_scopes_newest_first(store: ResourceStore) -> None:
    a1 = await create(store, "Patient", "a", at=T0)
    s1 = await create(store, "Slot", "s", at=T0 + 1)
    a2 = await update(store, a1, at=T0 + 2)
    b1 = await create(store, "Patient", "b", at=T0 + 3)
    assert await store.history("type", "Patient") == ([b1, a2, a1], 3)
    assert await store.history("type", "Slot") == ([s1], 1)
    assert await store.history("system") == ([b1, a2, s1, a1], 4)


async def test_history_same_instant_newest_write_first(store: ResourceStore) -> None:
    a1 = await create(store, "Patient", "a", at=T0)
    a2 = await update(store, a1, at=T0)
    assert await store.history("instance", "Patient", "a") == ([a2, a1], 2)


async def test_history_since_inclusive_before_exclusive(store: ResourceStore) -> None:
    v = [await create(store, "Patient", "a", at=T0)]
    for n in range(1, 5):
        v.append(await update(store, v[-1], at=T0 + n * 100))
    got = await store.history("instance", "Patient", "a", since=T0 + 100, before=T0 + 300)
    assert got == ([v[2], v[1]], 2)
    assert await store.history("type", "Patient", since=T0 + 400) == ([v[4]], 1)
    assert await store.history("system", before=T0 + 100) == ([v[0]], 1)


async def test_history_count_offset_pages_with_full_total(store: ResourceStore) -> None:
    v = [await create(store, "Patient", "a", at=T0)]
    for n in range(1, 7):
        v.append(await update(store, v[-1], at=T0 + n))
    newest_first = list(reversed(v))
    assert await store.history("instance", "Patient", "a", count=3) == (newest_first[:3], 7)
    page2 = await store.history("instance", "Patient", "a", count=3, offset=3)
    assert page2 == (newest_first[3:6], 7)
    page3 = await store.history("instance", "Patient", "a", count=3, offset=6)
    assert page3 == (newest_first[6:], 7)
    assert await store.history("system", count=2, offset=10) == ([], 7)
