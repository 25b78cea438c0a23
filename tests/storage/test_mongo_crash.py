"""Crash safety of `MongoStore.apply` (SCHEDULING.md "Never double-book"; ResourceStore.recover).

A process that dies at any step of an apply must leave no claim live a minute later unless
its Appointment versions were committed, and `recover` must then restore exactly the state
before the call (a crash before the commit point) or complete it (a crash after).

A crash is simulated with `YieldingDatabase`'s fault hook: from the k-th database call on,
every call of the dying store raises `Crash`, reads included, so its in-process undo cannot
reach the database, as after a real crash. Every k from 0 (nothing done) to the number of calls
of a successful apply (nothing left undone) is tried in turn. Other MongoStores over the same
database play the processes that recover or book afterwards. Runs on mongomock, and on a real
MongoDB when FHIR_SERVER_TEST_MONGODB_URL is set. The clock is fixed at T; instants are µs
UTC.

The calls that lose a key to a rival before their commit point, on the same harness:
`test_mongo_taken_claims.py`.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from mongomock_motor import AsyncMongoMockClient
from pymongo import AsyncMongoClient

from fhir_server.storage.base import WriteOp, is_live
from fhir_server.storage.mongo import MongoStore
from fhir_server.storage.mongo_journal import LEASE_US
from resources.errors import ClaimConflict, StoreConflict
from tests.engines import MONGODB_URL_VAR
from tests.storage.contract import index, version
from tests.storage.interleaving import YieldingDatabase
from tests.storage.test_claims_contract import book

SECOND = 1_000_000
T = 1_767_225_600_000_000  # the fixed "now" of the call (2026-01-01T00:00:00Z)
LATER = T + 61 * SECOND  # a minute and a second after the call
HOLD = T + 300 * SECOND

Doc = dict[str, Any]
COLLECTIONS = ("resources", "history", "claims")

PREPARE = [
    book("a", [0, 1, 2, 3]),
    book("h", [10, 11], expires=HOLD),
    book("x", [20, 21], expires=T - SECOND),
    WriteOp(version("Patient", "p", 1, at=T), 0, index()),
]
"""The state before the call: Appointment/a booked on minutes 0-3, a live hold `h` on 10-11,
an expired hold `x` on 20-21, and Patient/p."""

CALL = [
    book("a", [2, 3, 4], v=2),
    book("b", [1, 5, 20]),
    book("h", [10, 11], v=2),
    WriteOp(version("Patient", "p", 2, at=T), 1, index()),
    WriteOp(version("Patient", "q", 1, at=T), 0, index()),
]
"""The call that crashes: `a` gives up 0 and 1, keeps 2-3 and takes 4; `b` takes 1 from `a`, 5
free and 20 from the expired hold; the hold `h` is booked (its kept keys lose their expiry);
Patient/p is updated and Patient/q created."""


class Crash(ConnectionError):
    """The dying process's database calls, from the crash on."""


class Clock:
    """A clock the test sets (µs UTC)."""

    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


@dataclass
class Run:
    """One apply of CALL by a process that dies before its database call number `crash_at`."""

    db: Any
    before: dict[str, list[Doc]]
    calls: list[str] = field(default_factory=list)
    error: Exception | None = None


NewDatabase = Callable[[], Any]
"""Makes a fresh, empty database of the engine under test."""


@pytest.fixture(params=["mongomock", "mongodb"])
async def new_db(request: pytest.FixtureRequest) -> AsyncIterator[NewDatabase]:
    """Fresh databases on mongomock, or on the real MongoDB at FHIR_SERVER_TEST_MONGODB_URL
    (skipped when unset; the databases are dropped afterwards)."""
    if request.param == "mongomock":
        yield lambda: AsyncMongoMockClient()[f"fhir_crash_{uuid.uuid4().hex}"]
        return
    url = os.environ.get(MONGODB_URL_VAR)
    if not url:
        pytest.skip(f"{MONGODB_URL_VAR} is not set: no real MongoDB to test against")
    client: AsyncMongoClient[Doc] = AsyncMongoClient(url)
    names: list[str] = []

    def make() -> Any:
        names.append(f"fhir_crash_{uuid.uuid4().hex}")
        return client[names[-1]]

    try:
        yield make
    finally:
        for name in names:
            await client.drop_database(name)
        await client.close()


