"""Background work that must run in one server process at a time (ARCHITECTURE.md "Events
and background work"): a lease in the database, taken or renewed every RENEW_S seconds by a
side task, and rounds of work while it is held. Another process takes the lease over within
its `ttl_us` of the holder dying; a holder gives it up when it stops.

Used by the Subscription dispatcher and the messaging job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fhir_server.repository import Repository

__all__ = ["RENEW_S", "Holding", "run_leased"]

RENEW_S = 1.0
"""How often the holder renews its lease (s)."""

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Holding:
    """Whether this process holds the lease now: a round checks it between steps and stops
    when it turns false (a renewal failed, another process may hold it)."""

    held: bool = False


async def run_leased(
    repository: Repository,
    key: str,
    ttl_us: int,
    interval_s: Callable[[], float],
    work: Callable[[Holding], Awaitable[object]],
    name: str,
) -> None:
    """Run `work` every `interval_s()` seconds while this process holds the lease `key`
    (`ResourceStore.lease`, `ttl_us` µs, renewed every RENEW_S), until cancelled. Errors of
    a round are logged (as `name`), never raised; the lease is given up on the way out."""
    owner = uuid.uuid4().hex
    holding = Holding()
    renewer = asyncio.create_task(_hold(repository, key, owner, ttl_us, holding, name))
    try:
        while True:
            try:
                if holding.held:
                    await work(holding)
            except Exception:
                log.exception("%s: round failed", name)
            await asyncio.sleep(interval_s())
    finally:
        renewer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewer
        with contextlib.suppress(Exception):
            await repository.lookup.end_lease(key, owner)


async def _hold(
    repository: Repository, key: str, owner: str, ttl_us: int, holding: Holding, name: str
) -> None:
    while True:
        was = holding.held
        try:
            holding.held = await repository.lookup.lease(key, owner, ttl_us)
        except Exception:
            holding.held = False
            log.exception("%s: could not renew its lease", name)
        if holding.held != was:
            log.info("%s: %s the lease %s", name, _TOLD[holding.held], key)
        await asyncio.sleep(RENEW_S)


_TOLD = {True: "took", False: "lost"}
