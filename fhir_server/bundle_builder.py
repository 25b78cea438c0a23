"""Build `searchset` and `history` Bundles (R4 bundle.html, search.html#return,
http.html#history) from stored versions, embedding stored JSON without re-parsing it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlencode

import orjson

from fhir_server.model import StoredResource
from fhir_server.repository.includes import SearchResult
from fhir_server.search.cursor import encode_cursor
from fhir_server.search.query import Cursor, SearchRequest
from resources.fhir_dates import format_instant, now_us

Transform = Callable[[StoredResource], Any]


def embed(stored: StoredResource) -> Any:
    """The stored JSON as an orjson Fragment (serialised as is, no parse/dump round trip)."""
    assert stored.content is not None
    return orjson.Fragment(stored.content)


def full_url(base_url: str, stored: StoredResource) -> str:
    """`[base]/Type/id`."""
    return f"{base_url}/{stored.resource_type}/{stored.id}"


def _link(base_url: str, path: str, params: Sequence[tuple[str, str]]) -> str:
    query = urlencode(list(params))
    return f"{base_url}/{path}" + (f"?{query}" if query else "")


def searchset(
    result: SearchResult,
    request: SearchRequest,
    base_url: str,
    path: str,
    transform: Transform = embed,
) -> dict[str, Any]:
    """The searchset Bundle for one page: `self`, `next`, `previous` links (keyset cursors),
    `total` when known, entries with `search.mode` match/include.

    Args:
        path: the search path under the base, e.g. `Patient` or `Patient/1/Appointment`.
        transform: renders a stored resource into the entry (summary/elements hooks).
    """
    params = list(request.self_params)
    query_cursor = request.query.cursor
    links = [{"relation": "self", "url": _link(base_url, path, _with(params, query_cursor))}]
    page = result.page
    if page.next_cursor is not None:
        links.append(
            {"relation": "next", "url": _link(base_url, path, _with(params, page.next_cursor))}
        )
    if page.previous_cursor is not None:
        links.append(
            {
                "relation": "previous",
                "url": _link(base_url, path, _with(params, page.previous_cursor)),
            }
        )
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "meta": {"lastUpdated": format_instant(now_us())},
    }
    if result.total is not None:
        bundle["total"] = result.total
    bundle["link"] = links
    entries = [
        {
            "fullUrl": full_url(base_url, r),
            "resource": transform(r),
            "search": {"mode": "match"},
        }
        for r in page.resources
    ]
    entries.extend(
        {
            "fullUrl": full_url(base_url, r),
            "resource": transform(r),
            "search": {"mode": "include"},
        }
        for r in result.included
    )
    if entries:
        bundle["entry"] = entries
    return bundle


def _with(params: list[tuple[str, str]], cursor: Cursor | None) -> list[tuple[str, str]]:
    if cursor is None:
        return params
    return [*params, ("_cursor", encode_cursor(cursor))]


def history_bundle(
    versions: list[StoredResource],
    total: int,
    base_url: str,
    path: str,
    params: list[tuple[str, str]],
    offset: int,
    count: int,
    before: int,
) -> dict[str, Any]:
    """The history Bundle (newest first) with `self`/`next`/`previous` links; pages are
    offsets into the versions written before `before` (µs UTC), so they do not shift."""
    fixed = [*params, ("_before", format_instant(before))]
    links = [{"relation": "self", "url": _link(base_url, path, [*fixed, ("_offset", str(offset))])}]
    if offset + count < total:
        links.append(
            {
                "relation": "next",
                "url": _link(base_url, path, [*fixed, ("_offset", str(offset + count))]),
            }
        )
    if offset > 0:
        prev = max(0, offset - count)
        links.append(
            {"relation": "previous", "url": _link(base_url, path, [*fixed, ("_offset", str(prev))])}
        )
    entries: list[dict[str, Any]] = []
    for v in versions:
        entry: dict[str, Any] = {"fullUrl": full_url(base_url, v)}
        if not v.deleted:
            entry["resource"] = embed(v)
        method = v.method if v.method in ("POST", "PUT", "DELETE", "PATCH") else "PUT"
        url = f"{v.resource_type}" if method == "POST" else f"{v.resource_type}/{v.id}"
        entry["request"] = {"method": method, "url": url}
        entry["response"] = {
            "status": "201 Created" if method == "POST" else "200 OK",
            "etag": f'W/"{v.version_id}"',
            "lastModified": format_instant(v.last_updated),
        }
        if v.deleted:
            entry["response"]["status"] = "204 No Content"
        entries.append(entry)
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "history",
        "total": total,
        "link": links,
    }
    if entries:
        bundle["entry"] = entries
    return bundle
