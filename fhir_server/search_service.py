"""Run a parsed search: the page from the store, `_total`, `_include`/`_revinclude`
(with `:iterate`), on any ResourceStore (R4 search.html#include, #total)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace

import orjson

from fhir_server.search.query import (
    Condition,
    Include,
    ReferenceCondition,
    ReferenceValue,
    SearchRequest,
    StoreQuery,
    TokenCondition,
    TokenValue,
)
from fhir_server.storage.base import Page, ResourceStore, StoredResource
from resources.index_values import ReferenceEntry
from resources.indexing import extract_index
from resources.search_parameters import search_params

MAX_INCLUDED = 1000
MAX_ITERATIONS = 3


Admit = Callable[[list[StoredResource]], Awaitable[list[StoredResource]]]
"""Filters resources to those a request may see, keeping their order."""


@dataclass(frozen=True, slots=True)
class SearchResult:
    """A page of matches plus included resources.

    Attributes:
        page: the store page (matches and cursors).
        included: resources added by `_include`/`_revinclude` (search mode `include`).
        total: the number of matches, when asked for or known cheaply; else None.
    """

    page: Page
    included: list[StoredResource]
    total: int | None


async def run_search(
    store: ResourceStore,
    request: SearchRequest,
    extra_conditions: tuple[Condition, ...] = (),
    default_tz: str = "UTC",
    narrowing: Mapping[str, tuple[Condition, ...]] | None = None,
    admit: Admit | None = None,
) -> SearchResult:
    """Execute `request` (plus `extra_conditions`, e.g. a compartment or scope narrowing).

    `narrowing` holds per-type conditions every resource of that type must also meet to be
    returned, as a match or as an `_include`/`_revinclude` (e.g. no `$find` proposals among
    Appointments, IHE ITI-118). `admit` keeps only the included resources the request may see
    (the access policy, `fhir_server.access`): others are left out of the Bundle silently.
    """
    query = request.query
    if extra_conditions:
        query = replace(query, conditions=query.conditions + extra_conditions)
    want_total = request.total in ("accurate", "estimate")
    if request.summary == "count":
        counted = await store.count(query.resource_type, query.conditions)
        return SearchResult(Page([], None, None, counted), [], counted)
    page = await store.search(query, with_total=want_total)
    total: int | None = page.total
    if total is None and query.cursor is None and page.next_cursor is None:
        total = len(page.resources)
    included: list[StoredResource] = []
    if (request.includes or request.revincludes) and page.resources:
        included = await _included(store, page.resources, request, default_tz, narrowing or {})
        if admit is not None:
            included = await admit(included)
    return SearchResult(page, included, total)


def _references(resource: StoredResource, inc: Include, default_tz: str) -> list[tuple[str, str]]:
    if resource.content is None or inc.source_type not in ("*", resource.resource_type):
        return []
    index = extract_index(orjson.loads(resource.content), default_tz)
    refs: list[tuple[str, str]] = []
    for entry in index.entries:
        if not isinstance(entry, ReferenceEntry) or entry.ref_type is None or entry.ref_id is None:
            continue
        if inc.param not in ("*", entry.param):
            continue
        if inc.target_type is not None and entry.ref_type != inc.target_type:
            continue
        refs.append((entry.ref_type, entry.ref_id))
    return refs


def _reverse_params(inc: Include) -> list[str]:
    """The reference parameters of `inc.source_type` a `_revinclude` follows: its own, or for
    `Source:*` every reference parameter of Source the index holds."""
    if inc.param != "*":
        return [inc.param]
    return [
        code
        for code, pdef in search_params(inc.source_type).items()
        if pdef.type == "reference" and pdef.expression is not None
    ]


async def _included(
    store: ResourceStore,
    matches: list[StoredResource],
    request: SearchRequest,
    default_tz: str,
    narrowing: Mapping[str, tuple[Condition, ...]],
) -> list[StoredResource]:
    seen = {(r.resource_type, r.id) for r in matches}
    out: list[StoredResource] = []
    frontier = matches
    for depth in range(MAX_ITERATIONS):
        includes = [i for i in request.includes if depth == 0 or i.iterate]
        revincludes = [i for i in request.revincludes if depth == 0 or i.iterate]
        if not (includes or revincludes) or not frontier:
            break
        wanted: list[tuple[str, str]] = []
        for inc in includes:
            for resource in frontier:
                wanted.extend(r for r in _references(resource, inc, default_tz) if r not in seen)
        found = await store.read_many(wanted[: MAX_INCLUDED - len(out)]) if wanted else []
        found = await _narrowed(store, found, narrowing)
        for inc in revincludes:
            found.extend(await _reverse(store, inc, frontier, narrowing))
        frontier = []
        for resource in found:
            key = (resource.resource_type, resource.id)
            if key in seen or len(out) >= MAX_INCLUDED:
                continue
            seen.add(key)
            out.append(resource)
            frontier.append(resource)
    return out


async def _narrowed(
    store: ResourceStore,
    found: list[StoredResource],
    narrowing: Mapping[str, tuple[Condition, ...]],
) -> list[StoredResource]:
    """Drop included resources that their type's narrowing excludes (one `_id` query a type)."""
    out = [r for r in found if r.resource_type not in narrowing]
    for rtype, conditions in narrowing.items():
        ids = tuple(TokenValue("*", r.id) for r in found if r.resource_type == rtype)
        if not ids:
            continue
        query = StoreQuery(rtype, (TokenCondition("_id", ids), *conditions), count=len(ids))
        kept = {r.id for r in (await store.search(query)).resources}
        out.extend(r for r in found if r.resource_type == rtype and r.id in kept)
    return out


async def _reverse(
    store: ResourceStore,
    inc: Include,
    frontier: list[StoredResource],
    narrowing: Mapping[str, tuple[Condition, ...]],
) -> list[StoredResource]:
    """The `inc.source_type` resources that reference the frontier (`_revinclude`), within
    that type's narrowing."""
    targets = tuple(
        ReferenceValue(r.resource_type, r.id)
        for r in frontier
        if inc.target_type in (None, r.resource_type)
    )
    found: list[StoredResource] = []
    for param in _reverse_params(inc) if targets else ():
        conditions = (ReferenceCondition(param, targets), *narrowing.get(inc.source_type, ()))
        page = await store.search(StoreQuery(inc.source_type, conditions, count=MAX_INCLUDED))
        found.extend(page.resources)
    return found
