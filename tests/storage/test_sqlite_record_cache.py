"""SQLite's record cache (`sqlite_records.RecordCache`) never answers from an old state: a
record changed by another connection (another worker process) or by the store itself is read
anew at once, and a caller changing the document it got changes nothing kept."""

from __future__ import annotations

import asyncio
import sqlite3

import orjson

from fhir_server.storage.sqlite import SQLiteStore
from resources.fhir_dates import now_us


async def test_changes_by_another_process_and_by_the_store_are_seen_at_once(
    sqlite_and_other: tuple[SQLiteStore, sqlite3.Connection],
) -> None:
    store, other = sqlite_and_other
    await store.put_record("grant", "g1", {"active": True})
    first = await store.get_record("grant", "g1")
    assert first == {"active": True}
    first["active"] = "changed by the caller"
    assert await store.get_record("grant", "g1") == {"active": True}  # kept apart
    # another worker revokes the grant: the next read sees it
    other.execute(
        "UPDATE records SET doc = ? WHERE kind = 'grant' AND key = 'g1'",
        (orjson.dumps({"active": False}),),
    )
    assert await store.get_record("grant", "g1") == {"active": False}
    # another worker deletes it; then this store writes it again itself
    other.execute("DELETE FROM records WHERE kind = 'grant' AND key = 'g1'")
    assert await store.get_record("grant", "g1") is None
    await store.put_record("grant", "g1", {"active": "again"})
    assert await store.get_record("grant", "g1") == {"active": "again"}
    # a record that lapses while nothing changes is absent once it has lapsed
    await store.put_record("code", "c1", {"n": 1}, expires=now_us() + 200_000)
    assert await store.get_record("code", "c1") == {"n": 1}
    await asyncio.sleep(0.3)
    assert await store.get_record("code", "c1") is None
