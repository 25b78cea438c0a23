"""Run a parsed search on the store: the page, `_total`, `_include`/`_revinclude` (with
`:iterate`); R4 search.html#include, #total. Used by `Repository.search`, which adds the access
policy's narrowing and filters what is included (`admit`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

import orjson

from fhir_server.model import Page, StoredResource
from fhir_server.search.query import (
    Condition,
    Include,
    ReferenceCondition,
    ReferenceValue,
    SearchRequest,
    StoreQuery,
)
from fhir_server.storage.base import ResourceStore
from resources.index_values import ReferenceEntry
from resources.indexing import extract_index
from resources.search_parameters import search_params

__all__ = ["MAX_INCLUDED", "SearchResult", "run_search"]

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
    extra_conditions: tuple[Condition, ...],
    default_tz: str,
    bases: tuple[str, ...],
    admit: Admit,
) -> SearchResult:
    """Execute `request` plus `extra_conditions` (a compartment, the policy's narrowing).

    Args:
        store: the store searched.
        request: the parsed search.
        extra_conditions: ANDed to the request's conditions.
        default_tz: zone for dates without an offset.
        bases: this server's base URLs (absolute references on them are local).
        admit: keeps the included resources the caller may see; others are left out of the
            Bundle silently.
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
        included = await admit(await _included(store, page.resources, request, default_tz, bases))
    return SearchResult(page, included, total)


def _references(
    resource: StoredResource, inc: Include, default_tz: str, bases: tuple[str, ...]
) -> list[tuple[str, str]]:
    if resource.content is None or inc.source_type not in ("*", resource.resource_type):
        return []
    index = extract_index(orjson.loads(resource.content), default_tz, bases)
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
    bases: tuple[str, ...],
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
                wanted.extend(
                    r for r in _references(resource, inc, default_tz, bases) if r not in seen
                )
        found = await store.read_many(wanted[: MAX_INCLUDED - len(out)]) if wanted else []
        for inc in revincludes:
            found.extend(await _reverse(store, inc, frontier))
        frontier = []
        for resource in found:
            key = (resource.resource_type, resource.id)
            if key in seen or len(out) >= MAX_INCLUDED:
                continue
            seen.add(key)
            out.append(resource)
            frontier.append(resource)
    return out


async def _reverse(
    store: ResourceStore, inc: Include, frontier: list[StoredResource]
) -> list[StoredResource]:
    """The `inc.source_type` resources that reference the frontier (`_revinclude`)."""
    targets = tuple(
        ReferenceValue(r.resource_type, r.id)
        for r in frontier
        if inc.target_type in (None, r.resource_type)
    )
    found: list[StoredResource] = []
    for param in _reverse_params(inc) if targets else ():
        conditions = (ReferenceCondition(param, targets),)
        page = await store.search(StoreQuery(inc.source_type, conditions, count=MAX_INCLUDED))
        found.extend(page.resources)
    return found
