"""Records on MongoDB: the `records` collection behind `base.RecordStore`.

One document per record::

    {_id: "{kind}\\x1f{key}", kind: str, key: str, doc: bytes (orjson of the JSON object),
     expires: µs UTC | null (null = never)}

The document is kept as JSON bytes, not as a sub-document, so any JSON object round-trips
exactly (keys with `.` or `$`, key order, int vs float). The unique `_id` is the guarantee:
of two concurrent inserts of one key, in any number of processes, exactly one succeeds; a
take is one `find_one_and_delete`. A record with `expires < now` counts as absent until
`purge_records`. Indexes (`RECORD_INDEXES`, created by `MongoStore.start`): (kind, key) for
`list_records`, (expires) for `purge_records`. Calls stay within the mongomock-motor surface
(`find().sort().to_list()`, `find_one`, `insert_one`, `replace_one`, `find_one_and_delete`,
`delete_one`, `delete_many`, `find_one_and_update`). Hit counters (`count_hit`) share the
collection under the kind HIT_KIND.
"""

from __future__ import annotations

from typing import Any, cast

import orjson
from pymongo import ASCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from fhir_server.storage.base import is_live
from fhir_server.storage.mongo_schema import Doc, IndexKeys
from resources.errors import StoreConflict

SEPARATOR = "\x1f"
"""Between kind and key in `_id` (kinds never contain it, so `_id`s never collide)."""

RECORD_INDEXES: list[IndexKeys] = [
    [("kind", ASCENDING), ("key", ASCENDING)],
    [("expires", ASCENDING)],
]


def record_id(kind: str, key: str) -> str:
    """The `_id` of the record `(kind, key)`.

    Raises:
        ValueError: `kind` contains SEPARATOR (two records could then share an `_id`).
    """
    if SEPARATOR in kind:
        raise ValueError(f"A record kind may not contain U+001F: {kind!r}")
    return f"{kind}{SEPARATOR}{key}"


def _live(now: int) -> Doc:
    """The filter of records live at `now` (µs UTC): no expiry, or not yet expired."""
    return {"$or": [{"expires": None}, {"expires": {"$gte": now}}]}


def _record(kind: str, key: str, doc: dict[str, Any], expires: int | None) -> Doc:
    return {
        "_id": record_id(kind, key),
        "kind": kind,
        "key": key,
        "doc": orjson.dumps(doc),
        "expires": expires,
    }


def _doc(blob: bytes) -> dict[str, Any]:
    return cast(dict[str, Any], orjson.loads(blob))


async def get_record(
    records: AsyncCollection[Doc], kind: str, key: str, now: int
) -> dict[str, Any] | None:
    """The document of the record `(kind, key)` live at `now` (µs UTC), or None."""
    found = await records.find_one({"_id": record_id(kind, key)})
    return _doc(found["doc"]) if found is not None and is_live(found["expires"], now) else None


async def put_record(
    records: AsyncCollection[Doc], kind: str, key: str, doc: dict[str, Any], expires: int | None
) -> None:
    """Create or replace the record `(kind, key)` (one upserting `replace_one`)."""
    new = _record(kind, key, doc, expires)
    await records.replace_one({"_id": new["_id"]}, new, upsert=True)


async def insert_record(
    records: AsyncCollection[Doc],
    kind: str,
    key: str,
    doc: dict[str, Any],
    expires: int | None,
    now: int,
) -> None:
    """Create the record unless one live at `now` (µs UTC) exists: delete an expired one of
    that `_id`, then `insert_one`, which the unique `_id` lets through once.

    Raises:
        StoreConflict: a live record exists (`key` = `{kind}/{key}`); nothing was written.
    """
    new = _record(kind, key, doc, expires)
    await records.delete_one({"_id": new["_id"], "expires": {"$lt": now}})
    try:
        await records.insert_one(new)
    except DuplicateKeyError as exc:
        raise StoreConflict(f"The record {kind}/{key} exists already", key=f"{kind}/{key}") from exc


async def take_record(
    records: AsyncCollection[Doc], kind: str, key: str, now: int
) -> dict[str, Any] | None:
    """Delete the record live at `now` (µs UTC) and return its document, in one
    `find_one_and_delete`; None if there was none (an expired one stays)."""
    flt = {"_id": record_id(kind, key), **_live(now)}
    found = await records.find_one_and_delete(flt, projection={"doc": True})
    return _doc(found["doc"]) if found is not None else None


async def delete_record(records: AsyncCollection[Doc], kind: str, key: str, now: int) -> bool:
    """Delete the record `(kind, key)`, expired or not; True if it was live at `now` (µs)."""
    found = await records.find_one_and_delete(
        {"_id": record_id(kind, key)}, projection={"expires": True}
    )
    return found is not None and is_live(found["expires"], now)


async def list_records(
    records: AsyncCollection[Doc], kind: str, now: int
) -> list[tuple[str, dict[str, Any]]]:
    """Every record of `kind` live at `now` (µs UTC) as `(key, doc)`, ordered by key."""
    found = (
        await records.find({"kind": kind, **_live(now)}, {"key": True, "doc": True})
        .sort([("key", ASCENDING)])
        .to_list()
    )
    return [(str(d["key"]), _doc(d["doc"])) for d in found]


async def purge_records(records: AsyncCollection[Doc], now: int) -> int:
    """Delete every record and hit counter with `expires < now` (µs UTC; null never
    matches); how many."""
    return (await records.delete_many({"expires": {"$lt": now}})).deleted_count


HIT_KIND = "\x1dhit"
"""The `kind` field of hit counters (`count_hit`), which no record kind can equal: they live
in the records collection, so `purge_records` removes them, yet `list_records` never lists
them."""


async def count_hit(
    records: AsyncCollection[Doc], kind: str, key: str, expires: int, now: int, by: int = 1
) -> int:
    """`RecordStore.count_hit`: drop the counter if it expired, then one upserting
    `find_one_and_update` with `$inc` (atomic on the document). Two first hits at once both
    upsert; the unique `_id` lets one insert and the other, refused, increments it."""
    _id = f"{HIT_KIND}{SEPARATOR}{record_id(kind, key)}"
    await records.delete_one({"_id": _id, "expires": {"$lt": now}})
    update = {
        "$inc": {"n": by},
        "$setOnInsert": {"kind": HIT_KIND, "key": record_id(kind, key), "expires": expires},
    }
    for _ in range(3):
        try:
            found = await records.find_one_and_update(
                {"_id": _id}, update, upsert=True, return_document=ReturnDocument.AFTER
            )
        except DuplicateKeyError:
            continue
        if found is not None:
            return int(found["n"])
    raise StoreConflict(f"The hit counter {kind}/{key} could not be counted", key=_id)
