"""`MongoStore.apply` losing a key to another process before its commit point (SCHEDULING.md
"Never double-book"): a call that stalls past its claims' provisional expiry while a rival
books one of its keys, or whose written claim someone takes behind its back, fails and undoes
itself, never a double booking.

The state before (PREPARE), the call (CALL), the fixed clock T and the engines (`new_db`:
mongomock, and a real MongoDB when FHIR_SERVER_TEST_MONGODB_URL is set) are those of
`test_mongo_crash.py`; instants are µs UTC.
"""

from __future__ import annotations

from typing import Any, cast

import pytest

from fhir_server.storage.mongo import MongoStore
from resources.errors import ClaimConflict, StoreConflict
from tests.storage.interleaving import YieldingDatabase
from tests.storage.test_claims_contract import SCOPE, book
from tests.storage.test_mongo_crash import (
    CALL,
    COLLECTIONS,
    LATER,
    PREPARE,
    Clock,
    NewDatabase,
    Run,
    T,
    dump,
    store_on,
)
from tests.storage.test_mongo_crash import new_db as new_db  # noqa: PLC0414 (the fixture)


async def stall_then_rival(
    new_db: NewDatabase, stall_before: str, clock_moves: bool
) -> tuple[Run, list[BaseException | None]]:
    """Apply CALL in a process that stalls for a minute and a second before its first
    `stall_before` call, during which a rival books minute 4 (which CALL takes for `a`). The
    stalled process's clock moves on too, or keeps saying T (a `now` read before the stall)."""
    db = new_db()
    setup = store_on(db, T)
    await setup.start()
    await setup.apply(PREPARE)
    run = Run(db, await dump(db))
    clock = Clock(T)
    rival: list[BaseException | None] = []

    async def fault(collection: str, method: str) -> None:
        run.calls.append(f"{collection}.{method}")
        if f"{collection}.{method}" == stall_before and not rival:
            clock.now = LATER if clock_moves else T
            try:
                await store_on(db, LATER).apply([book("r", [4])])
                rival.append(None)
            except StoreConflict as exc:
                rival.append(exc)

    stalled = MongoStore(cast(Any, YieldingDatabase(db, 0, fault)), clock=clock)
    try:
        await stalled.apply(CALL)
    except StoreConflict as exc:
        run.error = exc
    return run, rival


@pytest.mark.parametrize("clock_moves", [True, False])
@pytest.mark.parametrize("stall_before", ["resources.replace_one", "journal.find_one_and_update"])
async def test_apply_stalled_past_provisional_expiry_loses_to_rival_and_undoes(
    new_db: NewDatabase, stall_before: str, clock_moves: bool
) -> None:
    """A call that stalls past its claims' provisional expiry (before its first resource
    write, or just before its commit point) while a rival takes one of its keys fails and
    undoes itself: the rival holds the key, the call left nothing, never a double booking.
    With a clock that did not move, only the rival's abort of the call's head stops the
    commit."""
    run, rival = await stall_then_rival(new_db, stall_before, clock_moves)
    assert rival == [None]
    assert isinstance(run.error, ClaimConflict)
    assert run.error.key == "Schedule/s1#4"
    state = await dump(run.db)
    mine = {"Appointment/r", "Appointment/r/1", "Schedule/s1#4"}
    for name in COLLECTIONS:
        assert [d for d in state[name] if d["_id"] not in mine] == run.before[name], name
    four = [(d["owner"], d["expires"]) for d in state["claims"] if d["_id"] in mine]
    assert four == [("Appointment/r", None)]
    assert [d["_id"] for d in state["history"] if d["_id"] in mine] == ["Appointment/r/1"]
    assert await run.db["journal"].count_documents({}) == 0


async def test_apply_claim_taken_behind_its_back_fails_before_commit(new_db: NewDatabase) -> None:
    """A claim the call wrote that someone takes without going through its journal head (a
    server of an older version during a rolling upgrade) makes the call fail at its check
    before the commit point and undo itself, never a double booking."""
    db = new_db()
    setup = store_on(db, T)
    await setup.start()
    await setup.apply(PREPARE)
    before = await dump(db)
    taken = {"owner": "Appointment/old", "expires": None, "w": "older-server"}

    async def take_behind(collection: str, method: str) -> None:
        if f"{collection}.{method}" == "resources.replace_one":
            unmark = {"p": "", "prev": "", "fin": ""}
            flt = {"_id": "Schedule/s1#4"}
            await db["claims"].update_one(flt, {"$set": taken, "$unset": unmark})

    store = MongoStore(cast(Any, YieldingDatabase(db, 0, take_behind)), clock=Clock(T))
    try:
        await store.apply(CALL)
        error = None
    except ClaimConflict as exc:
        error = exc
    assert error is not None
    assert error.key == "Schedule/s1#4"
    state = await dump(db)
    four = [d for d in state["claims"] if d["_id"] == "Schedule/s1#4"]
    assert four == [{"_id": "Schedule/s1#4", "scope": SCOPE, "quantum": 4, **taken}]
    for name in COLLECTIONS:
        assert [d for d in state[name] if d["_id"] != "Schedule/s1#4"] == before[name], name
    assert await db["journal"].count_documents({}) == 0
