"""Time claims on MongoDB: the `claims` collection behind SCHEDULING.md "Never double-book".

No multi-document transaction is relied on. A key is one document whose `_id` is
`{scope}#{quantum}` (schema in `mongo_schema.py`), so of two owners inserting it, in any
number of processes, exactly one succeeds. A key held by someone else changes hands only
through `find_one_and_update` filtered on the document as read (owner, expiry, writer `w`,
provisional mark `p`): of two concurrent takers, one matches and the other sees the winner.

Provisional claims. Before its commit point, an apply (`mongo_claim_run.ClaimRun`) writes every
claim it changes provisional (`p`, `prev`, `fin`): a key it takes (new, an expired hold taken
over, or one another owner of the call gives up) with an expiry of at most now +
PROVISIONAL_US, so a call that dies before its commit point leaves claims that lapse within a
minute by themselves; a key an owner keeps with a new expiry, or gives up, keeps its stored
owner and expiry. A provisional claim of another call counts as its `fin` when that call is
committed, as held while it is pending within its lease, and as its `prev` once it is aborted
or gone (`effective`; callers resolve the states through `mongo_journal.call_states`). After
the commit point `finish` writes the `fin`s; an undo or recovery `restore`s the `prev`s. The
hold sweeper (`release_expired`) leaves provisional claims alone. Instants are µs since the
epoch, UTC.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Coroutine, Iterable, Sequence
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection

from fhir_server.storage.base import Claim
from fhir_server.storage.mongo_schema import (
    COMMITTED,
    PENDING,
    PROVISIONAL_FIELDS,
    Doc,
    Session,
    claim_from_doc,
    committed_claim,
)
from resources.errors import ClaimConflict

PROVISIONAL_US = 60_000_000
"""The longest a claim taken by an apply may outlive it if the call dies before its commit
point (µs): such a claim's stored expiry is at most the call's now + this."""
DUPLICATE_KEY = 11000
"""MongoDB's error code for a unique index violation."""
SWEEP_BATCH = 500
"""Claims deleted per round trip by `release_expired`."""
UNMARK = dict.fromkeys(PROVISIONAL_FIELDS, "")
"""The `$unset` that makes a provisional claim final."""

CallStates = Callable[[Collection[str]], Awaitable[dict[str, str]]]
"""Resolves apply tokens to their journal head states (`mongo_journal.call_states`)."""


def effective(doc: Doc, states: dict[str, str]) -> Doc | None:
    """The claim `doc` stands for: itself if final; for a provisional one of another call,
    its `fin` (that call committed), or its `prev` (aborted or gone; None = free).

    Args:
        doc: a stored claims document.
        states: journal head states by apply token (a token absent: the call is gone).

    Raises:
        ClaimConflict: `doc` is provisional for a call still pending within its lease.
    """
    if not doc.get("p"):
        return doc
    state = states.get(doc["w"])
    if state == PENDING:
        raise ClaimConflict(f"{doc['_id']} is being claimed by another write", key=doc["_id"])
    if state == COMMITTED:
        return committed_claim(doc)
    prev: Doc | None = doc.get("prev")
    return prev


async def each(calls: Sequence[Coroutine[Any, Any, Any]], session: Session) -> None:
    """Await every call: concurrently without a session (all finish, so none writes after an
    undo, then the first error is raised), one after the other inside a transaction (a
    session runs one operation at a time)."""
    if session is None:
        results = await asyncio.gather(*calls, return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                raise r
        return
    for i, call in enumerate(calls):
        try:
            await call
        except BaseException:
            for rest in calls[i + 1 :]:
                rest.close()
            raise


async def finish(
    claims: AsyncCollection[Doc], token: str, docs: Iterable[Doc], session: Session
) -> None:
    """Make the provisional claims `docs` of the committed apply `token` final: delete the
    released ones, give the others their `fin` owner and expiry. Only documents still
    provisional for `token` change, so running it twice (roll-forward) is harmless."""
    docs = list(docs)
    released = [d["_id"] for d in docs if d.get("fin") is None]
    if released:
        flt = {"_id": {"$in": released}, "w": token, "p": True}
        await claims.delete_many(flt, session=session)
    calls = [
        claims.update_one(
            {"_id": d["_id"], "w": token, "p": True},
            {
                "$set": {"owner": d["fin"]["owner"], "expires": d["fin"]["expires"]},
                "$unset": UNMARK,
            },
            session=session,
        )
        for d in docs
        if d.get("fin") is not None
    ]
    await each(calls, session)


async def restore(
    claims: AsyncCollection[Doc], token: str, docs: Iterable[Doc], session: Session
) -> None:
    """Put back the claims the uncommitted apply `token` made provisional (`docs`): each
    becomes its `prev` again, or is deleted if it was free. Only documents still provisional
    for `token` change (a key another call took over after it lapsed stays theirs)."""
    docs = list(docs)
    free = [d["_id"] for d in docs if d.get("prev") is None]
    if free:
        await claims.delete_many({"_id": {"$in": free}, "w": token, "p": True}, session=session)
    calls = [
        claims.replace_one({"_id": d["_id"], "w": token, "p": True}, d["prev"], session=session)
        for d in docs
        if d.get("prev") is not None
    ]
    await each(calls, session)


async def claims_in(
    claims: AsyncCollection[Doc], scope: str, low: int, high: int, now: int
) -> list[Claim]:
    """The claims of `scope` with `low <= quantum < high` live at `now` (µs), by quantum.

    Provisional claims count as stored (a taken key shows as taken while its apply runs, and
    lapses with its provisional expiry if that apply died)."""
    flt = {
        "scope": scope,
        "quantum": {"$gte": low, "$lt": high},
        "$or": [{"expires": None}, {"expires": {"$gte": now}}],
    }
    docs = await claims.find(flt).sort([("quantum", ASCENDING)]).to_list()
    return [claim_from_doc(d) for d in docs]


async def claims_of(claims: AsyncCollection[Doc], owner: str) -> list[Claim]:
    """Every claim of `owner`, expired ones included, by scope, quantum."""
    order = [("scope", ASCENDING), ("quantum", ASCENDING)]
    docs = await claims.find({"owner": owner}).sort(order).to_list()
    return [claim_from_doc(d) for d in docs]


async def release_expired(claims: AsyncCollection[Doc], now: int) -> list[str]:
    """Delete the final claims with `expires < now` (µs); return their owners, sorted.

    Provisional claims are left to their apply or its recovery (one whose apply committed
    still holds its key). Each deletion is filtered on the document read (owner, expiry,
    writer), so a claim taken over or made provisional meanwhile stays.
    """
    flt = {"expires": {"$lt": now}, "p": None}
    docs = await claims.find(flt, {"owner": 1, "expires": 1, "w": 1}).to_list()
    for start in range(0, len(docs), SWEEP_BATCH):
        batch = docs[start : start + SWEEP_BATCH]
        exact = [
            {
                "_id": d["_id"],
                "owner": d["owner"],
                "expires": d["expires"],
                "w": d.get("w"),
                "p": None,
            }
            for d in batch
        ]
        await claims.delete_many({"$or": exact})
    return sorted({d["owner"] for d in docs})
