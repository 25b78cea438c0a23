"""The records part of the ResourceStore contract (`base.RecordStore`): small JSON documents
of the authorization server keyed by `(kind, key)`, with an optional expiry.

Runs on every engine of the `store` fixture (sqlite, mongomock, and a real MongoDB when
FHIR_SERVER_TEST_MONGODB_URL is set). Instants are µs UTC from `now_us()`.

mongomock-motor never suspends inside a call, so the race tests also run on
`interleaved_store`: a MongoStore over mongomock whose every call first yields to the event
loop a (seeded) random number of times (`tests/storage/interleaving.py`), so
concurrent calls interleave as they do on a real server.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import uuid
from pathlib import Path
from typing import Any, cast

import pytest

from fhir_server.storage.base import ResourceStore
from fhir_server.storage.mongo import MongoStore
from fhir_server.storage.sqlite import SQLiteStore
from resources.errors import StoreConflict
from resources.fhir_dates import now_us

KIND = "code"
HOUR = 3_600_000_000  # µs
RACERS = 20


def doc(n: int) -> dict[str, Any]:
    """A JSON object with every kind of JSON value, numbered `n`."""
    return {
        "n": n,
        "client_id": f"client-{n}",
        "scopes": ["patient/*.read", "launch"],
        "nested": {"ratio": 0.5, "ok": True, "none": None, "deep": [{"x": "é"}]},
        "a.b": "dotted key",
        "$ref": "dollar key",
    }


def past() -> int:
    """An instant a second ago (µs UTC)."""
    return now_us() - 1_000_000


def later() -> int:
    """An instant an hour from now (µs UTC)."""
    return now_us() + HOUR


# -- get, put ------------------------------------------------------------------------------------


async def test_get_record_missing_returns_none(store: ResourceStore) -> None:
    assert await store.get_record(KIND, "nope") is None


async def test_a_change_stamp_if_given_changes_with_every_write(store: ResourceStore) -> None:
    """`change_stamp`: None (the engine cannot tell: callers ask it) or a token that no write
    leaves as it was."""
    before = store.change_stamp()
    for n in range(3):
        await store.put_record(KIND, f"stamp-{n}", doc(n))
        after = store.change_stamp()
        assert (before is None) == (after is None)
        assert after is None or after != before
        before = after
    await store.get_record(KIND, "stamp-0")
    assert store.change_stamp() == before


async def test_put_record_then_get_returns_the_doc(store: ResourceStore) -> None:
    await store.put_record(KIND, "k", doc(1))
    assert await store.get_record(KIND, "k") == doc(1)


async def test_put_record_existing_replaces_doc_and_expiry(store: ResourceStore) -> None:
    await store.put_record(KIND, "k", doc(1), expires=later())
    await store.put_record(KIND, "k", doc(2), expires=past())
    assert await store.get_record(KIND, "k") is None
    await store.put_record(KIND, "k", doc(3))
    assert await store.get_record(KIND, "k") == doc(3)
    assert await store.list_records(KIND) == [("k", doc(3))]


async def test_put_record_same_key_other_kind_keeps_both(store: ResourceStore) -> None:
    await store.put_record("client", "k", doc(1))
    await store.put_record("user", "k", doc(2))
    assert await store.get_record("client", "k") == doc(1)
    assert await store.get_record("user", "k") == doc(2)


async def test_put_record_empty_doc_round_trips(store: ResourceStore) -> None:
    await store.put_record(KIND, "k", {})
    assert await store.get_record(KIND, "k") == {}


# -- insert --------------------------------------------------------------------------------------


async def test_insert_record_twice_conflicts_and_keeps_first(store: ResourceStore) -> None:
    await store.insert_record(KIND, "k", doc(1))
    with pytest.raises(StoreConflict) as caught:
        await store.insert_record(KIND, "k", doc(2))
    assert caught.value.key == f"{KIND}/k"
    assert caught.value.status == 409
    assert await store.get_record(KIND, "k") == doc(1)


async def test_insert_record_over_live_expiring_record_conflicts(store: ResourceStore) -> None:
    expires = later()
    await store.insert_record(KIND, "k", doc(1), expires=expires)
    with pytest.raises(StoreConflict):
        await store.insert_record(KIND, "k", doc(2))
    assert await store.take_record(KIND, "k") == doc(1)


async def test_insert_record_over_expired_record_succeeds(store: ResourceStore) -> None:
    await store.put_record(KIND, "k", doc(1), expires=past())
    await store.insert_record(KIND, "k", doc(2), expires=later())
    assert await store.get_record(KIND, "k") == doc(2)
    assert await store.purge_records(now_us()) == 0


async def test_insert_record_expired_by_now_can_be_inserted_again(store: ResourceStore) -> None:
    await store.insert_record(KIND, "k", doc(1), expires=past())
    await store.insert_record(KIND, "k", doc(2))
    assert await store.get_record(KIND, "k") == doc(2)


# -- expiry --------------------------------------------------------------------------------------


async def test_expired_record_is_invisible_to_every_method(store: ResourceStore) -> None:
    await store.put_record(KIND, "gone", doc(1), expires=past())
    await store.put_record(KIND, "live", doc(2), expires=later())
    assert await store.get_record(KIND, "gone") is None
    assert await store.list_records(KIND) == [("live", doc(2))]
    assert await store.take_record(KIND, "gone") is None
    assert await store.delete_record(KIND, "gone") is False
    assert await store.get_record(KIND, "live") == doc(2)


# -- take ----------------------------------------------------------------------------------------


async def test_take_record_returns_doc_once_then_none(store: ResourceStore) -> None:
    await store.insert_record(KIND, "k", doc(1), expires=later())
    assert await store.take_record(KIND, "k") == doc(1)
    assert await store.take_record(KIND, "k") is None
    assert await store.get_record(KIND, "k") is None


async def test_take_record_missing_returns_none(store: ResourceStore) -> None:
    assert await store.take_record(KIND, "nope") is None


async def race_takes(store: ResourceStore) -> None:
    """RACERS concurrent takes of one record: exactly one gets the document."""
    await store.insert_record(KIND, "k", doc(7), expires=later())
    results = await asyncio.gather(*(store.take_record(KIND, "k") for _ in range(RACERS)))
    assert [r for r in results if r is not None] == [doc(7)]
    assert await store.get_record(KIND, "k") is None


async def test_take_record_concurrent_takes_exactly_one_gets_doc(store: ResourceStore) -> None:
    await race_takes(store)


async def test_take_record_interleaved_takes_exactly_one_gets_doc(
    interleaved_store: ResourceStore,
) -> None:
    await race_takes(interleaved_store)


# -- concurrent inserts --------------------------------------------------------------------------


async def race_inserts(store: ResourceStore) -> None:
    """RACERS concurrent inserts of one key over an expired record: exactly one succeeds,
    the others conflict, and the winner's document is the one stored."""
    await store.put_record(KIND, "jti", doc(-1), expires=past())
    results = await asyncio.gather(
        *(store.insert_record(KIND, "jti", doc(i), expires=later()) for i in range(RACERS)),
        return_exceptions=True,
    )
    assert all(r is None or isinstance(r, StoreConflict) for r in results), results
    winners = [i for i, r in enumerate(results) if r is None]
    assert len(winners) == 1
    assert await store.get_record(KIND, "jti") == doc(winners[0])


