"""MongoDB's transactional path: when `MongoStore` uses it, and that it runs its steps in the
session (`mongo_apply.supports_transactions`, `apply_in_transaction`).

The contract suites also run whole on the `mongomock-transactions` engine
(`tests/storage/transactions.py`: mongomock playing a replica set); isolation, write
conflicts and retries need a real replica set (FHIR_SERVER_TEST_MONGODB_URL).
"""

from __future__ import annotations

import uuid
from typing import Any, cast

import pytest
from mongomock_motor import AsyncMongoMockClient

from fhir_server.storage.base import ClaimSet, WriteOp
from fhir_server.storage.mongo import MongoStore
from fhir_server.storage.mongo_apply import supports_transactions
from resources.errors import ClaimConflict, StoreConflict
from resources.fhir_dates import now_us
from tests.storage.contract import DAY, index, snapshot, version
from tests.storage.test_claims_contract import SCOPE, book, held
from tests.storage.transactions import PlayedReplicaSet


class Hello:
    """A database whose `hello` answers `reply`, or raises it if it is an exception."""

    def __init__(self, reply: dict[str, Any] | Exception) -> None:
        self._reply = reply

    async def command(self, name: str) -> dict[str, Any]:
        assert name == "hello"
        if isinstance(self._reply, Exception):
            raise self._reply
        return self._reply


SESSIONS = {"logicalSessionTimeoutMinutes": 30}


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ({"setName": "rs0", "maxWireVersion": 21, **SESSIONS}, True),
        ({"msg": "isdbgrid", "maxWireVersion": 21, **SESSIONS}, True),
        ({"setName": "rs0", "maxWireVersion": 7, **SESSIONS}, True),
        ({"msg": "isdbgrid", "maxWireVersion": 7, **SESSIONS}, False),
        ({"setName": "rs0", "maxWireVersion": 6, **SESSIONS}, False),
        ({"setName": "rs0", "maxWireVersion": 21}, False),
        ({"isWritablePrimary": True, "maxWireVersion": 21, **SESSIONS}, False),
        (NotImplementedError("mongomock has no hello"), False),
        (ConnectionError("unreachable"), False),
    ],
)
async def test_supports_transactions_from_hello(
    reply: dict[str, Any] | Exception, expected: bool
) -> None:
    assert await supports_transactions(cast(Any, Hello(reply))) is expected


async def test_apply_on_replica_set_runs_in_one_transaction_all_or_nothing() -> None:
    """Each apply is one transaction; a failure found only while writing (version 1 of `a`
    exists already, after `b` and its claims were written) aborts it and leaves nothing."""
    played = PlayedReplicaSet(AsyncMongoMockClient()[f"fhir_test_{uuid.uuid4().hex}"])
    session = played.client.session
    store = MongoStore(cast(Any, played))
    await store.start()
    await store.apply([book("a", [1, 2]), book("r", [9])])
    assert (session.transactions, session.aborted) == (1, 0)
    before = await snapshot(store, "Appointment")
    again = WriteOp(version("Appointment", "a", 1), None, index(), ClaimSet("Appointment/a", ()))
    with pytest.raises(StoreConflict) as caught:
        await store.apply([book("b", [5, 6]), again])
    assert caught.value.key == "Appointment/a"
    assert (session.transactions, session.aborted) == (2, 1)
    assert await snapshot(store, "Appointment") == before
    assert await store.claims_in(SCOPE, 0, 100) == [
        *held("Appointment/a", [1, 2]),
        *held("Appointment/r", [9]),
    ]
    with pytest.raises(ClaimConflict):
        await store.apply([book("c", [8, 9])])
    assert await store.recover(now_us() + DAY) == 0
