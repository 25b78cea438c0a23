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

Time claims (SCHEDULING.md "Never double-book"): a claim is a row that only one owner can
hold, keyed by `(scope, quantum)`, e.g. `("Schedule/7", 29_481_120)` for one minute of a
Schedule or `("Slot/9", 2)` for the third seat of a Slot. The uniqueness of that key in the
database (a primary key on SQLite, a unique `_id` on MongoDB) is what makes a double booking
impossible, whatever the number of processes: `apply` takes and releases claims together with
the resource writes of the same call, all or nothing. The scheduling engine decides which keys
an Appointment needs; the store only guarantees that no two live owners share one.

Events (the outbox, ARCHITECTURE.md "Events and background work"): every version `apply`
commits is an event of the store-wide event log, written by the same atomic write (the
history row / document is the outbox entry), so a committed change always has its event and a
change that did not commit has none. `seal_events` numbers what committed (a no-op on SQLite,
whose history order is commit order), `events_after` reads the log in order.

Leases (`lease`): a renewable, owner-checked hold on a key for background work that must run
in one process at a time (dispatchers, sweepers), taken over once its holder stops renewing.

Records (`RecordStore`): small JSON documents keyed by `(kind, key)` with an optional expiry,
for the SMART authorization server's state; `insert_record` and `take_record` rest on the same
database guarantees (a unique key, a single-statement / single-document delete).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from fhir_server.model import (
    Claim,
    ClaimKey,
    ClaimRun,
    ClaimSet,
    Event,
    HistoryScope,
    Page,
    RecordStore,
    StoredResource,
    WriteOp,
    sorted_keys,
)
from fhir_server.search.query import Condition, StoreQuery
from resources.errors import ClaimConflict

__all__ = [
    "Claim",
    "ClaimKey",
    "ClaimRun",
    "ClaimSet",
    "Event",
    "HistoryScope",
    "Page",
    "RecordStore",
    "ResourceStore",
    "StoredResource",
    "WriteOp",
    "final_claim_sets",
    "is_live",
    "runs_of",
]