def store_on(db: Any, now: int, seed: int | None = None) -> MongoStore:
    """Another process: a MongoStore over `db` whose clock says `now`."""
    database = db if seed is None else YieldingDatabase(db, seed)
    return MongoStore(cast(Any, database), clock=Clock(now))


async def dump(db: Any, *, tokens: bool = True) -> dict[str, list[Doc]]:
    """Every document of resources, history and claims by `_id`; without the writers' call
    tokens `w` when `tokens` is false (to compare with another run of the same writes)."""
    out: dict[str, list[Doc]] = {}
    for name in COLLECTIONS:
        docs = await db[name].find({}).sort([("_id", 1)]).to_list()
        out[name] = docs if tokens else [{k: v for k, v in d.items() if k != "w"} for d in docs]
    return out


def live_claims(state: dict[str, list[Doc]], at: int) -> set[tuple[str, str]]:
    """(key, owner) of every claim in `state` live at `at`."""
    return {(d["_id"], d["owner"]) for d in state["claims"] if is_live(d.get("expires"), at)}


async def run_dying(new_db: NewDatabase, crash_at: int | None) -> Run:
    """Prepare a fresh database, then apply CALL in a process whose database calls fail from
    call number `crash_at` on (None: never)."""
    db = new_db()
    setup = store_on(db, T)
    await setup.start()
    await setup.apply(PREPARE)
    await setup.seal_events()
    run = Run(db, await dump(db))

    async def fault(collection: str, method: str) -> None:
        run.calls.append(f"{collection}.{method}")
        if crash_at is not None and len(run.calls) > crash_at:
            raise Crash(f"the process died before {collection}.{method}")

    dying = MongoStore(cast(Any, YieldingDatabase(db, 0, fault)), clock=Clock(T))
    try:
        await dying.apply(CALL)
    except Exception as exc:
        run.error = exc
    return run


@dataclass
class Reference:
    """A successful apply of CALL: its database calls, where its commit point is, and the
    state it leaves (without call tokens)."""

    calls: list[str]
    commit_at: int
    after: dict[str, list[Doc]]

    def committed(self, crash_at: int) -> bool:
        """Whether a crash before call `crash_at` comes after the commit point."""
        return crash_at > self.commit_at

    def where(self, crash_at: int) -> str:
        if crash_at >= len(self.calls):
            return "no crash"
        return f"crash before call {crash_at} ({self.calls[crash_at]})"


async def reference(new_db: NewDatabase) -> Reference:
    run = await run_dying(new_db, None)
    assert run.error is None
    commit = "journal.find_one_and_update"
    commit_at = run.calls.index(commit) if commit in run.calls else len(run.calls) - 1
    return Reference(run.calls, commit_at, await dump(run.db, tokens=False))


async def test_apply_crash_at_any_step_no_claim_live_after_a_minute_unless_committed(
    new_db: NewDatabase,
) -> None:
    """(b): a minute and a second after the crash, the only live claims are those before the
    call, plus the call's own if it was committed; after the hold sweeper ran, a rival then
    takes the keys the call took only if it was not committed."""
    ref = await reference(new_db)
    problems: list[str] = []
    for k in range(len(ref.calls) + 1):
        run = await run_dying(new_db, k)
        committed = ref.committed(k)
        allowed = live_claims(run.before, LATER)
        if committed:
            allowed |= live_claims(ref.after, LATER)
        extra = live_claims(await dump(run.db), LATER) - allowed
        if extra:
            problems.append(f"{ref.where(k)}: live at +61 s: {sorted(extra)}")
        rival = store_on(run.db, LATER)
        await rival.release_expired(LATER)
        try:
            await rival.apply([book("r", [4, 5, 20])])
            took = True
        except ClaimConflict:
            took = False
        if took == committed:
            outcome = "took" if took else "could not take"
            problems.append(f"{ref.where(k)}: a rival at +61 s {outcome} minutes 4, 5, 20")
    assert problems == []


