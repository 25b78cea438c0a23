"""SQLite rows read back as the store's values: a stored version, a page of search results
with its keyset cursors (`fhir_server.search.query` "Order", "Paging")."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fhir_server.model import Page, StoredResource
from fhir_server.search.query import Cursor, StoreQuery

__all__ = ["page_of", "stored_row"]


def stored_row(row: Sequence[Any]) -> StoredResource:
    """The StoredResource of a row `(res_type, res_id, version_id, last_updated, deleted,
    content, method)` (of `resources` or `history`)."""
    return StoredResource(
        resource_type=row[0],
        id=row[1],
        version_id=row[2],
        last_updated=row[3],
        deleted=bool(row[4]),
        content=row[5],
        method=row[6],
    )


def page_of(query: StoreQuery, rows: list[Any], n_sort: int, total: int | None) -> Page:
    """The Page of search rows `(seq, res_type, res_id, version_id, last_updated, method,
    content, sort values...)`, `query.count + 1` of them at most (one more means a next
    page), in page order whichever way the cursor points."""
    has_more = len(rows) > query.count
    rows = rows[: query.count]
    backwards = query.cursor is not None and not query.cursor.after
    if backwards:
        rows.reverse()
    resources = [StoredResource(r[1], r[2], r[3], r[4], False, r[6], r[5]) for r in rows]

    def cursor(row: Any, after: bool) -> Cursor:
        return Cursor(values=tuple(row[7 : 7 + n_sort]), seq=row[0], after=after)

    next_cursor = previous_cursor = None
    if rows:
        more_after = has_more if not backwards else True
        more_before = (query.cursor is not None) if not backwards else has_more
        if more_after:
            next_cursor = cursor(rows[-1], True)
        if more_before:
            previous_cursor = cursor(rows[0], False)
    return Page(resources, next_cursor, previous_cursor, total)
