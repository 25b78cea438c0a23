"""Time claims on MongoDB: the `claims` collection behind SCHEDULING.md "Never double-book".

No multi-document transaction is relied on. A key is one document whose `_id` is
`{scope}#{quantum}` (schema in `mongo_schema.py`), so of two owners inserting it, in any
number of processes, exactly one succeeds. A key held by someone else changes hands only
through `find_one_and_update` filtered on the holder, its `expires` and the call that wrote it
(`w`): of two concurrent takers of an expired hold, one matches and the other sees the winner.

`MongoStore.apply` drives one `ClaimRun` per call: `take()` after the expected versions are
checked and before any resource is written (so an Appointment never becomes visible without
its claims), `release()` after the resources, `undo()` if anything failed. Instants are µs
since the epoch, UTC. Calls stay within the mongomock-motor surface (`find().to_list()`,
`find_one`, `insert_one/many`, `replace_one`, `find_one_and_update`, `delete_many`).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Coroutine, Sequence
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, DuplicateKeyError

from fhir_server.storage.base import Claim, ClaimSet, is_live
from fhir_server.storage.mongo_schema import Doc, claim_doc, claim_from_doc, claim_id
from resources.errors import ClaimConflict

DUPLICATE_KEY = 11000
"""MongoDB's error code for a unique index violation."""
MAX_ATTEMPTS = 8
"""How often one key is looked at again when it changes under a taker before giving up."""
SWEEP_BATCH = 500
"""Claims deleted per round trip by `release_expired`."""

log = logging.getLogger(__name__)