async def test_insert_record_concurrent_inserts_exactly_one_succeeds(
    store: ResourceStore,
) -> None:
    await race_inserts(store)


async def test_insert_record_interleaved_inserts_exactly_one_succeeds(
    interleaved_store: ResourceStore,
) -> None:
    await race_inserts(interleaved_store)


# -- delete, list, purge -------------------------------------------------------------------------


async def test_delete_record_live_returns_true_then_false(store: ResourceStore) -> None:
    await store.put_record(KIND, "k", doc(1))
    assert await store.delete_record(KIND, "k") is True
    assert await store.get_record(KIND, "k") is None
    assert await store.delete_record(KIND, "k") is False
    assert await store.delete_record(KIND, "never") is False


async def test_list_records_several_kinds_returns_that_kind_ordered_by_key(
    store: ResourceStore,
) -> None:
    keys = ["b", "a2", "é", "B", "a", "z", "a10"]
    for i, key in enumerate(keys):
        await store.put_record(KIND, key, doc(i))
    await store.put_record("client", "a", doc(99))
    await store.put_record("codes", "a", doc(98))
    listed = await store.list_records(KIND)
    assert [k for k, _ in listed] == sorted(keys)
    assert dict(listed) == {key: doc(i) for i, key in enumerate(keys)}
    assert await store.list_records("client") == [("a", doc(99))]
    assert await store.list_records("nothing") == []