async def test_apply_crash_at_any_step_recover_restores_before_or_completes_after(
    new_db: NewDatabase,
) -> None:
    """(a) and (c): right after a crash before any resource write nothing of the call is
    visible; after `recover` (not before the lease lapsed) the database holds exactly the
    state before the call, or exactly the complete state after it, claims included."""
    ref = await reference(new_db)
    first_write = min(
        (i for i, c in enumerate(ref.calls) if c.startswith(("resources.", "history."))),
        default=len(ref.calls),
    )
    problems: list[str] = []
    for k in range(len(ref.calls) + 1):
        run = await run_dying(new_db, k)
        if k <= first_write and (await dump(run.db))["resources"] != run.before["resources"]:
            problems.append(f"{ref.where(k)}: resources changed before any resource write")
        recoverer = store_on(run.db, T + LEASE_US + 1)
        early = await recoverer.recover(T + LEASE_US)
        recovered = await recoverer.recover(T + LEASE_US + 1)
        if early:
            problems.append(f"{ref.where(k)}: recovered {early} call(s) before the lease lapsed")
        if ref.committed(k):
            if await dump(run.db, tokens=False) != ref.after:
                problems.append(f"{ref.where(k)}: not the complete after state ({recovered=})")
        elif await dump(run.db) != run.before:
            problems.append(f"{ref.where(k)}: not the before state ({recovered=})")
        if await run.db["journal"].count_documents({}):
            problems.append(f"{ref.where(k)}: journal documents left")
    assert problems == []


def lined_up(n: int) -> Callable[[Any, int, int], MongoStore]:
    """`n` stores (processes) over one database whose first attempts to take a journal head
    wait for each other, so all of them have read the lapsed heads before any takes one."""
    arrived = 0
    everyone = asyncio.Event()

    def store(db: Any, now: int, seed: int) -> MongoStore:
        first = True

        async def line_up(collection: str, method: str) -> None:
            nonlocal arrived, first
            if collection == "journal" and method == "find_one_and_update" and first:
                first = False
                arrived += 1
                if arrived == n:
                    everyone.set()
                await everyone.wait()

        return MongoStore(cast(Any, YieldingDatabase(db, seed, line_up)), clock=Clock(now))

    return store


async def test_recover_twice_or_concurrently_recovers_each_call_once(new_db: NewDatabase) -> None:
    """(d): two processes recovering at once (both having read the lapsed head) recover a
    crashed call once between them, a second pass finds nothing, and the state is the same
    as after a single recovery."""
    ref = await reference(new_db)
    problems: list[str] = []
    at = T + LEASE_US + 1
    for k in range(len(ref.calls) + 1):
        run = await run_dying(new_db, k)
        heads = await run.db["journal"].count_documents({"kind": "head"})
        store = lined_up(2)
        counts = await asyncio.gather(
            store(run.db, at, 1).recover(at), store(run.db, at, 2).recover(at)
        )
        again = await store_on(run.db, at).recover(at)
        if sum(counts) != heads or again:
            problems.append(f"{ref.where(k)}: {heads} head(s), recovered {counts} then {again}")
        expected = ref.after if ref.committed(k) else run.before
        if await dump(run.db, tokens=not ref.committed(k)) != expected:
            problems.append(f"{ref.where(k)}: wrong state after concurrent recovery")
    assert problems == []


async def test_apply_on_a_version_of_a_crashed_call_conflicts_until_recovered(
    new_db: NewDatabase,
) -> None:
    """A version written by a call that crashed before its commit point is no base for
    another write (it is about to disappear): a write on top of it conflicts, and after
    recovery the earlier version is current again."""
    ref = await reference(new_db)
    run = await run_dying(new_db, ref.commit_at)
    other = store_on(run.db, T + SECOND)
    current = await other.read("Patient", "p")
    assert current is not None
    assert current.version_id == 2
    try:
        await other.apply([WriteOp(version("Patient", "p", 3, at=T), 2, index())])
        wrote = True
    except StoreConflict:
        wrote = False
    assert not wrote
    assert await other.recover(T + LEASE_US + 1) == 1
    restored = await other.read("Patient", "p")
    assert restored is not None
    assert restored.version_id == 1
