"""Helpers shared by the search-by-type suites (test_search_types.py,
test_search_meta_uri_dates.py): writing a resource by PUT, and the ids a search matches."""

from __future__ import annotations

from typing import Any

import httpx


async def put(client: httpx.AsyncClient, resource: dict[str, Any]) -> dict[str, Any]:
    r = await client.put(f"/{resource['resourceType']}/{resource['id']}", json=resource)
    assert r.status_code in (200, 201), r.text
    return dict(r.json())


async def match_ids(client: httpx.AsyncClient, query: str) -> list[str]:
    """The sorted ids of the `match` entries of a search that must succeed."""
    r = await client.get(f"/{query}")
    assert r.status_code == 200, r.text
    entries = r.json().get("entry", [])
    return sorted(e["resource"]["id"] for e in entries if e["search"]["mode"] == "match")
