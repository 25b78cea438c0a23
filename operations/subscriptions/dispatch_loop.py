"""Running the Subscription dispatcher (`dispatcher.Dispatcher`) in a server process: a
side task takes or renews the database lease `dispatcher.LEASE` every RENEW_S seconds, and
rounds run while it is held (ARCHITECTURE.md "Events and background work": one process at a
time, taken over within `dispatcher.LEASE_US` when its holder dies)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable

import httpx

from fhir_server.repository import Repository
from operations.subscriptions.dispatcher import LEASE, LEASE_US, Dispatcher, Restore
from operations.subscriptions.rest_hook import TIMEOUT_SECONDS
from resources.fhir_dates import now_us

__all__ = ["RENEW_S", "run_dispatcher"]

RENEW_S = 1.0
"""How often the holder renews the lease (s), beside its rounds."""

log = logging.getLogger(__name__)


async def run_dispatcher(
    repository: Repository, restore: Restore, *, clock: Callable[[], int] = now_us
) -> None:
    """Run the dispatcher until cancelled. A side task takes or renews the lease LEASE every
    RENEW_S seconds; while it is held, a round runs every `subscription_poll_seconds`, and a
    round stops delivering as soon as a renewal fails (another process may hold it then).
    Errors are logged, never raised; the lease is given up on the way out."""
    owner = uuid.uuid4().hex
    poll = repository.settings.subscription_poll_seconds
    timeout = httpx.Timeout(TIMEOUT_SECONDS)
    async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client:
        dispatcher = Dispatcher(repository, restore, client, clock=clock)
        renewer = asyncio.create_task(_hold_lease(repository, owner, dispatcher))
        try:
            while True:
                try:
                    if dispatcher.holds_lease:
                        await dispatcher.tick()
                except Exception:
                    log.exception("Subscription dispatcher round failed")
                await asyncio.sleep(poll)
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
            with contextlib.suppress(Exception):
                await repository.lookup.end_lease(LEASE, owner)


async def _hold_lease(repository: Repository, owner: str, dispatcher: Dispatcher) -> None:
    """Take or renew the lease every RENEW_S seconds, telling the dispatcher whether it
    holds it (a failed renewal counts as not holding)."""
    while True:
        try:
            dispatcher.holds_lease = await repository.lookup.lease(LEASE, owner, LEASE_US)
        except Exception:
            dispatcher.holds_lease = False
            log.exception("Could not renew the Subscription dispatcher's lease")
        await asyncio.sleep(RENEW_S)
