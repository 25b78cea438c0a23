"""The values the repository and the stores exchange: stored versions, writes, claims, pages,
and the `RecordStore` contract of small JSON records.

Kept apart from `fhir_server.storage` (the engines) so that every layer can name these values
while only the request-scoped repository (`fhir_server.repository`) reaches a store
(ARCHITECTURE.md "One way in"). Units: instants are µs since the epoch, UTC.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, Literal, Protocol

from fhir_server.search.query import Cursor
from resources.index_values import ResourceIndex

__all__ = [
    "Claim",
    "ClaimKey",
    "ClaimRun",
    "ClaimSet",
    "Event",
    "HistoryScope",
    "Page",
    "RecordStore",
    "StoredResource",
    "WriteOp",
]


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


@dataclass(frozen=True, slots=True, order=True)
class ClaimKey:
    """One claimable unit: a time quantum of a Schedule or a seat of a Slot.

    Attributes:
        scope: what is booked, a reference such as `Schedule/abc` (time quanta) or `Slot/xyz`
            (seats).
        quantum: a minute index (`µs // 60_000_000`, UTC) for a Schedule, or a seat number
            (0, 1, ...) for a Slot.
    """

    scope: str
    quantum: int

    def __str__(self) -> str:
        """The key as `StoreConflict.key` reports it: `{scope}#{quantum}`."""
        return f"{self.scope}#{self.quantum}"


_KEY_ORDER = attrgetter("scope", "quantum")


def sorted_keys(keys: Iterable[ClaimKey]) -> tuple[ClaimKey, ...]:
    """`keys` in ClaimKey order (scope, then quantum), without duplicates; the same as
    `tuple(sorted(set(keys)))`, with the comparison done in C instead of by the dataclass's
    `__lt__` (a booking sorts ~60 keys twice)."""
    return tuple(sorted(set(keys), key=_KEY_ORDER))


@dataclass(frozen=True, slots=True)
class ClaimSet:
    """The complete set of claims an owner holds after an `apply`.

    Attributes:
        owner: who holds them, e.g. `Appointment/123`.
        keys: every key the owner holds after the write (keys it held and no longer lists
            are released; an empty tuple releases everything). Duplicates are ignored.
        expires: when the claims lapse, µs since the epoch UTC; None holds them until
            released (a booking), a number makes them a hold that another owner may take over
            once `expires < now`.
    """

    owner: str
    keys: tuple[ClaimKey, ...]
    expires: int | None = None


@dataclass(frozen=True, slots=True)
class Claim:
    """One stored claim.

    Attributes:
        key: the claimed unit.
        owner: its holder, e.g. `Appointment/123`.
        expires: µs since the epoch UTC, or None (held until released).
    """

    key: ClaimKey
    owner: str
    expires: int | None


ClaimRun = tuple[str, int, int]
"""`(owner, first quantum, end quantum)`: consecutive claims of one owner (end exclusive),
as `ResourceStore.claim_runs` returns them."""


@dataclass(frozen=True, slots=True)
class WriteOp:
    """One resource write inside an atomic `apply`.

    Attributes:
        version: the new version to store (a deletion when `version.deleted`).
        expected_version: the current version the writer based this on: 0 means "nothing at
            all is stored for this identity" (not even a deletion marker), None means "do not
            check". A mismatch raises StoreConflict.
        index: the index entries for the new version (ignored for deletions).
        claims: the complete claim set its owner holds after the write (SCHEDULING.md "Never
            double-book"); None leaves every claim unchanged (also for a deletion: the
            repository decides, passing `ClaimSet(owner, ())` to release).
    """

    version: StoredResource
    expected_version: int | None
    index: ResourceIndex | None
    claims: ClaimSet | None = None


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


@dataclass(frozen=True, slots=True)
class Event:
    """One committed version as the event log (the outbox) hands it to the dispatcher.

    Attributes:
        number: its place in the store-wide event order (1, 2, ...; gaps allowed): a reader
            that has seen `number` never later finds a new event with a smaller one.
        version: the version written (a deletion marker for a delete).
    """

    number: int
    version: StoredResource


class RecordStore(Protocol):
    """Small JSON documents kept beside the resources: the authorization server's state
    (clients, users, grants, codes, launch contexts, used assertion ids, signing keys).

    Records are keyed by `(kind, key)`, both short strings (`kind` a fixed name such as
    `client`, without the control character U+001F); `doc` is a JSON object (str keys, JSON
    values). `expires` is µs since the epoch UTC, or None for "never"; a record whose
    `expires` is before now (`resources.fhir_dates.now_us()`) counts as absent for every
    method (it may linger in the database until `purge_records`).
    """

    async def get_record(self, kind: str, key: str) -> dict[str, Any] | None:
        """The live record's document, or None."""

    def change_stamp(self) -> bytes | None:
        """An opaque token of the store's committed state, read without a query: two equal
        stamps mean no write was committed in between, by any process (a record read after
        the first stamp still reads the same, unless it lapsed by its `expires`). None: the
        store cannot tell cheaply (ask the store itself)."""

    async def put_record(
        self, kind: str, key: str, doc: dict[str, Any], expires: int | None = None
    ) -> None:
        """Create or replace the record (upsert)."""

    async def insert_record(
        self, kind: str, key: str, doc: dict[str, Any], expires: int | None = None
    ) -> None:
        """Create the record only if no live one exists (an expired one is replaced).

        Raises:
            StoreConflict: a live record `(kind, key)` exists (`key` = `{kind}/{key}`); nothing
                is written. Of two concurrent inserts of one key exactly one succeeds (the
                database's unique key decides, not a read-then-write).
        """

    async def take_record(self, kind: str, key: str) -> dict[str, Any] | None:
        """Delete the live record and return its document, atomically (single-use codes):
        of two concurrent takes only one gets the document; None if there was none."""

    async def delete_record(self, kind: str, key: str) -> bool:
        """Delete the record; True if a live one existed."""

    async def list_records(self, kind: str) -> list[tuple[str, dict[str, Any]]]:
        """Every live record of `kind` as `(key, doc)`, ordered by key."""

    async def purge_records(self, now: int) -> int:
        """Delete every record with `expires < now` (µs UTC); return how many (hit
        counters of `count_hit` included)."""

    async def count_hit(self, kind: str, key: str, expires: int, by: int = 1) -> int:
        """Add `by` (>= 1) to the counter `(kind, key)` and return its new value, atomically
        across processes (of N concurrent calls of `by` 1 on a fresh counter, each gets a
        different value 1..N). A counter that does not exist, or whose `expires` (µs UTC)
        has passed, starts again at `by` and lasts until this call's `expires`. Counters are
        separate from records (a record and a counter may share a kind and key). For rate
        limits (`smart_auth.rate_limits`)."""
