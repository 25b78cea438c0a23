"""A mongomock database that plays a replica set, so `MongoStore.apply` takes its transactional
path (`mongo_apply.apply_in_transaction`) in tests without a MongoDB server.

mongomock has no sessions (it refuses any `session` but None on writes). `PlayedReplicaSet`
answers `hello` as a replica set member and hands out a `PlayedSession` whose
`with_transaction` runs the callback once: it snapshots the collections an apply writes and
puts them back if the callback raises (all or nothing, as an aborted transaction; no
isolation, no retries). Every collection call checks what PyMongo would need of it: inside the
transaction it carries the session (the sequence counter excepted, which must stay outside),
and the session never runs two operations at once. The session is stripped before mongomock
sees the call. What this cannot show (isolation, write conflicts, retries on the
TransientTransactionError label) needs a real replica set: FHIR_SERVER_TEST_MONGODB_URL.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from tests.storage.interleaving import ChainedCursor

TRANSACTIONAL = ("resources", "history", "claims", "journal")
"""The collections a transaction rolls back (the counter is allocated outside it)."""

HELLO = {"setName": "rs0", "maxWireVersion": 21, "logicalSessionTimeoutMinutes": 30}


class PlayedSession:
    """One session of `PlayedClient`: `with_transaction` runs the callback all or nothing."""

    def __init__(self, database: Any) -> None:
        self._database = database
        self.in_transaction = False
        self.busy = False
        self.transactions = 0
        self.aborted = 0

    async def __aenter__(self) -> PlayedSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def with_transaction(self, callback: Callable[[Any], Awaitable[Any]]) -> Any:
        before = {n: await self._database[n].find({}).to_list() for n in TRANSACTIONAL}
        self.in_transaction = True
        self.transactions += 1
        try:
            return await callback(self)
        except BaseException:
            self.aborted += 1
            for name, docs in before.items():
                await self._database[name].delete_many({})
                if docs:
                    await self._database[name].insert_many(docs)
            raise
        finally:
            self.in_transaction = False


class PlayedClient:
    """The client of a `PlayedReplicaSet`: one session, reused."""

    def __init__(self, database: Any) -> None:
        self.session = PlayedSession(database)

    def start_session(self) -> PlayedSession:
        return self.session


class _Checked:
    """Runs one collection call after checking its session (see the module docstring)."""

    def __init__(self, name: str, session: PlayedSession) -> None:
        self._name = name
        self._session = session

    async def run(self, call: Callable[[], Awaitable[Any]], session: Any) -> Any:
        played = self._session
        if played.in_transaction:
            wanted = None if self._name == "counters" else played
            assert session is wanted, f"{self._name} called with session={session!r}"
        else:
            assert session is None, f"{self._name} called with a session outside a transaction"
        if session is None:
            return await call()
        assert not played.busy, f"{self._name}: two operations at once on one session"
        played.busy = True
        try:
            return await call()
        finally:
            played.busy = False


class _Cursor(ChainedCursor):
    def __init__(self, cursor: Any, checked: _Checked, session: Any) -> None:
        super().__init__(cursor)
        self._checked = checked
        self._session = session

    async def to_list(self, *args: Any, **kwargs: Any) -> Any:
        return await self._checked.run(lambda: self._cursor.to_list(*args, **kwargs), self._session)


class _Collection:
    def __init__(self, name: str, collection: Any, session: PlayedSession) -> None:
        self._collection = collection
        self._checked = _Checked(name, session)

    def find(self, *args: Any, session: Any = None, **kwargs: Any) -> _Cursor:
        return _Cursor(self._collection.find(*args, **kwargs), self._checked, session)

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._collection, name)

        async def call(*args: Any, session: Any = None, **kwargs: Any) -> Any:
            return await self._checked.run(lambda: method(*args, **kwargs), session)

        return call


class PlayedReplicaSet:
    """A mongomock database that answers `hello` as a replica set member (module docstring)."""

    def __init__(self, database: Any) -> None:
        self._database = database
        self.client = PlayedClient(database)

    async def command(self, name: str) -> dict[str, Any]:
        assert name == "hello"
        return dict(HELLO)

    def __getitem__(self, name: str) -> _Collection:
        return _Collection(name, self._database[name], self.client.session)
