"""The in-memory matcher (`fhir_server.search.match`) gives the store's answer: the search
and reference contract suites run against a SQLite store whose every search also matches each
current resource's index in memory and fails the test where the two differ.

The indexes are the ones each test wrote (captured from `apply`), so any semantic difference
between `matches` and the SQL of `sqlite_query.py` shows as a failed contract test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from fhir_server.search.match import decidable, matches
from fhir_server.search.query import StoreQuery
from fhir_server.storage.base import Page, WriteOp
from fhir_server.storage.sqlite import SQLiteStore
from resources.index_values import ResourceIndex
from tests.storage.contract_references import *  # noqa: F403
from tests.storage.contract_search import *  # noqa: F403


class MatchCheckingStore(SQLiteStore):
    """A SQLiteStore that checks `matches` against every search it answers."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.indexes: dict[tuple[str, str], ResourceIndex | None] = {}
        self.checked = 0

    async def apply(self, ops: Sequence[WriteOp]) -> None:
        await super().apply(ops)
        for op in ops:
            v = op.version
            self.indexes[(v.resource_type, v.id)] = None if v.deleted else op.index

    async def search(self, query: StoreQuery, *, with_total: bool = False) -> Page:
        page = await super().search(query, with_total=with_total)
        if query.cursor is None and page.next_cursor is None and decidable(query.conditions):
            found = {r.id for r in page.resources}
            expected = {
                rid
                for (rtype, rid), index in self.indexes.items()
                if rtype == query.resource_type
                and index is not None
                and matches(index, query.conditions)
            }
            assert found == expected, f"in-memory match differs for {query.conditions}"
            self.checked += 1
        return page


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Any]:
    """The checking store, started; at least one search was checked by each test."""
    s = MatchCheckingStore(str(tmp_path / "match.db"))
    await s.start()
    try:
        yield s
    finally:
        await s.close()
