"""The ResourceStore contract: search order by sort keys, keyset paging and totals (semantics:
`fhir_server.search.query`'s docstring).

Builders and the `store` fixture: `contract.py`, `conftest.py`.
"""

from __future__ import annotations

import pytest

from fhir_server.search.query import Cursor, SortSpec, StoreQuery, TokenCondition, TokenValue
from fhir_server.storage.base import Page, ResourceStore
from resources.index_values import SortKey
from tests.storage.contract import create, ordered, tok, update

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