async def test_purge_records_returns_count_and_keeps_live_ones(store: ResourceStore) -> None:
    now = now_us()
    await store.put_record(KIND, "old1", doc(1), expires=now - 5)
    await store.put_record(KIND, "old2", doc(2), expires=now - 1)
    await store.put_record("client", "old3", doc(3), expires=now - HOUR)
    await store.put_record(KIND, "edge", doc(4), expires=now)
    await store.put_record(KIND, "later", doc(5), expires=now + HOUR)
    await store.put_record(KIND, "never", doc(6))
    assert await store.purge_records(now) == 3
    assert await store.purge_records(now) == 0
    # "edge" survived the purge at `now` but has expired by the time of this list
    assert await store.list_records(KIND) == [("later", doc(5)), ("never", doc(6))]


# -- engine specifics ----------------------------------------------------------------------------


async def test_sqlite_start_on_file_without_records_table_creates_it(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    first = SQLiteStore(str(path))
    await first.start()
    await first.close()
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("DROP TABLE records")
    again = SQLiteStore(str(path))
    await again.start()
    try:
        await again.put_record(KIND, "k", doc(1))
        assert await again.get_record(KIND, "k") == doc(1)
    finally:
        await again.close()


async def test_mongo_record_kind_with_separator_raises_value_error() -> None:
    from mongomock_motor import AsyncMongoMockClient

    store = MongoStore(cast(Any, AsyncMongoMockClient()[f"fhir_test_{uuid.uuid4().hex}"]))
    await store.start()
    with pytest.raises(ValueError, match="U\\+001F"):
        await store.put_record("a\x1fb", "c", doc(1))
    await store.close()


# -- hit counters ---------------------------------------------------------------------------------


async def test_count_hit_counts_up_and_starts_again_once_expired(store: ResourceStore) -> None:
    assert [await store.count_hit("rate", "u1", later()) for _ in range(3)] == [1, 2, 3]
    assert await store.count_hit("rate", "u2", later()) == 1  # another key counts apart
    assert await store.count_hit("other", "u1", later()) == 1  # another kind counts apart
    await store.count_hit("rate", "old", past())  # made already expired
    assert await store.count_hit("rate", "old", later()) == 1  # so it starts again


async def test_count_hit_by_adds_that_many_and_starts_again_at_it(store: ResourceStore) -> None:
    assert await store.count_hit("rate", "slice", later(), by=5) == 5
    assert await store.count_hit("rate", "slice", later()) == 6
    assert await store.count_hit("rate", "slice", later(), by=10) == 16
    await store.count_hit("rate", "old-slice", past(), by=7)
    assert await store.count_hit("rate", "old-slice", later(), by=3) == 3  # expired: anew


async def test_count_hit_is_apart_from_records_and_purged_when_expired(
    store: ResourceStore,
) -> None:
    await store.put_record("rate", "u1", doc(1), expires=later())
    assert await store.count_hit("rate", "u1", later()) == 1
    assert await store.get_record("rate", "u1") == doc(1)
    assert await store.list_records("rate") == [("u1", doc(1))]  # counters are not listed
    await store.count_hit("rate", "gone", past())
    assert await store.purge_records(now_us()) == 1  # the expired counter
    assert await store.count_hit("rate", "u1", later()) == 2  # the live one stays


async def race_hits(store: ResourceStore) -> None:
    """RACERS concurrent first hits of one counter get 1..RACERS, each once."""
    results = await asyncio.gather(
        *(store.count_hit("rate", "racer", later()) for _ in range(RACERS))
    )
    assert sorted(results) == list(range(1, RACERS + 1))


async def test_count_hit_concurrent_hits_each_get_their_own_number(store: ResourceStore) -> None:
    await race_hits(store)


async def test_count_hit_interleaved_hits_each_get_their_own_number(
    interleaved_store: ResourceStore,
) -> None:
    await race_hits(interleaved_store)
