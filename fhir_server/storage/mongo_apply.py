"""One `MongoStore.apply` call: journal, provisional claims, resources, commit point, finish.

`ResourceStore.apply` is all or nothing (SCHEDULING.md "Never double-book": an Appointment
never shows without its claims, a claim never outlives its Appointment). MongoDB without
transactions writes one document at a time, so a call runs these steps (`apply_ops`):

1. read the current resources documents and the claims of the call's owners and keys;
   resolve what unfinished calls left (`mongo_journal.call_states`); check expected
   versions and refuse keys held live by others: a refusal writes nothing;
2. write the journal (`mongo_journal`): head `pending`, leased for LEASE_US, and entries;
3. write the claims provisional (`mongo_claim_run.ClaimRun.take`);
4. per op, its resources document (an insert guarded by the unique `_id`, or a replace
   filtered on the version and writer read), then its history document, both carrying the
   call's token `w`;
5. check the call still holds every claim it wrote, then the commit point: the head
   `pending` -> `committed` while its lease runs;
6. make the claims final (final expiries, releases) and delete the journal.

A failure before the commit point is undone in the process (`mongo_journal.abandon`); one
after it leaves a committed call that `recover` completes; a crash anywhere is undone or
completed by `recover` once the lease lapses. Where the deployment runs multi-document
transactions (replica set, mongos; `supports_transactions`) the same steps run inside one
(`apply_in_transaction`), the claims' unique `_id`s still being the guarantee.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Collection, Sequence
from typing import Any

from pymongo import AsyncMongoClient, ReturnDocument
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from fhir_server.storage.base import WriteOp, final_claim_sets
from fhir_server.storage.mongo_claim_run import ClaimRun
from fhir_server.storage.mongo_journal import (
    LEASE_US,
    abandon,
    call_states,
    claims_entry,
    close,
    commit,
    head_doc,
    resource_entry,
)
from fhir_server.storage.mongo_schema import (
    ABORTED,
    PENDING,
    Collections,
    Doc,
    Session,
    history_doc,
    resource_doc,
    resource_key,
)
from resources.errors import StoreConflict

log = logging.getLogger(__name__)


class ApplyRun:
    """One `apply` call: its checks, its journal, its writes and their undo.

    Args:
        cols: the collections written.
        ops: the writes, in order (ops on one identity apply in order).
        clock: the current time, µs UTC (read once for the call, again at the commit point).
        session: the transaction the call runs in, or None.

    Raises:
        StoreConflict: two owners of the call want one key (`base.final_claim_sets`).
    """

    def __init__(
        self, cols: Collections, ops: Sequence[WriteOp], clock: Callable[[], int], session: Session
    ) -> None:
        self._cols = cols
        self._ops = ops
        self._clock = clock
        self._now = clock()
        self._session = session
        self.token = uuid.uuid4().hex
        sets = final_claim_sets(ops)
        self._claims = ClaimRun(cols.claims, sets, self._now, self.token, self._states, session)
        self._before: dict[str, Doc] = {}
        self._state: dict[str, Doc] = {}
        self._entries: list[Doc] = []

    async def _states(self, tokens: Collection[str]) -> dict[str, str]:
        return await call_states(self._cols.journal, tokens, self._now, self._session)

    async def prepare(self) -> None:
        """Read and check everything; decide the journal. Writes nothing.

        Raises:
            StoreConflict: an `expected_version` does not match, or a resource was written by
                a call not yet committed; ClaimConflict: a key is held live by another owner.
        """
        keys = list(
            dict.fromkeys(resource_key(o.version.resource_type, o.version.id) for o in self._ops)
        )
        found = self._cols.resources.find({"_id": {"$in": keys}}, session=self._session)
        if self._session is None:
            docs, tokens = await asyncio.gather(found.to_list(), self._claims.read())
        else:
            docs, tokens = await found.to_list(), await self._claims.read()
        self._before = {d["_id"]: d for d in docs}
        self._state = dict(self._before)
        states = await self._states(tokens | {d["w"] for d in docs if d.get("w")})
        for doc in docs:
            if states.get(doc.get("w", "")) in (PENDING, ABORTED):
                k = doc["_id"]
                raise StoreConflict(f"{k} is being written by another call", key=k)
        self._check()
        versions: dict[str, list[int]] = {k: [] for k in keys}
        for op in self._ops:
            v = op.version
            versions[resource_key(v.resource_type, v.id)].append(v.version_id)
        self._entries = [
            resource_entry(self.token, k, self._before.get(k), versions[k]) for k in keys
        ]
        for owner, ids in self._claims.plan(states).items():
            self._entries.append(claims_entry(self.token, owner, ids))

    def _check(self) -> None:
        """Check every op's expected version against the versions read (ops in order).

        Raises:
            StoreConflict: the first mismatch; nothing has been written.
        """
        current = {k: d["version_id"] for k, d in self._before.items()}
        for op in self._ops:
            k = resource_key(op.version.resource_type, op.version.id)
            have = current.get(k, 0)
            if op.expected_version is not None and op.expected_version != have:
                raise StoreConflict(
                    f"{k} is at version {have}, not the expected {op.expected_version}", key=k
                )
            current[k] = op.version.version_id

    async def write(self, first: int) -> None:
        """Steps 2-5: the journal, the provisional claims, every version, the commit point.

        Args:
            first: the first of `len(ops)` fresh store-wide numbers (history `hseq`, and the
                `seq` of a new resource).

        Raises:
            StoreConflict: a concurrent writer changed a resource or stored a version meanwhile;
                ClaimConflict: a key was taken meanwhile (also by a rival after this call
                stalled past its provisional expiry); StoreConflict: the lease lapsed.
        """
        head = head_doc(self.token, self._now + LEASE_US)
        await self._cols.journal.insert_many([head, *self._entries], session=self._session)
        await self._claims.take()
        for i, op in enumerate(self._ops):
            await self._write(op, first + i)
        await self._claims.check()
        if not await commit(self._cols.journal, self.token, self._clock(), self._session):
            await self._claims.check()
            raise StoreConflict("The write outlasted its lease and was abandoned", key=self.token)

    async def _write(self, op: WriteOp, number: int) -> None:
        """Write one version: its resources document, then its history document.

        Raises:
            StoreConflict: a concurrent writer created or changed the resource, or stored
                this version already.
        """
        v = op.version
        k = resource_key(v.resource_type, v.id)
        prev = self._state.get(k)
        doc = resource_doc(op, prev["seq"] if prev else number, self.token)
        s = self._session
        try:
            if prev is None:
                await self._cols.resources.insert_one(doc, session=s)
            else:
                flt = {"_id": k, "version_id": prev["version_id"], "w": prev.get("w")}
                if (await self._cols.resources.replace_one(flt, doc, session=s)).matched_count != 1:
                    raise StoreConflict(f"{k} was changed by a concurrent write", key=k)
        except DuplicateKeyError as exc:
            raise StoreConflict(f"{k} was created by a concurrent write", key=k) from exc
        self._state[k] = doc
        try:
            await self._cols.history.insert_one(history_doc(v, number, self.token), session=s)
        except DuplicateKeyError as exc:
            raise StoreConflict(f"Version {v.version_id} of {k} exists already", key=k) from exc

    async def finish(self) -> None:
        """Step 6, after the commit point: final claims, then the journal deleted."""
        await self._claims.finish()
        await close(self._cols.journal, self.token, self._session)

    async def undo(self) -> None:
        """Undo a failure before the commit point in this process; a failure of the undo is
        logged (recovery undoes the call once its lease lapses)."""
        try:
            await abandon(self._cols, self.token, self._entries, self._session)
        except Exception:
            log.exception("Could not undo apply %s; recovery will after its lease", self.token)


async def apply_ops(
    cols: Collections, ops: Sequence[WriteOp], clock: Callable[[], int], session: Session
) -> None:
    """Run one apply (module docstring), inside the transaction `session` or without one.

    Without a transaction a failure before the commit point is undone here; after it the
    call is committed: the failure is logged and the call completed by `recover`. Inside a
    transaction every failure propagates, so the transaction aborts.

    Raises:
        StoreConflict: as `ResourceStore.apply`.
    """
    run = ApplyRun(cols, ops, clock, session)
    await run.prepare()
    first = await allocate(cols, len(ops))
    try:
        await run.write(first)
    except BaseException:
        if session is None:
            await run.undo()
        raise
    try:
        await run.finish()
    except Exception:
        if session is not None:
            raise
        log.exception("Apply %s is committed but unfinished; recovery finishes it", run.token)


async def allocate(cols: Collections, n: int, counter: str = "seq") -> int:
    """Reserve `n` consecutive numbers of the store-wide sequence `counter` (`seq`, or
    `event` for event numbers); return the first. Never inside a transaction (every apply
    would conflict on the counter); gaps are harmless."""
    doc = await cols.counters.find_one_and_update(
        {"_id": counter},
        {"$inc": {"value": n}},
        upsert=True,
        return_document=ReturnDocument.AFTER,
    )
    assert doc is not None
    return int(doc["value"]) - n + 1


async def supports_transactions(database: AsyncDatabase[Doc]) -> bool:
    """Whether the deployment runs multi-document transactions, from its `hello` reply: a
    replica set member (`setName`, MongoDB 4.0+: wire version 7) or a mongos (`msg` is
    `isdbgrid`, 4.2+: wire version 8), with sessions (`logicalSessionTimeoutMinutes`). A
    standalone server, mongomock (no `hello`) or any failure to ask: False."""
    try:
        hello: dict[str, Any] = await database.command("hello")
    except Exception:
        return False
    if hello.get("logicalSessionTimeoutMinutes") is None:
        return False
    wire = int(hello.get("maxWireVersion") or 0)
    if hello.get("msg") == "isdbgrid":
        return wire >= 8
    return bool(hello.get("setName")) and wire >= 7


async def apply_in_transaction(
    client: AsyncMongoClient[Doc],
    cols: Collections,
    ops: Sequence[WriteOp],
    clock: Callable[[], int],
) -> None:
    """Run `apply_ops` inside one transaction. PyMongo's `with_transaction` retries the whole
    call on a `TransientTransactionError` label and the commit on
    `UnknownTransactionCommitResult`, for up to 120 s.

    Raises:
        StoreConflict: as `ResourceStore.apply` (the transaction is aborted).
    """

    async def run(session: AsyncClientSession) -> None:
        await apply_ops(cols, ops, clock, session)

    async with client.start_session() as session:
        await session.with_transaction(run)
