"""The journal of MongoDB applies: how an apply cut short by a crash is undone or completed.

`ResourceStore.apply` is all or nothing, and MongoDB without transactions writes one document
at a time, so every apply (`mongo_apply.py`) first writes its journal (schema in
`mongo_schema.py`): a head `{_id: token, state: "pending", lease}` and one entry per identity
(the resources document before the call, the versions it writes) and per claim owner (the
claims it makes provisional). Its commit point is one conditional update of the head,
`pending` -> `committed`, which succeeds only while the head is pending and its lease runs.

A head whose lease lapsed belongs to a call that died or stalled. `recover` takes such heads
one at a time with a conditional update (so of several processes recovering at once, one gets
each call), rolls a `pending` call back (`roll_back`: before-images put back where a document
still carries the call's token, its history documents and provisional claims removed) and a
`committed` one forward (`mongo_claims.finish`), then deletes its journal. A call that meets a
provisional claim of a call whose lease lapsed aborts that call first (`call_states`), so it
can no longer commit. Instants are µs since the epoch, UTC.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence

from pymongo.asynchronous.collection import AsyncCollection

from fhir_server.storage import mongo_claims
from fhir_server.storage.mongo_schema import (
    ABORTED,
    COMMITTED,
    PENDING,
    Collections,
    Doc,
    Session,
)

LEASE_US = 30_000_000
"""How long an apply's journal head is leased to its process (µs): after that, recovery or a
call meeting its provisional claims may abort it. Shorter than
`mongo_claims.PROVISIONAL_US`, so a call is abandoned before its claims lapse."""
MAX_ATTEMPTS = 8
"""How often a head that changes under an abort is read again before it counts as in flight."""

log = logging.getLogger(__name__)


def head_doc(token: str, lease: int) -> Doc:
    """The journal head of the apply `token`, pending, leased until `lease` (µs UTC)."""
    return {"_id": token, "kind": "head", "state": PENDING, "lease": lease}


def resource_entry(token: str, key: str, before: Doc | None, versions: list[int]) -> Doc:
    """The journal entry of identity `key` (`Type/id`) for the apply `token`: its resources
    document before the call (None: none), and the version numbers the call writes."""
    return {
        "_id": f"{token}/{key}",
        "kind": "resource",
        "call": token,
        "key": key,
        "before": before,
        "versions": versions,
    }


def claims_entry(token: str, owner: str, ids: list[str]) -> Doc:
    """The journal entry of the claims `ids` the apply `token` makes provisional for `owner`."""
    return {"_id": f"{token}#{owner}", "kind": "claims", "call": token, "owner": owner, "ids": ids}


async def commit(journal: AsyncCollection[Doc], token: str, now: int, session: Session) -> bool:
    """The commit point of the apply `token`: its head `pending` -> `committed`, if it is still
    pending and its lease has not lapsed at `now` (µs UTC). True if committed."""
    flt = {"_id": token, "state": PENDING, "lease": {"$gte": now}}
    update = {"$set": {"state": COMMITTED}}
    return await journal.find_one_and_update(flt, update, session=session) is not None


async def close(journal: AsyncCollection[Doc], token: str, session: Session) -> None:
    """Delete the journal of the apply `token`: its entries, then its head."""
    await journal.delete_many({"call": token}, session=session)
    await journal.delete_one({"_id": token}, session=session)


async def call_states(
    journal: AsyncCollection[Doc], tokens: Collection[str], now: int, session: Session
) -> dict[str, str]:
    """The state of each apply in `tokens` that still has a journal head: `committed`,
    `pending` (in flight: its lease runs at `now`, µs UTC) or `aborted`. A pending head whose
    lease lapsed is aborted here first, so that call can no longer commit. Tokens without a
    head (finished calls) are left out."""
    if not tokens:
        return {}
    flt = {"_id": {"$in": sorted(tokens)}}
    heads = await journal.find(flt, {"state": 1, "lease": 1}, session=session).to_list()
    states: dict[str, str] = {}
    for head in heads:
        state = await _settle_head(journal, head, now, session)
        if state is not None:
            states[head["_id"]] = state
    return states


async def _settle_head(
    journal: AsyncCollection[Doc], head: Doc | None, now: int, session: Session
) -> str | None:
    """The state of the call whose head was read as `head`, aborting it first if it is
    pending with its lease lapsed at `now`; None once the head is gone."""
    for _ in range(MAX_ATTEMPTS):
        if head is None:
            return None
        if head["state"] != PENDING or head["lease"] >= now:
            return str(head["state"])
        lapsed = {"_id": head["_id"], "state": PENDING, "lease": head["lease"]}
        if await journal.find_one_and_update(lapsed, {"$set": {"state": ABORTED}}, session=session):
            return ABORTED
        head = await journal.find_one({"_id": head["_id"]}, session=session)
    return PENDING


async def roll_back(
    cols: Collections, token: str, entries: Sequence[Doc], session: Session
) -> None:
    """Undo what the uncommitted apply `token` wrote: put each resources document back as it
    was (or delete it) where it still carries the call's token, delete the call's history
    documents, and restore its provisional claims (`mongo_claims.restore`). Idempotent."""
    resources = [e for e in entries if e["kind"] == "resource"]
    for entry in resources:
        flt = {"_id": entry["key"], "w": token}
        if entry["before"] is None:
            await cols.resources.delete_one(flt, session=session)
        else:
            await cols.resources.replace_one(flt, entry["before"], session=session)
    history = [f"{e['key']}/{v}" for e in resources for v in e["versions"]]
    if history:
        await cols.history.delete_many({"_id": {"$in": history}, "w": token}, session=session)
    docs = await _provisional(cols, token, entries, session)
    await mongo_claims.restore(cols.claims, token, docs, session)


async def roll_forward(
    cols: Collections, token: str, entries: Sequence[Doc], session: Session
) -> None:
    """Complete the committed apply `token`: its resource and history documents are all
    written; make its provisional claims final (`mongo_claims.finish`). Idempotent."""
    docs = await _provisional(cols, token, entries, session)
    await mongo_claims.finish(cols.claims, token, docs, session)


async def _provisional(
    cols: Collections, token: str, entries: Sequence[Doc], session: Session
) -> list[Doc]:
    """The claims documents the journal `entries` list that are still provisional for `token`."""
    ids = [cid for e in entries if e["kind"] == "claims" for cid in e["ids"]]
    if not ids:
        return []
    flt = {"_id": {"$in": ids}, "w": token, "p": True}
    return await cols.claims.find(flt, session=session).to_list()


async def abandon(cols: Collections, token: str, entries: Sequence[Doc], session: Session) -> None:
    """Undo the failed apply `token` in its own process: abort its head unless it committed,
    roll it back and delete its journal. A head that committed meanwhile (or that recovery
    finished) is left alone: recovery completes it after its lease."""
    flt = {"_id": token, "state": {"$ne": COMMITTED}}
    if await cols.journal.find_one_and_update(flt, {"$set": {"state": ABORTED}}, session=session):
        await roll_back(cols, token, entries, session)
        await close(cols.journal, token, session)


async def recover(cols: Collections, now: int) -> int:
    """Undo or complete every apply whose journal lease lapsed before `now` (µs UTC).

    Each head is taken with a conditional update on the state and lease read (the taker
    renews the lease, and a pending call becomes aborted), so one process recovers each call.

    Returns:
        How many calls were recovered.

    Raises:
        PyMongoError: a database fault; a call taken and not finished is taken again once
            the renewed lease lapses.
    """
    lapsed = {"kind": "head", "lease": {"$lt": now}}
    done = 0
    for head in await cols.journal.find(lapsed).to_list():
        token = head["_id"]
        state = ABORTED if head["state"] == PENDING else head["state"]
        flt = {"_id": token, "state": head["state"], "lease": head["lease"]}
        update = {"$set": {"state": state, "lease": now + LEASE_US}}
        if not await cols.journal.find_one_and_update(flt, update):
            continue
        entries = await cols.journal.find({"call": token}).to_list()
        if state == COMMITTED:
            await roll_forward(cols, token, entries, None)
        else:
            await roll_back(cols, token, entries, None)
        await close(cols.journal, token, None)
        done += 1
        outcome = "completed" if state == COMMITTED else "undone"
        log.warning("Recovered apply %s left by a crashed process: %s", token, outcome)
    return done
