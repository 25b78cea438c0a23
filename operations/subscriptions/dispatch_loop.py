"""Running the Subscription dispatcher (`dispatcher.Dispatcher`) in a server process, in one
process at a time (`operations.leased`: the lease `dispatcher.LEASE`, taken over within
`dispatcher.LEASE_US` when its holder dies)."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from fhir_server.repository import Repository
from operations.leased import Holding, run_leased
from operations.subscriptions.dispatcher import LEASE, LEASE_US, Dispatcher, Restore
from operations.subscriptions.rest_hook import TIMEOUT_SECONDS
from resources.fhir_dates import now_us

__all__ = ["run_dispatcher"]


async def run_dispatcher(
    repository: Repository, restore: Restore, *, clock: Callable[[], int] = now_us
) -> None:
    """Run the dispatcher until cancelled: a round every `subscription_poll_seconds` while
    this process holds the lease; a round stops delivering as soon as a renewal fails."""
    poll = repository.settings.subscription_poll_seconds
    timeout = httpx.Timeout(TIMEOUT_SECONDS)
    async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client:
        dispatcher = Dispatcher(repository, restore, client, clock=clock)

        async def round_(holding: Holding) -> None:
            dispatcher.holding = holding
            await dispatcher.tick()

        await run_leased(
            repository, LEASE, LEASE_US, lambda: poll, round_, "Subscription dispatcher"
        )