class ClaimRun:
    """The claim writes of one `apply` call and their undo log.

    Args:
        claims: the `claims` collection.
        sets: the final claim sets of the call (`base.final_claim_sets`: keys unique and
            sorted, no key wanted by two owners).
        now: µs UTC; another owner's claim with `expires < now` may be taken over.
    """

    def __init__(self, claims: AsyncCollection[Doc], sets: Sequence[ClaimSet], now: int) -> None:
        self._claims = claims
        self._sets = sets
        self._now = now
        self._token = uuid.uuid4().hex
        self._releasing: dict[str, Doc] = {}
        self._inserted: list[str] = []
        self._replaced: dict[str, Doc] = {}
        self._deleted: list[Doc] = []

    async def take(self) -> None:
        """Take every new key, re-date kept ones, take over expired or released-here ones.

        Keys an owner gives up stay held until `release()`, unless another owner of the same
        call takes them over here.

        Raises:
            StoreConflict: a key is held by another owner whose claim is live (`key` =
                `{scope}#{quantum}`); what was taken so far is left for `undo()`.
        """
        if not self._sets:
            return
        owners = [cs.owner for cs in self._sets]
        held: dict[str, dict[str, Doc]] = {owner: {} for owner in owners}
        for doc in await self._claims.find({"owner": {"$in": owners}}).to_list():
            held[doc["owner"]][doc["_id"]] = doc
        for cs in self._sets:
            wanted = {claim_id(k) for k in cs.keys}
            for cid, doc in held[cs.owner].items():
                if cid not in wanted:
                    self._releasing[cid] = doc
        for cs in self._sets:
            mine = held[cs.owner]
            fresh = [claim_doc(k, cs.owner, cs.expires, self._token) for k in cs.keys]
            redate = [(d, mine[d["_id"]]) for d in fresh if d["_id"] in mine]
            redate = [(d, cur) for d, cur in redate if cur.get("expires") != cs.expires]
            await self._insert([d for d in fresh if d["_id"] not in mine])
            await _all([self._settle(d, cur) for d, cur in redate])

    async def release(self) -> None:
        """Delete the keys the owners of the call gave up (and nobody of it took over)."""
        by_owner: dict[str, list[Doc]] = {}
        for doc in self._releasing.values():
            by_owner.setdefault(doc["owner"], []).append(doc)
        for owner, docs in by_owner.items():
            self._deleted.extend(docs)
            ids = [d["_id"] for d in docs]
            await self._claims.delete_many({"_id": {"$in": ids}, "owner": owner})

    async def undo(self) -> None:
        """Put back what this run changed: restore re-dated, taken-over and deleted claims,
        delete inserted ones. Only documents still carrying this run's `w` are touched."""
        for cid, before in self._replaced.items():
            try:
                await self._claims.replace_one({"_id": cid, "w": self._token}, before)
            except Exception:
                log.exception("Could not undo the claim %s", cid)
        try:
            if self._inserted:
                ids = list(dict.fromkeys(self._inserted))
                await self._claims.delete_many({"_id": {"$in": ids}, "w": self._token})
        except Exception:
            log.exception("Could not undo the claims inserted by %s", self._token)
        for doc in self._deleted:
            try:
                await self._claims.insert_one(dict(doc))
            except DuplicateKeyError:
                cid, owner = doc["_id"], doc["owner"]
                if await self._claims.find_one({"_id": cid, "owner": owner}) is None:
                    log.error("Claim %s of %s was taken before it could be restored", cid, owner)
            except Exception:
                log.exception("Could not restore the claim %s", doc["_id"])

    async def _insert(self, docs: list[Doc]) -> None:
        """Insert `docs` in order; settle each one found taken, then go on after it."""
        pending = docs
        while pending:
            self._inserted.extend(d["_id"] for d in pending)
            try:
                await self._claims.insert_many(pending, ordered=True)
                return
            except BulkWriteError as exc:
                errors = exc.details.get("writeErrors") or []
                if not errors or errors[0].get("code") != DUPLICATE_KEY:
                    raise
                at = int(errors[0]["index"])
            await self._settle(pending[at], None)
            pending = pending[at + 1 :]

    async def _settle(self, want: Doc, cur: Doc | None) -> None:
        """Make `want` (a claims document of this run) the stored document of its key.

        Args:
            want: the document to store.
            cur: the stored document as last read, or None to read it.

        Raises:
            StoreConflict: the key is held live by another owner who keeps it.
        """
        cid = want["_id"]
        for _ in range(MAX_ATTEMPTS):
            if cur is None:
                cur = await self._claims.find_one({"_id": cid})
            if cur is None:
                self._inserted.append(cid)
                try:
                    await self._claims.insert_one(dict(want))
                    return
                except DuplicateKeyError:
                    continue
            if not self._may_take(want, cur):
                raise ClaimConflict(f"{cid} is held by {cur['owner']}", key=cid)
            flt = {
                "_id": cid,
                "owner": cur["owner"],
                "expires": cur.get("expires"),
                "w": cur.get("w"),
            }
            fields = {k: want[k] for k in ("owner", "expires", "w")}
            before = await self._claims.find_one_and_update(flt, {"$set": fields})
            if before is not None:
                self._replaced.setdefault(cid, before)
                self._releasing.pop(cid, None)
                return
            cur = None
        raise ClaimConflict(f"{cid} kept changing while being claimed", key=cid)

    def _may_take(self, want: Doc, cur: Doc) -> bool:
        """Whether `cur` may be replaced by `want`: held by the same owner, given up by an
        owner of this call, or an expired hold."""
        if cur["owner"] == want["owner"]:
            return True
        given_up = self._releasing.get(cur["_id"])
        if given_up is not None and given_up["owner"] == cur["owner"]:
            return True
        return not is_live(cur.get("expires"), self._now)


async def _all(calls: Sequence[Coroutine[Any, Any, None]]) -> None:
    """Await every coroutine concurrently, let all finish (so none writes after an undo),
    then raise the first error."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException):
            raise r


async def claims_in(
    claims: AsyncCollection[Doc], scope: str, low: int, high: int, now: int
) -> list[Claim]:
    """The claims of `scope` with `low <= quantum < high` live at `now` (µs), by quantum."""
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
    """Delete the claims with `expires < now` (µs); return their owners, sorted.

    Each deletion is filtered on the owner and `expires` read, so a claim taken over
    meanwhile stays.
    """
    docs = await claims.find({"expires": {"$lt": now}}, {"owner": 1, "expires": 1}).to_list()
    for start in range(0, len(docs), SWEEP_BATCH):
        batch = docs[start : start + SWEEP_BATCH]
        exact = [{"_id": d["_id"], "owner": d["owner"], "expires": d["expires"]} for d in batch]
        await claims.delete_many({"$or": exact})
    return sorted({d["owner"] for d in docs})
