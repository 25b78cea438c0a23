"""Unchecked reads and small records, for the server's own rules and computations.

`Repository.lookup` answers what booking rules, availability, `$find`, `$find-slots` and the
sweepers must see whatever the caller's token (every Schedule, every claim): it never filters.
Whatever a caller is shown from it goes out through `Repository.admit` or a checked read.
`Repository.records` is the authorization server's and the operations' record store (RecordStore
contract, `fhir_server.model`). Neither hands out the store itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import orjson

from fhir_server.model import Claim, ClaimRun, Event, HistoryScope, Page, StoredResource
from fhir_server.search.query import Condition, StoreQuery
from fhir_server.storage.base import ResourceStore

__all__ = ["PAGE_SIZE", "Lookup", "Records"]

PAGE_SIZE = 1000
"""Rows fetched per store page when reading everything a query matches."""


class Lookup:
    """Reads that bypass the access policy (see the module docstring)."""

    def __init__(self, store: ResourceStore) -> None:
        self._store = store

    async def read(self, resource_type: str, id: str) -> StoredResource | None:
        """The current version (possibly a deletion marker), or None if never stored."""
        return await self._store.read(resource_type, id)

    async def vread(self, resource_type: str, id: str, version_id: int) -> StoredResource | None:
        """One version (possibly a deletion marker), or None."""
        return await self._store.vread(resource_type, id, version_id)

    async def read_many(self, refs: Sequence[tuple[str, str]]) -> list[StoredResource]:
        """The current, non-deleted versions of the `(type, id)` pairs that exist."""
        return await self._store.read_many(refs) if refs else []

    async def read_json(self, refs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Any]:
        """The current content of the `(type, id)` pairs that exist, as FHIR JSON by pair."""
        wanted = sorted(set(refs))
        found = await self.read_many(wanted)
        return {(s.resource_type, s.id): orjson.loads(s.content) for s in found if s.content}

    async def search(self, query: StoreQuery, *, with_total: bool = False) -> Page:
        """One page of current matches (`ResourceStore.search`)."""
        return await self._store.search(query, with_total=with_total)

    async def search_all(self, query: StoreQuery) -> list[dict[str, Any]]:
        """Every current resource `query` matches, page after page, as FHIR JSON."""
        found: list[dict[str, Any]] = []
        query = replace(query, count=PAGE_SIZE)
        while True:
            page = await self._store.search(query)
            found.extend(orjson.loads(s.content) for s in page.resources if s.content)
            if page.next_cursor is None:
                return found
            query = replace(query, cursor=page.next_cursor)

    async def count(self, resource_type: str, conditions: Sequence[Condition]) -> int:
        """How many current resources match."""
        return await self._store.count(resource_type, conditions)

    async def history(
        self, scope: HistoryScope, resource_type: str | None = None, id: str | None = None,
        *, count: int = 20,
    ) -> list[StoredResource]:  # fmt: skip
        """The newest `count` versions of the scope, newest first."""
        versions, _ = await self._store.history(scope, resource_type, id, count=count)
        return versions

    async def claims_in(self, scope: str, low: int, high: int) -> list[Claim]:
        """The live claims of `scope` with `low <= quantum < high`, by quantum."""
        return await self._store.claims_in(scope, low, high)

    async def claim_runs(self, scope: str, low: int, high: int) -> list[ClaimRun]:
        """The live claims of `scope` in `[low, high)` as `(owner, first, end)` runs of
        consecutive quanta, by first (`ResourceStore.claim_runs`)."""
        return await self._store.claim_runs(scope, low, high)

    # -- the event log and leases, for background jobs (ResourceStore "Events", "Leases") --

    async def seal_events(self, limit: int = 1000) -> int:
        """Number committed versions not numbered yet (`ResourceStore.seal_events`)."""
        return await self._store.seal_events(limit)

    async def events_after(self, after: int, limit: int = 500) -> list[Event]:
        """The events numbered above `after`, in order (`ResourceStore.events_after`)."""
        return await self._store.events_after(after, limit)

    async def latest_event(self) -> int:
        """The highest event number handed out (`ResourceStore.latest_event`)."""
        return await self._store.latest_event()

    async def lease(self, key: str, owner: str, ttl_us: int) -> bool:
        """Take or renew a job's lease (`ResourceStore.lease`)."""
        return await self._store.lease(key, owner, ttl_us)

    async def end_lease(self, key: str, owner: str) -> None:
        """Give a job's lease up (`ResourceStore.end_lease`)."""
        await self._store.end_lease(key, owner)

    async def claims_of(self, owner: str) -> list[Claim]:
        """Every claim `owner` holds (expired ones included)."""
        return await self._store.claims_of(owner)


class Records:
    """The RecordStore of small JSON records (`fhir_server.model.RecordStore`), by delegation."""

    def __init__(self, store: ResourceStore) -> None:
        self._store = store

    async def get_record(self, kind: str, key: str) -> dict[str, Any] | None:
        """The live record's document, or None."""
        return await self._store.get_record(kind, key)

    def change_stamp(self) -> bytes | None:
        """The store's `change_stamp` (equal stamps: nothing committed in between)."""
        return self._store.change_stamp()

    async def put_record(
        self, kind: str, key: str, doc: dict[str, Any], expires: int | None = None
    ) -> None:
        """Create or replace the record; `expires` µs UTC or None."""
        await self._store.put_record(kind, key, doc, expires)

    async def insert_record(
        self, kind: str, key: str, doc: dict[str, Any], expires: int | None = None
    ) -> None:
        """Create the record unless a live one exists. Raises StoreConflict if one does."""
        await self._store.insert_record(kind, key, doc, expires)

    async def take_record(self, kind: str, key: str) -> dict[str, Any] | None:
        """Delete the live record and return its document, atomically; None if none."""
        return await self._store.take_record(kind, key)

    async def delete_record(self, kind: str, key: str) -> bool:
        """Delete the record; True if a live one existed."""
        return await self._store.delete_record(kind, key)

    async def list_records(self, kind: str) -> list[tuple[str, dict[str, Any]]]:
        """Every live record of `kind` as `(key, doc)`, by key."""
        return await self._store.list_records(kind)

    async def purge_records(self, now: int) -> int:
        """Delete every record and hit counter with `expires < now` (µs UTC); how many."""
        return await self._store.purge_records(now)

    async def count_hit(self, kind: str, key: str, expires: int, by: int = 1) -> int:
        """Add `by` to the counter `(kind, key)` and return it (`RecordStore.count_hit`)."""
        return await self._store.count_hit(kind, key, expires, by)
