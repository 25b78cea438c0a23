"""The event log across a crashed MongoDB apply (ARCHITECTURE.md "Events and background
work": committed change <=> recorded event).

On the harness of `test_mongo_crash.py`: the apply of CALL dies before each of its database
calls in turn. Until recovery, sealing numbers none of its versions unless it committed (the
in-flight call's history documents wait); after `recover`, the log holds exactly CALL's five
versions if it committed and none of them otherwise. Instants are µs UTC.
"""

from __future__ import annotations

from fhir_server.storage.mongo import MongoStore
from fhir_server.storage.mongo_journal import LEASE_US
from tests.storage.test_mongo_crash import (
    CALL,
    NewDatabase,
    T,
    reference,
    run_dying,
    store_on,
)
from tests.storage.test_mongo_crash import new_db as new_db  # noqa: PLC0414 (the fixture)

CALL_VERSIONS = sorted(
    (op.version.resource_type, op.version.id, op.version.version_id) for op in CALL
)


async def _logged(store: MongoStore, after: int) -> list[tuple[str, str, int]]:
    await store.seal_events()
    return sorted(
        (e.version.resource_type, e.version.id, e.version.version_id)
        for e in await store.events_after(after, 1000)
    )


async def test_crash_at_any_step_events_only_for_a_committed_call(
    new_db: NewDatabase,
) -> None:
    ref = await reference(new_db)
    problems: list[str] = []
    for k in range(len(ref.calls) + 1):
        run = await run_dying(new_db, k)
        reader = store_on(run.db, T)
        start = await reader.latest_event()  # PREPARE's events, numbered by `run_dying`
        early = await _logged(reader, start)
        if early and early != CALL_VERSIONS:
            problems.append(f"{ref.where(k)}: partial events before recovery: {early}")
        if early and not ref.committed(k):
            problems.append(f"{ref.where(k)}: events of an uncommitted call: {early}")
        recoverer = store_on(run.db, T + LEASE_US + 1)
        await recoverer.recover(T + LEASE_US + 1)
        after = sorted({*early, *await _logged(recoverer, start)})
        wanted = CALL_VERSIONS if ref.committed(k) else []
        if after != wanted:
            problems.append(f"{ref.where(k)}: events after recovery {after}, wanted {wanted}")
    assert problems == []
