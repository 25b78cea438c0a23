"""The ResourceStore contract's shared builders, and the map of its suite.

The contract is the engine-agnostic tests every adapter must pass unchanged, by theme:
`contract_versions.py` (create, read, vread, read_many, iter_all; apply's atomicity and expected
versions; update, delete; history), `contract_search.py` (string, token, date, number and
quantity conditions; several conditions together), `contract_references.py` (reference, uri,
missing and compartment conditions; chain and _has), `contract_paging.py` (sort, keyset
paging, totals), `contract_recover_locks.py` (recover, lock) and `contract_events.py` (the
event log, leases).

Each test takes the `store` fixture (`conftest.py` parametrizes it over the engines) and builds
its StoredResources, WriteOps and ResourceIndexes by hand with the builders below, independent
of any extraction code. Matching, order and paging semantics are those of
`fhir_server.search.query`'s docstring. `test_contract.py` imports every contract module so
pytest collects the tests.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence

from fhir_server.search.query import Condition, SortSpec, StoreQuery
from fhir_server.storage.base import ResourceStore, StoredResource, WriteOp
from resources.index_values import IndexEntry, ReferenceEntry, ResourceIndex, SortKey, TokenEntry

T0 = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z in µs
DAY = 86_400_000_000  # µs
UCUM = "http://unitsofmeasure.org"
SYS = "http://example.org/sys"
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
