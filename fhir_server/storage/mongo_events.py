"""MongoDB's event log and leases (`base.ResourceStore` "Events", "Leases").

The event log is the `history` collection: `apply` writes each version's history document
with `o: true` (an event not numbered yet), in the same journaled write as the version
itself, so a rolled-back apply takes its events with it and a committed one keeps them. An
apply's documents become visible one by one and applies commit in any order, so the history
order (`hseq`, reserved before the write) is not the order readers first see them: `seal`
numbers the committed ones (`e`, from the `event` counter) in one process at a time (under the
store lock SEAL_LOCK), one by one in increasing order, and readers read by `e`. A document
whose apply is still in flight waits for a later `seal`.

Leases are documents of the `locks` collection `{_id: key, expires: µs, owner}`.
Instants are µs since the epoch, UTC.
"""

from __future__ import annotations

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from fhir_server.model import Event
from fhir_server.storage.mongo_apply import allocate
from fhir_server.storage.mongo_journal import call_states
from fhir_server.storage.mongo_schema import COMMITTED, Collections, Doc, stored_from_doc

__all__ = ["SEAL_LOCK", "events_after", "latest_event", "pending", "seal", "take_lease"]

SEAL_LOCK = "event-log:seal"
"""The `lock` key under which one process at a time numbers events."""


async def pending(cols: Collections) -> bool:
    """Whether any history document waits for its event number."""
    return await cols.history.find_one({"o": True}, {"_id": 1}) is not None


async def seal(cols: Collections, now: int, limit: int) -> int:
    """Number up to `limit` history documents with `o: true` whose apply committed (its
    journal head committed or gone), oldest `hseq` first; return how many. Documents of an
    apply in flight (pending head) or rolled back (aborted head) are left alone. The caller
    holds SEAL_LOCK."""
    find = cols.history.find({"o": True}, {"_id": 1, "w": 1}).sort([("hseq", ASCENDING)])
    docs = await find.limit(limit).to_list()
    if not docs:
        return 0
    states = await call_states(cols.journal, {d["w"] for d in docs}, now, None)
    ready = [d for d in docs if states.get(d["w"], COMMITTED) == COMMITTED]
    if not ready:
        return 0
    first = await allocate(cols, len(ready), "event")
    for i, doc in enumerate(ready):
        await cols.history.update_one(
            {"_id": doc["_id"], "w": doc["w"], "o": True},
            {"$set": {"e": first + i}, "$unset": {"o": ""}},
        )
    return len(ready)


async def events_after(cols: Collections, after: int, limit: int) -> list[Event]:
    """The numbered history documents with `e > after`, by `e`, at most `limit`."""
    find = cols.history.find({"e": {"$gt": after}}).sort([("e", ASCENDING)])
    return [Event(int(d["e"]), stored_from_doc(d)) for d in await find.limit(limit).to_list()]


async def latest_event(cols: Collections) -> int:
    """The highest event number handed out (0 for none)."""
    find = cols.history.find({"e": {"$gt": 0}}, {"e": 1}).sort([("e", DESCENDING)])
    docs = await find.limit(1).to_list()
    return int(docs[0]["e"]) if docs else 0


async def take_lease(
    locks: AsyncCollection[Doc], key: str, owner: str, now: int, expires: int
) -> bool:
    """Renew the lease `key` if `owner` holds it or it lapsed before `now`, else insert it
    for `owner` until `expires`; False while another owner's lease runs (the unique `_id`
    decides between two takers)."""
    flt = {"_id": key, "$or": [{"owner": owner}, {"expires": {"$lt": now}}]}
    update = {"$set": {"expires": expires, "owner": owner}}
    if await locks.find_one_and_update(flt, update) is not None:
        return True
    try:
        await locks.insert_one({"_id": key, "expires": expires, "owner": owner})
    except DuplicateKeyError:
        return False
    return True
