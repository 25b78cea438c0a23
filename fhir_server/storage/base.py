"""The ResourceStore protocol: the only contract between the server and a database engine.

Adapters (`sqlite.py`, `mongo.py`) implement it and pass the same contract suite
(`tests/storage/contract.py`). A store knows nothing of FHIR rules: the repository validates,
assigns ids, versions and `meta`, extracts index entries, and hands the store finished versions.

Conventions:
    * `last_updated` is microseconds since the epoch, UTC.
    * `content` is the resource as FHIR JSON bytes, `meta.versionId`/`meta.lastUpdated` included,
      exactly as served; None for a deletion.
    * `seq` is a store-wide increasing integer fixed when a resource is first created; it orders
      search results stably (keyset paging) and never changes on update.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Literal, Protocol

from fhir_server.search.query import Condition, Cursor, StoreQuery
from resources.index_values import ResourceIndex


@dataclass(frozen=True, slots=True)
class StoredResource:
    """One version of a resource as stored.

    Attributes:
        resource_type, id: the logical identity.
        version_id: 1, 2, ... (served as the string `meta.versionId`).
        last_updated: µs since the epoch, UTC.
        deleted: true for a deletion marker (then `content` is None).
        content: FHIR JSON bytes of this version.
        method: the interaction that wrote it: `POST`, `PUT`, `PATCH` or `DELETE`.
    """

    resource_type: str
    id: str
    version_id: int
    last_updated: int
    deleted: bool
    content: bytes | None
    method: str = "PUT"


@dataclass(frozen=True, slots=True)
class WriteOp:
    """One resource write inside an atomic `apply`.

    Attributes:
        version: the new version to store (a deletion when `version.deleted`).
        expected_version: the current version the writer based this on: 0 means "nothing at
            all is stored for this identity" (not even a deletion marker), None means "do not
            check". A mismatch raises StoreConflict.
        index: the index entries for the new version (ignored for deletions).
    """

    version: StoredResource
    expected_version: int | None
    index: ResourceIndex | None


@dataclass(frozen=True, slots=True)
class Page:
    """One page of search results.

    Attributes:
        resources: the current versions on this page, in order.
        next_cursor / previous_cursor: where the next / previous page starts, or None.
        total: the number of matches when `with_total` was asked, else None.
    """

    resources: list[StoredResource]
    next_cursor: Cursor | None
    previous_cursor: Cursor | None
    total: int | None = None


HistoryScope = Literal["instance", "type", "system"]


class ResourceStore(Protocol):
    """Persistence of FHIR resource versions with their search index.

    Every method may raise `resources.errors.StoreConflict` where stated; any other exception is
    a fault of the engine and becomes a 500.
    """

    async def start(self) -> None:
        """Open connections and create the schema and indexes if missing (idempotent)."""

    async def close(self) -> None:
        """Release connections. The store is unusable afterwards."""

    async def read(self, resource_type: str, id: str) -> StoredResource | None:
        """Return the current version (possibly a deletion marker), or None if never stored."""

    async def read_many(self, refs: Sequence[tuple[str, str]]) -> list[StoredResource]:
        """Return the current, non-deleted versions of `(type, id)` pairs that exist, any order."""

    async def vread(self, resource_type: str, id: str, version_id: int) -> StoredResource | None:
        """Return one version (possibly a deletion marker), or None if there is no such version."""

    async def apply(self, ops: Sequence[WriteOp]) -> None:
        """Write all versions atomically: all become visible, or none does.

        Each op's `expected_version` is checked against the stored current version (0 = nothing
        stored for that identity; None = no check); one mismatch raises StoreConflict and writes
        nothing. The current version, its history row and its index entries change together.
        On MongoDB (no multi-document transactions relied on) a failure part-way is undone
        before the error propagates.
        """

    async def history(
        self,
        scope: HistoryScope,
        resource_type: str | None = None,
        id: str | None = None,
        since: int | None = None,
        before: int | None = None,
        count: int = 20,
        offset: int = 0,
    ) -> tuple[list[StoredResource], int]:
        """Return versions newest first, and the total number of matching versions.

        `since`/`before` bound `last_updated` (µs UTC, `since` inclusive, `before` exclusive).
        """

    async def search(self, query: StoreQuery, *, with_total: bool = False) -> Page:
        """Return one page of current, non-deleted resources matching all conditions."""

    async def count(self, resource_type: str, conditions: Sequence[Condition]) -> int:
        """Count current, non-deleted resources matching all conditions."""

    def lock(self, key: str, *, timeout: float = 10.0) -> AbstractAsyncContextManager[None]:
        """A cross-process mutex on `key` (e.g. conditional-create criteria), held for the block.

        Waits up to `timeout` seconds, then raises StoreConflict. A lock left by a crashed
        process expires after 30 seconds.
        """

    def iter_all(self, resource_type: str | None = None) -> AsyncIterator[StoredResource]:
        """Iterate every current, non-deleted resource (export, re-indexing, tests)."""
