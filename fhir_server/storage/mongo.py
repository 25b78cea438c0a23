"""MongoDB adapter of the ResourceStore, on PyMongo's async API (`AsyncMongoClient`).

Schema and indexes: `mongo_schema.py`; queries: `mongo_query.py`; `apply`: `mongo_apply.py`
(claims in `mongo_claim_run.py`, `mongo_claims.py`; journal and `recover` in
`mongo_journal.py`); records: `mongo_records.py`; the lock's lease: `locks.py`; the event log
and leases: `mongo_events.py`. The adapter keeps to the call surface PyMongo's async
collection shares with mongomock-motor (`find().sort().skip().limit().to_list()`,
`find_one`, `insert_one`, `insert_many`, `update_one`, `replace_one`, `find_one_and_update`,
`find_one_and_delete`, `delete_one`, `delete_many`, `count_documents`, `create_index`, each
with `session=` None outside a transaction) and never relies on a multi-document
transaction: unique `_id`s and single-document conditional writes are its guarantees, and a
journal lets a crashed `apply` be undone or completed (`recover`). Where the deployment
supports transactions (a replica set or mongos) `apply` also runs inside one.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from fhir_server.search.query import Condition, Cursor, StoreQuery
from fhir_server.storage import locks, mongo_claims, mongo_events, mongo_journal, mongo_records
from fhir_server.storage.base import (
    Claim,
    ClaimRun,
    Event,
    HistoryScope,
    Page,
    StoredResource,
    WriteOp,
    runs_of,
)
from fhir_server.storage.mongo_apply import apply_in_transaction, apply_ops, supports_transactions
from fhir_server.storage.mongo_query import (
    Filter,
    compile_filter,
    cursor_filter,
    cursor_values,
    sort_order,
)
from fhir_server.storage.mongo_schema import (
    CLAIM_INDEXES,
    HISTORY_INDEXES,
    JOURNAL_INDEXES,
    PAGE_PROJECTION,
    RESOURCE_INDEXES,
    RESOURCE_UNIQUE_INDEXES,
    Collections,
    Doc,
    resource_key,
    stored_from_doc,
)
from resources.fhir_dates import now_us

LOCK_POLL_S = 0.02  # seconds between attempts to take a held lock
ITER_BATCH = 500  # documents per round trip in `iter_all`

log = logging.getLogger(__name__)


class MongoStore:
    """ResourceStore on one MongoDB database (or mongomock-motor's emulation of it).

    Args:
        database: an async database object (`AsyncMongoClient()[name]`, or
            `mongomock_motor.AsyncMongoMockClient()[name]` in tests). The caller owns its client
            unless the store was built by `from_url`.
        clock: the current time in µs UTC (default `resources.fhir_dates.now_us`); tests
            pass a fixed or moving clock instead of sleeping.
    """

    def __init__(
        self,
        database: AsyncDatabase[Doc],
        *,
        client: AsyncMongoClient[Doc] | None = None,
        clock: Callable[[], int] = now_us,
    ) -> None:
        self._db = database
        self._client = client
        self._clock = clock
        self._transactions = False
        self._cols = Collections(
            resources=database["resources"],
            history=database["history"],
            counters=database["counters"],
            claims=database["claims"],
            journal=database["journal"],
        )
        self._resources = self._cols.resources
        self._history = self._cols.history
        self._claims = self._cols.claims
        self._locks: AsyncCollection[Doc] = database["locks"]
        self._records: AsyncCollection[Doc] = database["records"]

    @classmethod
    def from_url(cls, url: str) -> MongoStore:
        """Build (not connect) a store for `mongodb://host[:port]/dbname` (db `fhir` if none)."""
        client: AsyncMongoClient[Doc] = AsyncMongoClient(url)
        return cls(client.get_default_database(default="fhir"), client=client)

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Create the indexes if missing (idempotent; collections appear on first write), find
        out whether the deployment runs multi-document transactions (then `apply` uses them),
        and `recover` what crashed processes left with their lease lapsed."""
        for keys in RESOURCE_INDEXES:
            await self._resources.create_index(keys)
        for keys in RESOURCE_UNIQUE_INDEXES:
            await self._resources.create_index(keys, unique=True)
        for keys in HISTORY_INDEXES:
            await self._history.create_index(keys)
        for keys in CLAIM_INDEXES:
            await self._claims.create_index(keys)
        for keys in JOURNAL_INDEXES:
            await self._cols.journal.create_index(keys)
        for keys in mongo_records.RECORD_INDEXES:
            await self._records.create_index(keys)
        self._transactions = await supports_transactions(self._db)
        await self.recover(self._clock())

    async def close(self) -> None:
        """Close the client if this store opened it (`from_url`)."""
        if self._client is not None:
            await self._client.close()
            self._client = None

    # -- reads ---------------------------------------------------------------------------

    async def read(self, resource_type: str, id: str) -> StoredResource | None:
        """Return the current version (possibly a deletion marker), or None if never stored."""
        doc = await self._resources.find_one(
            {"_id": resource_key(resource_type, id)}, PAGE_PROJECTION
        )
        return stored_from_doc(doc) if doc else None

    async def read_many(self, refs: Sequence[tuple[str, str]]) -> list[StoredResource]:
        """Return the current, non-deleted versions of the `(type, id)` pairs that exist."""
        keys = list(dict.fromkeys(resource_key(t, i) for t, i in refs))
        out: list[StoredResource] = []
        for start in range(0, len(keys), 1000):
            flt = {"_id": {"$in": keys[start : start + 1000]}, "deleted": False}
            docs = await self._resources.find(flt, PAGE_PROJECTION).to_list()
            out.extend(stored_from_doc(d) for d in docs)
        return out

    async def vread(self, resource_type: str, id: str, version_id: int) -> StoredResource | None:
        """Return one version (possibly a deletion marker), or None if there is none."""
        doc = await self._history.find_one({"_id": f"{resource_type}/{id}/{version_id}"})
        return stored_from_doc(doc) if doc else None

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
        """Return versions newest first (write order breaks ties) and the matching total.

        `since` (inclusive) / `before` (exclusive) bound `last_updated`, µs UTC.
        """
        flt: Filter = {}
        if scope in ("instance", "type"):
            flt["type"] = resource_type
        if scope == "instance":
            flt["id"] = id
        bounds: Filter = {}
        if since is not None:
            bounds["$gte"] = since
        if before is not None:
            bounds["$lt"] = before
        if bounds:
            flt["last_updated"] = bounds
        total = await self._history.count_documents(flt)
        if count <= 0:
            return [], total
        order = [("last_updated", DESCENDING), ("hseq", DESCENDING)]
        docs = await self._history.find(flt).sort(order).skip(offset).limit(count).to_list()
        return [stored_from_doc(d) for d in docs], total

    async def _find_bounded(self, flt: Filter, projection: Filter, limit: int) -> list[Doc]:
        return await self._resources.find(flt, projection).limit(limit).to_list()

    async def search(self, query: StoreQuery, *, with_total: bool = False) -> Page:
        """Return one page of current matches in the query's order (keyset paging).

        Fetches `count + 1` documents to know whether a page lies beyond; a previous-page
        cursor reads the reverse order and flips the rows back.

        Raises:
            TooCostly: a chain or `_has` inner query matches too many resources.
        """
        flt = await compile_filter(query.resource_type, query.conditions, self._find_bounded)
        total = await self._resources.count_documents(flt) if with_total else None
        if query.count <= 0:
            return Page([], None, None, total)
        page_flt = flt
        if query.cursor is not None:
            page_flt = {"$and": [flt, cursor_filter(query.sort, query.cursor)]}
        backwards = query.cursor is not None and not query.cursor.after
        order = sort_order(query.sort, reverse=backwards)
        cursor = self._resources.find(page_flt, PAGE_PROJECTION).sort(order)
        docs = await cursor.limit(query.count + 1).to_list()
        has_more = len(docs) > query.count
        docs = docs[: query.count]
        if backwards:
            docs.reverse()
        next_cursor = previous_cursor = None
        if docs:
            more_after = True if backwards else has_more
            more_before = has_more if backwards else query.cursor is not None
            if more_after:
                next_cursor = Cursor(cursor_values(docs[-1], query.sort), docs[-1]["seq"], True)
            if more_before:
                previous_cursor = Cursor(cursor_values(docs[0], query.sort), docs[0]["seq"], False)
        return Page([stored_from_doc(d) for d in docs], next_cursor, previous_cursor, total)

    async def count(self, resource_type: str, conditions: Sequence[Condition]) -> int:
        """Count current, non-deleted matches of all conditions.

        Raises:
            TooCostly: a chain or `_has` inner query matches too many resources.
        """
        flt = await compile_filter(resource_type, conditions, self._find_bounded)
        return await self._resources.count_documents(flt)

    async def claims_in(self, scope: str, low: int, high: int) -> list[Claim]:
        """The claims of `scope` with `low <= quantum < high` live now, ordered by quantum."""
        return await mongo_claims.claims_in(self._claims, scope, low, high, self._clock())

    async def claim_runs(self, scope: str, low: int, high: int) -> list[ClaimRun]:
        """The live claims of `scope` in `[low, high)` as each owner's runs (`base.runs_of`)."""
        return runs_of(await self.claims_in(scope, low, high))

    async def claims_of(self, owner: str) -> list[Claim]:
        """Every claim of `owner` (expired ones included), ordered by scope, quantum."""
        return await mongo_claims.claims_of(self._claims, owner)

    async def release_expired(self, now: int) -> list[str]:
        """Delete the claims with `expires < now` (µs UTC); return their owners, sorted."""
        return await mongo_claims.release_expired(self._claims, now)

    async def iter_all(self, resource_type: str | None = None) -> AsyncIterator[StoredResource]:
        """Iterate the current, non-deleted resources by `seq`, ITER_BATCH per round trip."""
        last = -1
        while True:
            flt: Filter = {"deleted": False, "seq": {"$gt": last}}
            if resource_type is not None:
                flt["type"] = resource_type
            find = self._resources.find(flt, PAGE_PROJECTION).sort([("seq", ASCENDING)])
            docs = await find.limit(ITER_BATCH).to_list()
            for doc in docs:
                yield stored_from_doc(doc)
            if len(docs) < ITER_BATCH:
                return
            last = docs[-1]["seq"]

    # -- writes --------------------------------------------------------------------------

    async def apply(self, ops: Sequence[WriteOp]) -> None:
        """Write all versions and claim sets, or none (`ResourceStore.apply`; the steps are in
        `mongo_apply.py`): journal first, claims provisional, versions, commit point, claims
        final. A failure before the commit point is undone here; a crash is undone or
        completed by `recover`. Inside a transaction where the deployment has them.

        Raises:
            StoreConflict: an `expected_version` does not match, a resource is being written by
                another call, or a concurrent writer changed a resource or version meanwhile;
                ClaimConflict: a claim key is wanted by two owners of the call or held live by
                another owner (nothing of the call stays written).
        """
        if not ops:
            return
        if self._transactions:
            await apply_in_transaction(self._db.client, self._cols, ops, self._clock)
        else:
            await apply_ops(self._cols, ops, self._clock, None)

    async def recover(self, now: int) -> int:
        """Undo (crashed before the commit point) or complete (after it) every apply whose
        process left it with its journal lease lapsed before `now` (µs UTC); one process
        recovers each call. Returns how many (`mongo_journal.recover`).

        Raises:
            PyMongoError: a database fault; what was not finished is recovered next time.
        """
        return await mongo_journal.recover(self._cols, now)

    def lock(
        self, key: str, *, timeout: float = 10.0
    ) -> contextlib.AbstractAsyncContextManager[None]:
        """Hold the cross-process mutex `key` for the block: a `locks` document
        `{_id: key, expires, owner}` under an owner token (`locks.hold`).

        Raises:
            StoreConflict: still held by another after `timeout` seconds.
        """
        return locks.hold(key, timeout, self._take_lock, self._release_lock, poll_s=LOCK_POLL_S)

    async def _take_lock(self, key: str, owner: str, now: int, expires: int) -> bool:
        try:
            await self._locks.insert_one({"_id": key, "expires": expires, "owner": owner})
        except DuplicateKeyError:
            taken = await self._locks.find_one_and_update(
                {"_id": key, "expires": {"$lt": now}},
                {"$set": {"expires": expires, "owner": owner}},
            )
            return taken is not None
        return True

    async def _release_lock(self, key: str, owner: str) -> None:
        await self._locks.delete_one({"_id": key, "owner": owner})

    # -- events and leases (mongo_events.py) -----------------------------------------------

    async def seal_events(self, limit: int = 1000) -> int:
        """Number up to `limit` committed history documents not numbered yet, under the
        store lock `mongo_events.SEAL_LOCK` (one process at a time); return how many."""
        if not await mongo_events.pending(self._cols):
            return 0
        async with self.lock(mongo_events.SEAL_LOCK):
            return await mongo_events.seal(self._cols, self._clock(), limit)

    async def events_after(self, after: int, limit: int = 500) -> list[Event]:
        """The numbered events with `number > after`, in order, at most `limit`."""
        return await mongo_events.events_after(self._cols, after, limit)

    async def latest_event(self) -> int:
        """The highest event number handed out so far (0 for none)."""
        return await mongo_events.latest_event(self._cols)

    async def lease(self, key: str, owner: str, ttl_us: int) -> bool:
        """Take or renew the lease `key` for `owner` for `ttl_us` µs; False while another
        owner's lease runs (`base.ResourceStore.lease`)."""
        now = self._clock()
        return await mongo_events.take_lease(self._locks, key, owner, now, now + ttl_us)

    async def end_lease(self, key: str, owner: str) -> None:
        """Give the lease `key` up if `owner` holds it."""
        await self._release_lock(key, owner)

    # -- records (base.RecordStore; mongo_records.py) ------------------------------------

    async def get_record(self, kind: str, key: str) -> dict[str, Any] | None:
        """The live record's document, or None."""
        return await mongo_records.get_record(self._records, kind, key, self._clock())

    def change_stamp(self) -> bytes | None:
        """None: MongoDB cannot tell without a query (`RecordStore.change_stamp`)."""
        return None

    async def put_record(
        self, kind: str, key: str, doc: dict[str, Any], expires: int | None = None
    ) -> None:
        """Create or replace the record; `expires` µs UTC or None (never)."""
        await mongo_records.put_record(self._records, kind, key, doc, expires)

    async def insert_record(
        self, kind: str, key: str, doc: dict[str, Any], expires: int | None = None
    ) -> None:
        """Create the record unless a live one exists (an expired one is replaced).

        Raises:
            StoreConflict: a live record exists (`key` = `{kind}/{key}`); nothing is written.
        """
        await mongo_records.insert_record(self._records, kind, key, doc, expires, self._clock())

    async def take_record(self, kind: str, key: str) -> dict[str, Any] | None:
        """Delete the live record and return its document atomically; None if none."""
        return await mongo_records.take_record(self._records, kind, key, self._clock())

    async def delete_record(self, kind: str, key: str) -> bool:
        """Delete the record; True if a live one existed."""
        return await mongo_records.delete_record(self._records, kind, key, self._clock())

    async def list_records(self, kind: str) -> list[tuple[str, dict[str, Any]]]:
        """Every live record of `kind` as `(key, doc)`, ordered by key."""
        return await mongo_records.list_records(self._records, kind, self._clock())

    async def purge_records(self, now: int) -> int:
        """Delete every record with `expires < now` (µs UTC); return how many."""
        return await mongo_records.purge_records(self._records, now)

    async def count_hit(self, kind: str, key: str, expires: int, by: int = 1) -> int:
        """Add `by` to the counter and return it (`RecordStore.count_hit`)."""
        return await mongo_records.count_hit(self._records, kind, key, expires, self._clock(), by)
