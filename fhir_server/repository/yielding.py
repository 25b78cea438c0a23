"""A store for background jobs that lets requests go first (issue "Run it in production":
booking latency).

SQLite answers on the calling thread (`fhir_server/storage/sqlite.py`), so an `await` on
the store never suspends: a background round of hundreds of store calls (the reminder
planner reading a thousand events after a burst of bookings) would hold the event loop for
its whole length, and every request of that process would wait behind it (measured: $book
p99 of seconds under load). Job repositories (`RepositoryFactory.for_job`) therefore reach
the store through `Yielding`, which lets the event loop run every other ready task before
each call (`asyncio.sleep(0)`): a round advances one store call per loop turn and a request
waits at most for one call of it, not for the round.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any, cast

from fhir_server.storage.base import ResourceStore

__all__ = ["yielding"]


class _Yielding:
    def __init__(self, store: ResourceStore) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if not inspect.iscoroutinefunction(attr):
            return attr  # lock() (a context manager), iter_all (a generator), properties

        async def call(*args: Any, **kwargs: Any) -> Any:
            await asyncio.sleep(0)
            return await cast(Callable[..., Any], attr)(*args, **kwargs)

        return call


def yielding(store: ResourceStore) -> ResourceStore:
    """`store`, each of whose coroutine methods first yields to the event loop once."""
    return cast(ResourceStore, _Yielding(store))
