"""A mongomock wrapper whose calls interleave like a real MongoDB's, for race tests.

mongomock-motor never suspends inside a call, so `asyncio.gather` runs mongomock calls one
after the other. Wrapped in `YieldingDatabase`, every database call first yields to the event
loop a (seeded) random number of times, so concurrent calls interleave between any two calls
as they do on a real server; a `Fault` can line calls up or make one fail.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any, Self, cast


class ChainedCursor:
    """A wrapper of a mongomock-motor cursor: `sort`, `skip` and `limit` chain on the wrapped
    cursor; subclasses decide what `to_list` does around it."""

    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor

    def sort(self, *args: Any, **kwargs: Any) -> Self:
        self._cursor = self._cursor.sort(*args, **kwargs)
        return self

    def skip(self, n: int) -> Self:
        self._cursor = self._cursor.skip(n)
        return self

    def limit(self, n: int) -> Self:
        self._cursor = self._cursor.limit(n)
        return self


class _YieldingCursor(ChainedCursor):
    """A mongomock-motor cursor whose `to_list` yields to the event loop, then awaits the
    fault (`find`), first."""

    def __init__(
        self,
        cursor: Any,
        pause: Callable[[], Awaitable[None]],
        fault: Callable[[], Awaitable[None]],
    ) -> None:
        super().__init__(cursor)
        self._pause = pause
        self._fault = fault

    async def to_list(self, *args: Any, **kwargs: Any) -> list[Any]:
        await self._pause()
        await self._fault()
        return cast(list[Any], await self._cursor.to_list(*args, **kwargs))


Fault = Callable[[str, str], Awaitable[None]]
"""Awaited with (collection, method) before each call: raises to make that call fail, or
waits to line concurrent calls up."""


async def _no_fault(collection: str, method: str) -> None:
    return None


class _YieldingCollection:
    """A mongomock-motor collection whose every call yields to the event loop first."""

    def __init__(
        self, name: str, collection: Any, pause: Callable[[], Awaitable[None]], fault: Fault
    ) -> None:
        self._name = name
        self._collection = collection
        self._pause = pause
        self._fault = fault

    def find(self, *args: Any, **kwargs: Any) -> _YieldingCursor:
        cursor = self._collection.find(*args, **kwargs)
        return _YieldingCursor(cursor, self._pause, lambda: self._fault(self._name, "find"))

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._collection, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            await self._pause()
            await self._fault(self._name, name)
            return await method(*args, **kwargs)

        return call


class YieldingDatabase:
    """A mongomock-motor database whose every call first yields to the event loop a seeded
    random number of times (0-3), then awaits `fault` (collection, method)."""

    def __init__(self, database: Any, seed: int, fault: Fault = _no_fault) -> None:
        self._database = database
        self._random = random.Random(seed)
        self._fault = fault

    async def _pause(self) -> None:
        for _ in range(self._random.randrange(4)):
            await asyncio.sleep(0)

    def __getitem__(self, name: str) -> _YieldingCollection:
        return _YieldingCollection(name, self._database[name], self._pause, self._fault)
