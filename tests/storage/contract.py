"""The ResourceStore contract: engine-agnostic tests every adapter must pass unchanged.

Each test takes the `store` fixture (`conftest.py` parametrizes it over the engines) and builds
its StoredResources, WriteOps and ResourceIndexes by hand, independent of any extraction code.
Matching, order and paging semantics are those of `fhir_server.search.query`'s docstring.
A lock's lease is shortened by monkeypatching `fhir_server.storage.locks.LOCK_TTL_US`, the one
lease every adapter uses, so no test sleeps through 30 seconds.
`test_contract.py` imports these tests so pytest collects them.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Sequence
from typing import Literal

import pytest

from fhir_server.search.query import (
    ChainCondition,
    CompartmentCondition,
    Condition,
    Cursor,
    DateCondition,
    HasCondition,
    MissingCondition,
    NumberCondition,
    ParamType,
    Prefix,
    QuantityCondition,
    QuantityValue,
    RangeValue,
    ReferenceCondition,
    ReferenceValue,
    SortSpec,
    StoreQuery,
    StringCondition,
    TokenCondition,
    TokenValue,
    UriCondition,
)
from fhir_server.storage import locks
from fhir_server.storage.base import Page, ResourceStore, StoredResource, WriteOp
from resources.errors import StoreConflict
from resources.fhir_dates import now_us
from resources.index_values import (
    DateEntry,
    IndexEntry,
    NumberEntry,
    QuantityEntry,
    ReferenceEntry,
    ResourceIndex,
    SortKey,
    StringEntry,
    TokenEntry,
    UriEntry,
)

T0 = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z in µs
DAY = 86_400_000_000  # µs
UCUM = "http://unitsofmeasure.org"
_clock = itertools.count(T0, 1_000)


# -- builders -------------------------------------------------------------------------------


def version(
    rtype: str,
    id: str,
    v: int = 1,
    *,
    at: int | None = None,
    deleted: bool = False,
    method: str | None = None,
) -> StoredResource:
    """A version of `rtype/id` with small FHIR JSON content (None for a deletion)."""
    at = next(_clock) if at is None else at
    content = None
    if not deleted:
        body = {"resourceType": rtype, "id": id, "meta": {"versionId": str(v)}}
        content = json.dumps(body).encode()
    method = method or ("DELETE" if deleted else "POST" if v == 1 else "PUT")
    return StoredResource(rtype, id, v, at, deleted, content, method)


def index(
    *entries: IndexEntry, sort: Sequence[SortKey] = (), comps: Sequence[str] = ()
) -> ResourceIndex:
    """A ResourceIndex from entries, sort keys and compartments."""
    return ResourceIndex(entries=tuple(entries), sort_keys=tuple(sort), compartments=tuple(comps))


async def create(
    store: ResourceStore,
    rtype: str,
    id: str,
    *entries: IndexEntry,
    sort: Sequence[SortKey] = (),
    comps: Sequence[str] = (),
    at: int | None = None,
) -> StoredResource:
    """Store version 1 of `rtype/id` (expected version 0) and return it."""
    ver = version(rtype, id, 1, at=at)
    await store.apply([WriteOp(ver, 0, index(*entries, sort=sort, comps=comps))])
    return ver


async def update(
    store: ResourceStore,
    current: StoredResource,
    *entries: IndexEntry,
    sort: Sequence[SortKey] = (),
    at: int | None = None,
) -> StoredResource:
    """Store the next version after `current` (expected = its version) and return it."""
    ver = version(current.resource_type, current.id, current.version_id + 1, at=at)
    await store.apply([WriteOp(ver, current.version_id, index(*entries, sort=sort))])
    return ver


async def delete(store: ResourceStore, current: StoredResource) -> StoredResource:
    """Store a deletion marker after `current` and return it."""
    ver = version(current.resource_type, current.id, current.version_id + 1, deleted=True)
    await store.apply([WriteOp(ver, current.version_id, None)])
    return ver


async def ids(store: ResourceStore, rtype: str, *conditions: Condition) -> set[str]:
    """The ids of every current match of all conditions."""
    page = await store.search(StoreQuery(rtype, tuple(conditions), count=1000))
    return {r.id for r in page.resources}


async def ordered(store: ResourceStore, rtype: str, *sort: SortSpec) -> list[str]:
    """The ids of every current `rtype` resource in the order of `sort`."""
    page = await store.search(StoreQuery(rtype, sort=tuple(sort), count=1000))
    return [r.id for r in page.resources]


async def snapshot(store: ResourceStore, rtype: str) -> tuple[object, ...]:
    """Everything observable about `rtype`: search results, type history and its total."""
    page = await store.search(StoreQuery(rtype, count=1000), with_total=True)
    hist = await store.history("type", rtype, count=1000)
    system = await store.history("system", count=1000)
    return page.resources, page.total, hist, system


def tok(param: str, system: str | None, code: str | None, text: str | None = None) -> TokenEntry:
    return TokenEntry(param, system, code, text)


def ref(param: str, rtype: str | None, rid: str | None, url: str | None = None) -> ReferenceEntry:
    return ReferenceEntry(param, rtype, rid, url if url else f"{rtype}/{rid}" if rtype else None)


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


# -- search: string ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        (StringCondition("name", ("mul",)), {"muller"}),
        (StringCondition("name", ("MUL",)), set()),
        (StringCondition("name", ("ller",)), set()),
        (StringCondition("name", ("",)), {"muller", "dot", "under", "other"}),
        (StringCondition("name", ("Müller",), "exact"), {"muller"}),
        (StringCondition("name", ("muller",), "exact"), set()),
        (StringCondition("name", ("Mül",), "exact"), set()),
        (StringCondition("name", ("lle",), "contains"), {"muller"}),
        (StringCondition("name", ("_",), "contains"), {"under"}),
        (StringCondition("name", ("%",), "contains"), set()),
        (StringCondition("name", ("a.b",)), {"dot"}),
        (StringCondition("name", ("a(",)), set()),
        (StringCondition("name", ("mul", "anna")), {"muller", "other"}),
        (StringCondition("family", ("mul",)), set()),
    ],
)
async def test_search_string_modifiers_match_per_semantics(
    store: ResourceStore, condition: StringCondition, expected: set[str]
) -> None:
    await create(store, "Patient", "muller", StringEntry("name", "muller", "Müller"))
    await create(store, "Patient", "dot", StringEntry("name", "a.b(c", "a.b(c"))
    await create(store, "Patient", "under", StringEntry("name", "a_b", "a_b"))
    await create(
        store,
        "Patient",
        "other",
        StringEntry("name", "axb", "axb"),
        StringEntry("name", "anna", "Anna"),
    )
    await create(store, "Patient", "none", StringEntry("family", "x", "x"))
    assert await ids(store, "Patient", condition) == expected


# -- search: token ----------------------------------------------------------------------------

SYS = "http://example.org/sys"


async def _token_data(store: ResourceStore) -> None:
    await create(store, "Patient", "sys-a", tok("identifier", SYS, "a", "medical record"))
    await create(store, "Patient", "other-a", tok("identifier", "http://other", "a"))
    await create(store, "Patient", "nosys-a", tok("identifier", None, "a"))
    await create(store, "Patient", "sys-b", tok("identifier", SYS, "b", "social security"))
    await create(
        store,
        "Patient",
        "both",
        tok("identifier", SYS, "c"),
        tok("identifier", "http://other", "b"),
    )
    await create(store, "Patient", "none", tok("gender", None, "a"))


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ((TokenValue("*", "a"),), {"sys-a", "other-a", "nosys-a"}),
        ((TokenValue(SYS, "a"),), {"sys-a"}),
        ((TokenValue(None, "a"),), {"nosys-a"}),
        ((TokenValue(SYS, None),), {"sys-a", "sys-b", "both"}),
        ((TokenValue("*", None),), {"sys-a", "other-a", "nosys-a", "sys-b", "both"}),
        ((TokenValue(SYS, "a"), TokenValue("http://other", "b")), {"sys-a", "both"}),
        ((TokenValue("*", "zzz"),), set()),
    ],
)
async def test_search_token_system_code_match_per_semantics(
    store: ResourceStore, values: tuple[TokenValue, ...], expected: set[str]
) -> None:
    await _token_data(store)
    assert await ids(store, "Patient", TokenCondition("identifier", values)) == expected


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ((TokenValue("*", "a"),), {"sys-b", "both", "none"}),
        ((TokenValue(SYS, "a"),), {"other-a", "nosys-a", "sys-b", "both", "none"}),
        ((TokenValue(SYS, "a"), TokenValue("*", "b")), {"other-a", "nosys-a", "none"}),
        ((TokenValue(SYS, None),), {"other-a", "nosys-a", "none"}),
    ],
)
async def test_search_token_not_excludes_any_match_includes_missing(
    store: ResourceStore, values: tuple[TokenValue, ...], expected: set[str]
) -> None:
    await _token_data(store)
    condition = TokenCondition("identifier", values, negate=True)
    assert await ids(store, "Patient", condition) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (("medical",), {"sys-a"}),
        (("record",), set()),
        (("medical", "social sec"), {"sys-a", "sys-b"}),
    ],
)
async def test_search_token_text_matches_text_prefix(
    store: ResourceStore, text: tuple[str, ...], expected: set[str]
) -> None:
    await _token_data(store)
    condition = TokenCondition("identifier", tuple(TokenValue("*", t) for t in text), text=True)
    assert await ids(store, "Patient", condition) == expected


# -- search: date, number, quantity ------------------------------------------------------------


async def _date_data(store: ResourceStore) -> None:
    await create(store, "Slot", "d1", DateEntry("start", T0, T0 + DAY))
    await create(store, "Slot", "d2", DateEntry("start", T0 + DAY, T0 + 2 * DAY))
    await create(store, "Slot", "d3", DateEntry("start", T0, T0 + 3 * DAY))
    await create(store, "Slot", "d4", DateEntry("start", T0 + 3 * DAY, T0 + 4 * DAY))
    await create(store, "Slot", "none", DateEntry("end", T0, T0 + DAY))


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("eq", {"d2"}),
        ("ne", {"d1", "d3", "d4"}),
        ("gt", {"d3", "d4"}),
        ("ge", {"d2", "d3", "d4"}),
        ("lt", {"d1", "d3"}),
        ("le", {"d1", "d2", "d3"}),
        ("sa", {"d4"}),
        ("eb", {"d1"}),
        ("ap", {"d2", "d3"}),
    ],
)
async def test_search_date_each_prefix_matches_per_semantics(
    store: ResourceStore, prefix: Prefix, expected: set[str]
) -> None:
    await _date_data(store)
    day2 = RangeValue(prefix, float(T0 + DAY), float(T0 + 2 * DAY))
    assert await ids(store, "Slot", DateCondition("start", (day2,))) == expected


async def test_search_date_or_of_values_matches_either(store: ResourceStore) -> None:
    await _date_data(store)
    values = (
        RangeValue("eq", float(T0), float(T0 + DAY)),
        RangeValue("sa", float(T0 + 2 * DAY), float(T0 + 3 * DAY)),
    )
    assert await ids(store, "Slot", DateCondition("start", values)) == {"d1", "d4"}


async def test_search_date_multiple_entries_any_entry_matches(store: ResourceStore) -> None:
    await create(
        store,
        "Slot",
        "two",
        DateEntry("start", T0, T0 + DAY),
        DateEntry("start", T0 + 5 * DAY, T0 + 6 * DAY),
    )
    early = RangeValue("eb", float(T0 + DAY), float(T0 + 2 * DAY))
    late = RangeValue("sa", float(T0 + 3 * DAY), float(T0 + 4 * DAY))
    assert await ids(store, "Slot", DateCondition("start", (early,))) == {"two"}
    assert await ids(store, "Slot", DateCondition("start", (late,))) == {"two"}


@pytest.mark.parametrize(
    ("prefix", "low", "high", "expected"),
    [
        ("eq", 4.5, 5.5, {"n5"}),
        ("ap", 4.5, 5.5, {"n5"}),
        ("ne", 4.5, 5.5, {"n1", "n10"}),
        ("gt", 5.0, 5.0, {"n10"}),
        ("ge", 5.0, 5.0, {"n5", "n10"}),
        ("lt", 5.0, 5.0, {"n1"}),
        ("le", 5.0, 5.0, {"n1", "n5"}),
        ("sa", 5.0, 5.0, {"n10"}),
        ("eb", 5.0, 5.0, {"n1"}),
    ],
)
async def test_search_number_each_prefix_matches_per_semantics(
    store: ResourceStore, prefix: Prefix, low: float, high: float, expected: set[str]
) -> None:
    for name, value in (("n1", 1.0), ("n5", 5.0), ("n10", 10.0)):
        await create(store, "RiskAssessment", name, NumberEntry("probability", value))
    await create(store, "RiskAssessment", "none", NumberEntry("other", 5.0))
    condition = NumberCondition("probability", (RangeValue(prefix, low, high),))
    assert await ids(store, "RiskAssessment", condition) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (QuantityValue(RangeValue("eq", 4.5, 5.5), "*", None), {"mg5", "g5", "other5"}),
        (QuantityValue(RangeValue("eq", 4.5, 5.5), None, None), {"mg5", "g5", "other5"}),
        (QuantityValue(RangeValue("eq", 4.5, 5.5), "*", "mg"), {"mg5", "other5"}),
        (QuantityValue(RangeValue("eq", 4.5, 5.5), UCUM, "mg"), {"mg5"}),
        (QuantityValue(RangeValue("eq", 4.5, 5.5), UCUM, None), {"mg5", "g5"}),
        (QuantityValue(RangeValue("gt", 5.0, 5.0), UCUM, "mg"), {"mg10"}),
        (QuantityValue(RangeValue("le", 5.0, 5.0), "*", "g"), {"g5"}),
        (QuantityValue(RangeValue("ne", 4.5, 5.5), "*", "mg"), {"mg10"}),
    ],
)
async def test_search_quantity_value_system_code_match_per_semantics(
    store: ResourceStore, value: QuantityValue, expected: set[str]
) -> None:
    entries = {
        "mg5": QuantityEntry("value-quantity", 5.0, UCUM, "mg", "mg"),
        "g5": QuantityEntry("value-quantity", 5.0, UCUM, "g", "g"),
        "mg10": QuantityEntry("value-quantity", 10.0, UCUM, "mg", "mg"),
        "other5": QuantityEntry("value-quantity", 5.0, "http://other", "mg", "mg"),
    }
    for name, entry in entries.items():
        await create(store, "Observation", name, entry)
    condition = QuantityCondition("value-quantity", (value,))
    assert await ids(store, "Observation", condition) == expected


# -- search: reference, uri, missing, compartment --------------------------------------------


@pytest.mark.parametrize(
    ("values", "identifier", "expected"),
    [
        ((ReferenceValue(None, "1"),), False, {"to-patient", "to-group"}),
        ((ReferenceValue("Patient", "1"),), False, {"to-patient"}),
        ((ReferenceValue("Patient", "2"),), False, set()),
        ((ReferenceValue(url="http://x.org/fhir/Patient/9"),), False, {"to-url"}),
        (
            (ReferenceValue("Patient", "1"), ReferenceValue(url="http://x.org/fhir/Patient/9")),
            False,
            {"to-patient", "to-url"},
        ),
        (
            (ReferenceValue(identifier_system=SYS, identifier_value="mrn-1"),),
            True,
            {"by-identifier"},
        ),
        (
            (ReferenceValue(identifier_system="*", identifier_value="mrn-1"),),
            True,
            {"by-identifier"},
        ),
        ((ReferenceValue(identifier_system="http://no", identifier_value="mrn-1"),), True, set()),
    ],
)
async def test_search_reference_literal_url_identifier_match_per_semantics(
    store: ResourceStore,
    values: tuple[ReferenceValue, ...],
    identifier: bool,
    expected: set[str],
) -> None:
    await create(store, "Appointment", "to-patient", ref("actor", "Patient", "1"))
    await create(store, "Appointment", "to-group", ref("actor", "Group", "1"))
    await create(
        store, "Appointment", "to-url", ref("actor", None, None, "http://x.org/fhir/Patient/9")
    )
    await create(
        store,
        "Appointment",
        "by-identifier",
        ReferenceEntry("actor", None, None, None, SYS, "mrn-1"),
    )
    await create(store, "Appointment", "other-param", ref("location", "Patient", "1"))
    condition = ReferenceCondition("actor", values, identifier=identifier)
    assert await ids(store, "Appointment", condition) == expected


@pytest.mark.parametrize(
    ("modifier", "values", "expected"),
    [
        ("", ("http://a.org/fhir",), {"base"}),
        ("", ("http://a.org/fhir", "http://b.org"), {"base", "b"}),
        ("below", ("http://a.org/fhir",), {"base", "deep"}),
        ("below", ("http://a.org/fhir/",), {"deep"}),
        ("above", ("http://a.org/fhir/ValueSet/x/y",), {"base", "deep"}),
        ("above", ("http://a.org/fhir",), {"base"}),
        ("above", ("http://a.org",), set()),
    ],
)
async def test_search_uri_equals_below_above_match_per_semantics(
    store: ResourceStore,
    modifier: Literal["", "below", "above"],
    values: tuple[str, ...],
    expected: set[str],
) -> None:
    await create(store, "ValueSet", "base", UriEntry("url", "http://a.org/fhir"))
    await create(store, "ValueSet", "deep", UriEntry("url", "http://a.org/fhir/ValueSet/x"))
    await create(store, "ValueSet", "b", UriEntry("url", "http://b.org"))
    condition = UriCondition("url", values, modifier)
    assert await ids(store, "ValueSet", condition) == expected


@pytest.mark.parametrize(
    ("param", "param_type", "missing", "expected"),
    [
        ("service-type", "token", True, {"plain", "other"}),
        ("service-type", "token", False, {"typed"}),
        ("start", "date", True, {"typed", "other"}),
        ("start", "date", False, {"plain"}),
        ("schedule", "reference", True, {"typed", "plain"}),
        ("schedule", "reference", False, {"other"}),
    ],
)
async def test_search_missing_true_false_matches_absence_presence(
    store: ResourceStore, param: str, param_type: ParamType, missing: bool, expected: set[str]
) -> None:
    await create(store, "Slot", "typed", tok("service-type", SYS, "x"))
    await create(store, "Slot", "plain", DateEntry("start", T0, T0 + DAY))
    await create(store, "Slot", "other", ref("schedule", "Schedule", "1"), tok("status", None, "x"))
    condition = MissingCondition(param, param_type, missing)
    assert await ids(store, "Slot", condition) == expected


async def test_search_compartment_matches_members_only(store: ResourceStore) -> None:
    await create(store, "Appointment", "a", comps=["Patient/1", "Practitioner/7"])
    await create(store, "Appointment", "b", comps=["Patient/2"])
    await create(store, "Appointment", "c")
    assert await ids(store, "Appointment", CompartmentCondition("Patient/1")) == {"a"}
    assert await ids(store, "Appointment", CompartmentCondition("Practitioner/7")) == {"a"}
    assert await ids(store, "Appointment", CompartmentCondition("Patient/3")) == set()


async def test_search_conditions_and_together(store: ResourceStore) -> None:
    await create(
        store, "Slot", "free-early", tok("status", None, "free"), DateEntry("start", T0, T0 + 1)
    )
    await create(
        store, "Slot", "busy-early", tok("status", None, "busy"), DateEntry("start", T0, T0 + 1)
    )
    await create(
        store,
        "Slot",
        "free-late",
        tok("status", None, "free"),
        DateEntry("start", T0 + DAY, T0 + DAY + 1),
    )
    free = TokenCondition("status", (TokenValue("*", "free"),))
    early = DateCondition("start", (RangeValue("lt", float(T0 + 10), float(T0 + 10)),))
    assert await ids(store, "Slot", free, early) == {"free-early"}
    assert await store.count("Slot", [free, early]) == 1
    assert await store.count("Slot", [free]) == 2
    assert await store.count("Slot", []) == 3


async def test_search_other_type_never_matches(store: ResourceStore) -> None:
    await create(store, "Slot", "s", tok("status", None, "free"))
    await create(store, "Schedule", "s", tok("status", None, "free"))
    free = TokenCondition("status", (TokenValue("*", "free"),))
    page = await store.search(StoreQuery("Slot", (free,)))
    assert [(r.resource_type, r.id) for r in page.resources] == [("Slot", "s")]


# -- search: chain and _has ---------------------------------------------------------------------


async def test_search_chain_matches_references_to_matching_targets(store: ResourceStore) -> None:
    await create(store, "Schedule", "s1", ref("actor", "Practitioner", "7"))
    await create(store, "Schedule", "s2", ref("actor", "Practitioner", "8"))
    s3 = await create(store, "Schedule", "s3", ref("actor", "Practitioner", "7"))
    await delete(store, s3)
    await create(store, "Location", "s1", ref("actor", "Practitioner", "7"))
    await create(store, "Slot", "slot1", ref("schedule", "Schedule", "s1"))
    await create(store, "Slot", "slot2", ref("schedule", "Schedule", "s2"))
    await create(store, "Slot", "slot3", ref("schedule", "Schedule", "s1"))
    await create(store, "Slot", "slot4", ref("schedule", "Schedule", "s3"))
    await create(store, "Slot", "slot5", ref("schedule", "Location", "s1"))
    await create(store, "Slot", "slot6", ref("other", "Schedule", "s1"))
    actor7 = ReferenceCondition("actor", (ReferenceValue("Practitioner", "7"),))
    chain = ChainCondition("schedule", "Schedule", actor7)
    assert await ids(store, "Slot", chain) == {"slot1", "slot3"}
    assert await store.count("Slot", [chain]) == 2
    nobody = ReferenceCondition("actor", (ReferenceValue("Practitioner", "0"),))
    assert await ids(store, "Slot", ChainCondition("schedule", "Schedule", nobody)) == set()


async def test_search_chain_two_levels_matches(store: ResourceStore) -> None:
    await create(store, "Practitioner", "p7", StringEntry("name", "smith", "Smith"))
    await create(store, "Practitioner", "p8", StringEntry("name", "jones", "Jones"))
    await create(store, "Schedule", "s1", ref("actor", "Practitioner", "p7"))
    await create(store, "Schedule", "s2", ref("actor", "Practitioner", "p8"))
    await create(store, "Slot", "slot1", ref("schedule", "Schedule", "s1"))
    await create(store, "Slot", "slot2", ref("schedule", "Schedule", "s2"))
    smith = StringCondition("name", ("smi",))
    inner = ChainCondition("actor", "Practitioner", smith)
    assert await ids(store, "Slot", ChainCondition("schedule", "Schedule", inner)) == {"slot1"}


async def test_search_has_matches_targets_of_matching_sources(store: ResourceStore) -> None:
    for pid in ("p1", "p2", "p3", "p4"):
        await create(store, "Patient", pid)
    booked = tok("status", None, "booked")
    await create(store, "Appointment", "a1", ref("actor", "Patient", "p1"), booked)
    await create(
        store, "Appointment", "a2", ref("actor", "Patient", "p2"), tok("status", None, "cancelled")
    )
    await create(store, "Appointment", "a3", ref("actor", "Practitioner", "p3"), booked)
    a4 = await create(store, "Appointment", "a4", ref("actor", "Patient", "p2"), booked)
    await delete(store, a4)
    await create(store, "Appointment", "a5", ref("location", "Patient", "p4"), booked)
    await create(store, "Slot", "a6", ref("actor", "Patient", "p4"), booked)
    has = HasCondition(
        "Appointment", "actor", TokenCondition("status", (TokenValue("*", "booked"),))
    )
    assert await ids(store, "Patient", has) == {"p1"}
    assert await store.count("Patient", [has]) == 1


# -- search: sort -------------------------------------------------------------------------------


async def _sort_data(store: ResourceStore) -> None:
    def keys(name: str | None, day: float | None) -> list[SortKey]:
        return [SortKey("name", name, name), SortKey("date", day, day)]

    await create(store, "Patient", "r1", sort=keys("b", 2.0))
    await create(store, "Patient", "r2", sort=keys("a", 1.0))
    await create(store, "Patient", "r3", sort=keys(None, None))
    await create(store, "Patient", "r4", sort=keys("b", 1.0))
    await create(store, "Patient", "r5", sort=keys("c", None))
    await create(store, "Patient", "r6", sort=[SortKey("date", 3.0, 3.0)])


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ((), ["r1", "r2", "r3", "r4", "r5", "r6"]),
        ((SortSpec("name"),), ["r2", "r1", "r4", "r5", "r3", "r6"]),
        ((SortSpec("name", True),), ["r5", "r1", "r4", "r2", "r3", "r6"]),
        ((SortSpec("date"),), ["r2", "r4", "r1", "r6", "r3", "r5"]),
        ((SortSpec("date", True),), ["r6", "r1", "r2", "r4", "r3", "r5"]),
        ((SortSpec("name"), SortSpec("date", True)), ["r2", "r1", "r4", "r5", "r6", "r3"]),
        ((SortSpec("name", True), SortSpec("date")), ["r5", "r4", "r1", "r2", "r6", "r3"]),
        ((SortSpec("unknown"),), ["r1", "r2", "r3", "r4", "r5", "r6"]),
    ],
)
async def test_search_sort_keys_order_with_missing_last(
    store: ResourceStore, sort: tuple[SortSpec, ...], expected: list[str]
) -> None:
    await _sort_data(store)
    assert await ordered(store, "Patient", *sort) == expected


async def test_search_sort_multi_valued_uses_asc_and_desc_keys(store: ResourceStore) -> None:
    await create(store, "Slot", "wide", sort=[SortKey("start", "2026-01-01", "2026-12-31")])
    await create(store, "Slot", "mid", sort=[SortKey("start", "2026-06-01", "2026-06-01")])
    assert await ordered(store, "Slot", SortSpec("start")) == ["wide", "mid"]
    assert await ordered(store, "Slot", SortSpec("start", True)) == ["wide", "mid"]
    await create(store, "Slot", "late", sort=[SortKey("start", "2027-01-01", "2027-01-01")])
    assert await ordered(store, "Slot", SortSpec("start", True)) == ["late", "wide", "mid"]


# -- search: keyset paging, totals ------------------------------------------------------------

SORTS: list[tuple[SortSpec, ...]] = [
    (),
    (SortSpec("name"),),
    (SortSpec("name", True),),
    (SortSpec("date"),),
    (SortSpec("name"), SortSpec("date", True)),
    (SortSpec("date", True), SortSpec("name")),
]


async def _paging_data(store: ResourceStore) -> None:
    names = ["d", "a", None, "b", "a", None, "c", "b", "e", None, "a", "d", "b"]
    for i, name in enumerate(names):
        day = None if i % 4 == 3 else float(i % 3)
        sort = [SortKey("name", name, name), SortKey("date", day, day)]
        await create(store, "Patient", f"p{i:02}", sort=sort)


async def _page(store: ResourceStore, sort: tuple[SortSpec, ...], cursor: Cursor | None) -> Page:
    return await store.search(StoreQuery("Patient", sort=sort, count=3, cursor=cursor))


@pytest.mark.parametrize("sort", SORTS)
async def test_search_paging_forward_and_back_visits_every_row_once(
    store: ResourceStore, sort: tuple[SortSpec, ...]
) -> None:
    await _paging_data(store)
    everything = await ordered(store, "Patient", *sort)
    assert len(everything) == 13
    pages: list[list[str]] = []
    page = await _page(store, sort, None)
    assert page.previous_cursor is None
    while True:
        pages.append([r.id for r in page.resources])
        if page.next_cursor is None:
            break
        page = await _page(store, sort, page.next_cursor)
    assert [len(p) for p in pages] == [3, 3, 3, 3, 1]
    assert [i for p in pages for i in p] == everything
    back: list[list[str]] = []
    while page.previous_cursor is not None:
        page = await _page(store, sort, page.previous_cursor)
        back.append([r.id for r in page.resources])
        assert page.next_cursor is not None
    assert back == list(reversed(pages[:-1]))


@pytest.mark.parametrize("sort", SORTS)
async def test_search_paging_insert_between_pages_no_duplicates_or_gaps(
    store: ResourceStore, sort: tuple[SortSpec, ...]
) -> None:
    await _paging_data(store)
    everything = await ordered(store, "Patient", *sort)
    seen: list[str] = []
    page = await _page(store, sort, None)
    n = 0
    while True:
        seen.extend(r.id for r in page.resources)
        if page.next_cursor is None:
            break
        for name in ("a", "c", None) if n < 6 else ():  # between the first three pages
            n += 1
            day = None if name is None else 1.0
            await create(
                store,
                "Patient",
                f"new{n:02}",
                sort=[SortKey("name", name, name), SortKey("date", day, day)],
            )
        page = await _page(store, sort, page.next_cursor)
    assert len(seen) == len(set(seen))
    assert set(everything) <= set(seen)
    final = await ordered(store, "Patient", *sort)
    assert len(final) == 19
    assert [i for i in final if i in seen] == seen


async def test_search_with_total_counts_all_matches(store: ResourceStore) -> None:
    for i in range(7):
        await create(store, "Slot", f"s{i}", tok("status", None, "free" if i % 2 else "busy"))
    busy = TokenCondition("status", (TokenValue("*", "busy"),))
    page = await store.search(StoreQuery("Slot", (busy,), count=2), with_total=True)
    assert page.total == 4
    assert [r.id for r in page.resources] == ["s0", "s2"]
    assert page.next_cursor is not None
    assert (await store.search(StoreQuery("Slot", (busy,), count=2))).total is None
    following = await store.search(
        StoreQuery("Slot", (busy,), count=2, cursor=page.next_cursor), with_total=True
    )
    assert following.total == 4
    assert [r.id for r in following.resources] == ["s4", "s6"]
    assert following.next_cursor is None
    assert following.previous_cursor is not None


async def test_search_count_exact_fit_has_no_next_cursor(store: ResourceStore) -> None:
    for i in range(3):
        await create(store, "Slot", f"s{i}")
    page = await store.search(StoreQuery("Slot", count=3))
    assert [r.id for r in page.resources] == ["s0", "s1", "s2"]
    assert page.next_cursor is None
    assert page.previous_cursor is None
    assert await store.search(StoreQuery("Nothing")) == Page([], None, None, None)


async def test_search_returns_current_versions(store: ResourceStore) -> None:
    a1 = await create(store, "Slot", "a", tok("status", None, "free"))
    a2 = await update(store, a1, tok("status", None, "free"))
    page = await store.search(StoreQuery("Slot"))
    assert page.resources == [a2]


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
