"""The claim writes of one `MongoStore.apply` call (SCHEDULING.md "Never double-book").

`ClaimRun` reads the claims of the call's owners and keys, plans the provisional document of
every key the call changes (refusing keys held live by others before anything is written),
writes them before the call's resource documents (`take`: keys taken in key order first, so of
racing calls the first to a key wins and two never block each other), checks just before the
commit point that none was taken over meanwhile (`check`), and makes them final after it
(`finish`). What a provisional claim is and how others read it: `mongo_claims.py`. Keys wanted
by two owners of the call never get here (`base.final_claim_sets`). Instants are µs UTC.
"""

from __future__ import annotations

from collections.abc import Sequence

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, DuplicateKeyError

from fhir_server.storage.base import ClaimSet, is_live
from fhir_server.storage.mongo_claims import (
    DUPLICATE_KEY,
    PROVISIONAL_US,
    CallStates,
    each,
    effective,
    finish,
)
from fhir_server.storage.mongo_schema import Doc, Session, claim_doc, claim_id, provisional_claim
from resources.errors import ClaimConflict

MAX_ATTEMPTS = 8
"""How often one key is looked at again when it changes under a taker before giving up."""


class ClaimRun:
    """The claims of one `apply` call: read, plan, provisional writes, check, finish.

    Args:
        claims: the `claims` collection.
        sets: the final claim sets of the call (`base.final_claim_sets`: keys unique and
            sorted, no key wanted by two owners).
        now: µs UTC; another owner's claim with `expires < now` may be taken over.
        token: the call's id (`w` of what it writes, its journal head's `_id`).
        states: resolves other calls' tokens to their journal states.
        session: the transaction the call runs in, or None.
    """

    def __init__(
        self,
        claims: AsyncCollection[Doc],
        sets: Sequence[ClaimSet],
        now: int,
        token: str,
        states: CallStates,
        session: Session,
    ) -> None:
        self._claims = claims
        self._now = now
        self._token = token
        self._call_states = states
        self._session = session
        self._owners = {cs.owner for cs in sets}
        self._wanted = {
            claim_id(k): (k, cs.owner, cs.expires) for cs in sets for k in sorted(cs.keys)
        }
        self._found: dict[str, Doc] = {}
        self._states: dict[str, str] = {}
        self._plan: dict[str, Doc] = {}
        self._taking: list[str] = []
        self.written: dict[str, Doc] = {}
        """The provisional documents written, by `_id`."""

    async def read(self) -> set[str]:
        """Read the claims the call's owners hold (or held before an unfinished call) and the
        keys it wants; return the tokens of the calls that left any of them provisional."""
        if not self._owners:
            return set()
        owners = sorted(self._owners)
        flt = {
            "$or": [
                {"owner": {"$in": owners}},
                {"prev.owner": {"$in": owners}},
                {"_id": {"$in": list(self._wanted)}},
            ]
        }
        docs = await self._claims.find(flt, session=self._session).to_list()
        self._found = {d["_id"]: d for d in docs}
        return {d["w"] for d in docs if d.get("p")}

    def plan(self, states: dict[str, str]) -> dict[str, list[str]]:
        """Decide the provisional document of every key the call changes.

        Args:
            states: journal head states of the tokens `read` returned.

        Returns:
            The `_id`s it will write, by owner (for the journal).

        Raises:
            ClaimConflict: a key is held live by another owner, or provisional for another
                call in flight; nothing has been written.
        """
        self._states = dict(states)
        current = {cid: effective(doc, self._states) for cid, doc in self._found.items()}
        for cid, (_, owner, _) in self._wanted.items():
            held = current.get(cid)
            want = self._want(cid, held, self._found.get(cid))
            if want is not None:
                self._plan[cid] = want
                if held is None or held["owner"] != owner:
                    self._taking.append(cid)
        for cid, doc in current.items():
            if cid not in self._wanted and (want := self._release(doc)) is not None:
                self._plan[cid] = want
        by_owner: dict[str, list[str]] = {}
        for cid, want in self._plan.items():
            owner = want["fin"]["owner"] if want["fin"] else want["owner"]
            by_owner.setdefault(owner, []).append(cid)
        return by_owner

    def _want(self, cid: str, current: Doc | None, stored: Doc | None) -> Doc | None:
        """The provisional document for wanted key `cid`, None if it is as wanted already.

        Raises:
            ClaimConflict: `current` is held live by an owner outside the call.
        """
        key, owner, expires = self._wanted[cid]
        if current is not None and current["owner"] == owner:
            if current.get("expires") == expires and current is stored:
                return None
            return provisional_claim(current, self._token, current, (owner, expires))
        outsider = current is not None and current["owner"] not in self._owners
        if outsider and current is not None and is_live(current.get("expires"), self._now):
            raise ClaimConflict(f"{cid} is held by {current['owner']}", key=cid)
        until = self._now + PROVISIONAL_US
        stored_expiry = until if expires is None else min(expires, until)
        fresh = claim_doc(key, owner, stored_expiry, self._token)
        return provisional_claim(fresh, self._token, current, (owner, expires))

    def _release(self, current: Doc | None) -> Doc | None:
        """The provisional document releasing `current` if an owner of the call holds it."""
        if current is None or current["owner"] not in self._owners:
            return None
        return provisional_claim(current, self._token, current, None)

    async def take(self) -> None:
        """Write the planned provisional documents: the keys the call takes first, in key
        order (of racing calls the first to a key wins, so two never block each other), then
        those its owners keep or give up.

        Raises:
            ClaimConflict: a key was taken meanwhile by another owner who holds it live (or is
                still writing it); what was written so far is in `written`, for the undo.
        """
        batch: list[str] = []
        for cid in self._taking:
            if self._found.get(cid) is None:
                batch.append(cid)
                continue
            await self._insert(batch)
            batch = []
            await self._settle(cid, self._found[cid], self._plan[cid])
        await self._insert(batch)
        rest = [cid for cid in self._plan if cid not in self._taking]
        await each(
            [self._settle(c, self._found.get(c), self._plan[c]) for c in rest], self._session
        )

    async def _insert(self, cids: list[str]) -> None:
        """Insert the planned documents of `cids` in order; settle each one found taken,
        then go on after it."""
        pending = cids
        while pending:
            try:
                docs = [dict(self._plan[c]) for c in pending]
                await self._claims.insert_many(docs, ordered=True, session=self._session)
            except BulkWriteError as exc:
                errors = exc.details.get("writeErrors") or []
                if not errors or errors[0].get("code") != DUPLICATE_KEY:
                    raise
                at = int(errors[0]["index"])
                if self._session is not None:  # a transaction cannot go on after an error
                    raise self._taken(pending[at]) from exc
                self.written.update((c, self._plan[c]) for c in pending[:at])
                await self._settle(pending[at], None, None)
                pending = pending[at + 1 :]
            else:
                self.written.update((c, self._plan[c]) for c in pending)
                return

    def _taken(self, cid: str) -> ClaimConflict:
        return ClaimConflict(f"{cid} was claimed by a concurrent write", key=cid)

    async def _settle(self, cid: str, cur: Doc | None, want: Doc | None) -> None:
        """Make `want` the stored document of `cid`, the stored one being `cur` as last read
        (`want` None: read `cid` and decide again).

        Raises:
            ClaimConflict: the key is held live by another owner, or keeps changing.
        """
        for _ in range(MAX_ATTEMPTS):
            if want is not None:
                if cur is None:
                    try:
                        await self._claims.insert_one(dict(want), session=self._session)
                    except DuplicateKeyError:
                        if self._session is not None:
                            raise self._taken(cid) from None
                    else:
                        self.written[cid] = want
                        return
                else:
                    flt = {"_id": cid, **{f: cur.get(f) for f in ("owner", "expires", "w", "p")}}
                    fields = {f: v for f, v in want.items() if f != "_id"}
                    update = {"$set": fields}
                    if await self._claims.find_one_and_update(flt, update, session=self._session):
                        self.written[cid] = want
                        return
            cur = await self._claims.find_one({"_id": cid}, session=self._session)
            if cur is not None and cur.get("w") == self._token:
                self.written[cid] = cur
                return
            if cur is not None and cur.get("p") and cur["w"] not in self._states:
                self._states.update(await self._call_states([cur["w"]]))
            current = None if cur is None else effective(cur, self._states)
            wanted = cid in self._wanted
            want = self._want(cid, current, cur) if wanted else self._release(current)
            if want is None:
                self._plan.pop(cid, None)
                return
            self._plan[cid] = want
        raise ClaimConflict(f"{cid} kept changing while being claimed", key=cid)

    async def check(self) -> None:
        """Check that the call still holds every provisional claim it wrote (none was taken
        over after stalling past its provisional expiry), just before the commit point.

        Raises:
            ClaimConflict: a key is no longer the call's (`key` = its `_id`).
        """
        if not self.written:
            return
        flt = {"_id": {"$in": list(self.written)}, "w": self._token}
        found = self._claims.find(flt, {"_id": 1}, session=self._session)
        mine = {d["_id"] for d in await found.to_list()}
        for cid in self.written:
            if cid not in mine:
                raise ClaimConflict(f"{cid} was taken over before the write finished", key=cid)

    async def finish(self) -> None:
        """After the commit point: make every provisional claim of the call final."""
        await finish(self._claims, self._token, self.written.values(), self._session)