class ResourceStore(RecordStore, Protocol):
    """Persistence of FHIR resource versions with their search index, and the small records
    of `RecordStore`.

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
        """Write all versions and claim sets atomically: all become visible, or none does.

        Each op's `expected_version` is checked against the stored current version (0 = nothing
        stored for that identity; None = no check); one mismatch raises StoreConflict and writes
        nothing. The current version, its history row and its index entries change together.
        On MongoDB (no multi-document transaction relied on) a failure part-way is undone
        before the error propagates, and a crash part-way (no undo runs) is undone or completed
        by `recover`; until then the claims a crashed call took lapse within a minute unless it
        was committed, and no write is based on what it wrote.

        Claims (SCHEDULING.md "Never double-book"): for every op with a `ClaimSet`, its owner
        holds exactly `keys` (with that `expires`) afterwards: keys no longer listed are
        released, new ones taken, kept ones get the new `expires`. If an owner has several
        ClaimSets in one call the last one counts. A key may be taken when nobody holds it,
        when its owner releases it in this same call, or when its holder's `expires` is before
        now (`resources.fhir_dates.now_us()`, read once per call); a taken-over owner is not
        reported (the scheduling engine cancels expired holds itself).

        Raises:
            StoreConflict: a version mismatch (`key` = `Type/id`), or a key held by another
                owner whose claim is live (`expires` None or >= now), or wanted by two owners
                of this call (`key` = `{scope}#{quantum}`). Nothing of the call is written:
                resources, history, index and claims stay as they were.
        """

    async def recover(self, now: int) -> int:
        """Undo or complete the applies that crashed processes left unfinished (`apply` is all
        or nothing; SCHEDULING.md "Never double-book": no claim outlives its Appointment).

        A call whose lease lapsed before `now` (µs since the epoch, UTC; on MongoDB a call
        holds its lease 30 s) is rolled back if it died before its commit point (every
        document it wrote back as it was, its claims released) or completed if after (its
        claims given their final expiry, released keys deleted). Safe to run in several
        processes at once and repeatedly: one process recovers each call. On SQLite an
        apply is one transaction, so nothing is ever left over: it returns 0.

        Returns:
            How many calls were recovered.

        Raises:
            Only engine faults (not StoreConflict); what was not finished is recovered by a
            later call.
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

    async def claims_in(self, scope: str, low: int, high: int) -> list[Claim]:
        """The live claims of `scope` with `low <= quantum < high`, ordered by quantum.

        Live means `expires` is None or >= now (µs UTC); expired holds not yet released or
        taken over are left out.
        """

    async def claim_runs(self, scope: str, low: int, high: int) -> list[ClaimRun]:
        """The live claims of `scope` with `low <= quantum < high` as runs: each owner's
        maximal sequences of consecutive quanta, `(owner, first, end)` with `end` exclusive,
        ordered by `(first, end, owner)` (`runs_of` of `claims_in`). A Schedule's booked minutes
        come back as one row per visit, not one per minute."""

    async def claims_of(self, owner: str) -> list[Claim]:
        """Every claim `owner` holds, expired ones included, ordered by scope, quantum."""

    async def release_expired(self, now: int) -> list[str]:
        """Delete every claim with `expires < now` (µs UTC); return the distinct owners that
        had any, sorted (for the hold sweeper). A claim taken over meanwhile is kept."""

    def lock(self, key: str, *, timeout: float = 10.0) -> AbstractAsyncContextManager[None]:
        """A cross-process mutex on `key` (e.g. conditional-create criteria), held for the block.

        Waits up to `timeout` seconds, then raises StoreConflict. Each holder has a lease of
        `locks.LOCK_TTL_US` (30 s), so a lock left by a crashed process is taken over after
        it; a holder releases only its own lock, never one that took its lapsed lease over
        (`locks.py`).
        """

    def iter_all(self, resource_type: str | None = None) -> AsyncIterator[StoredResource]:
        """Iterate every current, non-deleted resource (export, re-indexing, tests)."""

    async def seal_events(self, limit: int = 1000) -> int:
        """Number up to `limit` committed versions not numbered yet, oldest write first, so
        `events_after` hands them out. Versions of an apply still in flight (MongoDB) wait
        for its commit; an apply rolled back leaves no event. Run by one process at a time
        (the dispatcher's `lease`); safe, though possibly out of order, otherwise. SQLite
        numbers by commit already: returns 0.

        Returns:
            How many versions were numbered.
        """

    async def events_after(self, after: int, limit: int = 500) -> list[Event]:
        """The numbered events with `number > after`, in increasing order, at most `limit`."""

    async def latest_event(self) -> int:
        """The highest event number handed out so far (0 for none): where a new reader of
        the log starts when it wants only later changes."""

    async def lease(self, key: str, owner: str, ttl_us: int) -> bool:
        """Take or renew the lease `key` for `owner` until now + `ttl_us` (µs): True if
        `owner` holds it now (it was free, lapsed, or already `owner`'s), False while another
        owner's lease runs. Shares the `locks` keyspace of `lock` (use distinct keys)."""

    async def end_lease(self, key: str, owner: str) -> None:
        """Give the lease `key` up if `owner` holds it (another owner's is left alone)."""


def runs_of(claims: Sequence[Claim]) -> list[ClaimRun]:
    """`ResourceStore.claim_runs` from claims ordered by quantum: each owner's consecutive
    quanta merged, ordered by `(first, end, owner)`."""
    open_runs: dict[str, list[list[int]]] = {}
    for claim in claims:
        spans = open_runs.setdefault(claim.owner, [])
        quantum = claim.key.quantum
        if spans and spans[-1][1] == quantum:
            spans[-1][1] = quantum + 1
        else:
            spans.append([quantum, quantum + 1])
    runs = [(owner, a, b) for owner, spans in open_runs.items() for a, b in spans]
    runs.sort(key=lambda run: (run[1], run[2], run[0]))
    return runs


def final_claim_sets(ops: Sequence[WriteOp]) -> list[ClaimSet]:
    """The claim set each owner of `ops` ends up with, for an adapter's `apply`.

    The last ClaimSet of an owner counts; its keys come back deduplicated and sorted by
    (scope, quantum); owners keep the order of their first op.

    Raises:
        StoreConflict: two owners want the same key (`key` = `{scope}#{quantum}`);
            SCHEDULING.md "Never double-book".
    """
    last: dict[str, ClaimSet] = {}
    for op in ops:
        if op.claims is not None:
            last[op.claims.owner] = op.claims
    sets: list[ClaimSet] = []
    wanted: dict[ClaimKey, str] = {}
    for owner, cs in last.items():
        keys = sorted_keys(cs.keys)
        for key in keys:
            other = wanted.setdefault(key, owner)
            if other != owner:
                raise ClaimConflict(f"{key} is wanted by both {other} and {owner}", key=str(key))
        sets.append(ClaimSet(owner, keys, cs.expires))
    return sets


def is_live(expires: int | None, now: int) -> bool:
    """Whether a claim with `expires` (µs UTC or None) still holds its key at `now` (µs)."""
    return expires is None or expires >= now
