"""Running the Subscription dispatcher (`dispatcher.Dispatcher`) in a server process, in one
process at a time (`operations.leased`: the lease `dispatcher.LEASE`, taken over within
`dispatcher.LEASE_US` when its holder dies), and how far behind it is (`outbox`)."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from fhir_server.repository import Repository
from fhir_server.search.query import StoreQuery, TokenCondition, TokenValue
from operations.leased import Holding, run_leased
from operations.subscriptions.dispatcher import LEASE, LEASE_US, STATE, Dispatcher, Restore
from operations.subscriptions.rest_hook import TIMEOUT_SECONDS
from resources.fhir_dates import now_us

__all__ = ["outbox", "run_dispatcher"]


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


async def outbox(repository: Repository, now: int | None = None) -> tuple[int, float]:
    """`(events, lag seconds)` the dispatcher still has to look at: the newest event number
    minus the cursor of the furthest-behind live (`requested`/`active`) Subscription, and
    the age (s, from `now` µs UTC) of the first event past that cursor; `(0, 0.0)` with no
    live Subscription. For `/metrics`."""
    lookup = repository.lookup
    status = TokenCondition("status", (TokenValue("*", "requested"), TokenValue("*", "active")))
    live = await lookup.search(StoreQuery("Subscription", (status,), count=1000))
    if not live.resources:
        return 0, 0.0
    await lookup.seal_events()  # MongoDB numbers the newest events first (as a tick does)
    latest = await lookup.latest_event()
    cursors = []
    for stored in live.resources:
        state = await repository.records.get_record(STATE, stored.id) or {}
        cursors.append(int(state.get("cursor", latest)))
    slowest = min(cursors)
    waiting = await lookup.events_after(slowest, 1)
    if not waiting:
        return 0, 0.0
    age = ((now if now is not None else now_us()) - waiting[0].version.last_updated) / 1e6
    return max(0, latest - slowest), max(0.0, age)
