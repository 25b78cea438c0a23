"""The Subscription dispatcher: delivers every change from the event log, in order, once per
Subscription (at least once across a crash), in one process at a time (ARCHITECTURE.md
"Events and background work").

Each round (`Dispatcher.tick`, every `subscription_poll_seconds` while this process holds the
lease LEASE in the database; another process takes over within LEASE_US of this one
stopping) seals the log, then works every `requested` or `active` Subscription on its own:

* a `requested` one becomes `active` (its criteria and channel were checked when written);
* from its cursor (record STATE: the last event number it has seen, kept in the database, so a
  restart resumes where it stopped), each event of its criteria's type whose version matches
  the criteria (a deletion judged by the version it deleted) and that its creator's
  credentials may read *now* (`rules.ACCESS`, restored by the composition root's restorer;
  revoked: the Subscription turns `error`) is delivered on its channel; the cursor moves past
  an event only once it is delivered or does not concern the Subscription, so events arrive in
  order and a crash between a delivery and its cursor write repeats that one delivery;
* a failed delivery is retried with exponential backoff and jitter (`subscription_backoff_
  seconds` doubling up to BACKOFF_MAX_S) while later events wait; after `subscription_retry_hours` of failures (or
  at once for an endpoint now refused) the Subscription turns `error` with the reason in
  `Subscription.error`.

Instants are µs since the epoch, UTC.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import orjson

from fhir_server.access import AccessPolicy
from fhir_server.model import Event, StoredResource
from fhir_server.repository import Repository
from fhir_server.search.match import matches
from fhir_server.search.query import StoreQuery, TokenCondition, TokenValue
from operations.subscriptions.criteria import Channel, parse_criteria, read_channel
from operations.subscriptions.rest_hook import TIMEOUT_SECONDS, DeliveryFailed, send
from operations.subscriptions.rules import ACCESS, allowed_hosts
from resources.errors import FhirError
from resources.fhir_dates import now_us
from resources.indexing import extract_index

__all__ = ["LEASE", "STATE", "Dispatcher", "Restore", "run_dispatcher"]

LEASE = "subscriptions:dispatcher"
LEASE_US = 30_000_000
"""How long the dispatcher's lease lasts unless renewed (µs); renewed every round."""
ROUND_US = 5_000_000
"""How long one round keeps delivering to one Subscription before the lease is renewed."""
STATE = "subscription-state"
"""Record kind of a Subscription's delivery state: `{cursor, count, attempts, retry_at,
failing_since}` (event number, deliveries made, consecutive failures, µs, µs)."""
BATCH = 200
"""Events read per Subscription per round."""
BACKOFF_MAX_S = 300.0
"""The longest retry delay (s); the first is `subscription_backoff_seconds`."""

Restore = Callable[[dict[str, Any]], Awaitable[AccessPolicy | None]]
"""Turns a Subscription creator's `AccessPolicy.credentials()` back into a policy, or None once
the grant no longer holds (revoked)."""

log = logging.getLogger(__name__)


class Dispatcher:
    """One process's dispatcher (module docstring).

    Args:
        repository: a job repository (`RepositoryFactory.for_job`).
        restore: the credentials restorer.
        client: the HTTP client deliveries use.
        clock: the current time in µs UTC.
    """

    def __init__(
        self,
        repository: Repository,
        restore: Restore,
        client: httpx.AsyncClient,
        *,
        clock: Callable[[], int] = now_us,
    ) -> None:
        self.repository = repository
        self.restore = restore
        self.client = client
        self.clock = clock
        self.backoff_base_s = repository.settings.subscription_backoff_seconds
        self.allowed = allowed_hosts(repository.settings.subscription_allowed_hosts)
        self.retry_us = int(repository.settings.subscription_retry_hours * 3600 * 1_000_000)

    async def tick(self) -> int:
        """One round: seal the log, work every live Subscription; return deliveries made."""
        lookup = self.repository.lookup
        await lookup.seal_events()
        status = TokenCondition("status", (TokenValue("*", "requested"), TokenValue("*", "active")))
        page = await lookup.search(StoreQuery("Subscription", (status,), count=1000))
        done = await asyncio.gather(*(self._work(s) for s in page.resources))
        return sum(done)

    async def _work(self, stored: StoredResource) -> int:
        try:
            return await self._pump(stored)
        except Exception:
            log.exception("Subscription/%s: delivery round failed", stored.id)
            return 0

    async def _pump(self, stored: StoredResource) -> int:
        assert stored.content is not None
        sub: dict[str, Any] = orjson.loads(stored.content)
        records = self.repository.records
        state = await records.get_record(STATE, stored.id) or {}
        if not state:
            state = {"cursor": await self.repository.lookup.latest_event(), "count": 0}
            await records.put_record(STATE, stored.id, state)
        if sub.get("status") == "requested":
            await self._set_status(stored.id, "active", None)
        if state.get("retry_at", 0) > self.clock():
            return 0
        criteria = parse_criteria(str(sub.get("criteria")), self.repository.context)
        channel = read_channel(sub, self.allowed)
        delivered = 0
        deadline = self.clock() + ROUND_US
        events = await self.repository.lookup.events_after(int(state["cursor"]), BATCH)
        for event in events:
            if self.clock() > deadline:
                break
            if event.version.resource_type == criteria.resource_type:
                shown = await self._concerns(stored.id, criteria.conditions, event)
                if shown is None:
                    return delivered  # the Subscription was stopped
                if shown and not await self._deliver(stored.id, channel, event, state):
                    break
                delivered += shown
            state["cursor"] = event.number
        if events:
            await records.put_record(STATE, stored.id, state)
        return delivered

    async def _concerns(self, sub_id: str, conditions: Any, event: Event) -> bool | None:
        """Whether the event is for this Subscription: its version (the deleted one for a
        deletion) matches the criteria and the creator may read it now; None when the
        creator's grant no longer holds (the Subscription is turned `error`)."""
        judged = await self._judged_version(event.version)
        if judged is None or judged.content is None:
            return False
        content = orjson.loads(judged.content)
        repo = self.repository
        if not matches(extract_index(content, repo.context.default_tz, repo.bases), conditions):
            return False
        credentials = await repo.records.get_record(ACCESS, sub_id) or {}
        policy = await self.restore(credentials) if credentials else None
        if policy is None:
            await self._set_status(
                sub_id,
                "error",
                "The authorization this Subscription was created with no "
                "longer holds (revoked or lapsed): notifications stopped",
            )
            return None
        return bool(await repo.acting_for(policy).admit([judged]))

    async def _judged_version(self, version: StoredResource) -> StoredResource | None:
        if not version.deleted:
            return version
        history = await self.repository.lookup.history(
            "instance", version.resource_type, version.id, count=50
        )
        earlier = [v for v in history if v.version_id < version.version_id and not v.deleted]
        return earlier[0] if earlier else None

    async def _deliver(
        self, sub_id: str, channel: Channel, event: Event, state: dict[str, Any]
    ) -> bool:
        """Send one event; on success record it (cursor, count) at once; on failure plan the
        retry or turn the Subscription `error`. True if delivered."""
        records = self.repository.records
        try:
            await send(self.client, channel, event.version, self.allowed)
        except DeliveryFailed as exc:
            now = self.clock()
            attempts = int(state.get("attempts", 0)) + 1
            since = int(state.get("failing_since") or now)
            if exc.permanent or now - since >= self.retry_us:
                await self._set_status(sub_id, "error", f"Delivery failed: {exc}")
            delay = min(self.backoff_base_s * 2 ** (attempts - 1), BACKOFF_MAX_S)
            delay *= 0.5 + random.random() / 2  # noqa: S311 (jitter, not security)
            state.update(attempts=attempts, failing_since=since, retry_at=now + int(delay * 1e6))
            await records.put_record(STATE, sub_id, state)
            log.info("Subscription/%s: delivery %d failed (%s)", sub_id, attempts, exc)
            return False
        state.update(cursor=event.number, count=int(state.get("count", 0)) + 1)
        for key in ("attempts", "failing_since", "retry_at"):
            state.pop(key, None)
        await records.put_record(STATE, sub_id, state)
        return True

    async def _set_status(self, sub_id: str, status: str, error: str | None) -> None:
        """Write the Subscription's `status` (and `error`) as the dispatcher job."""
        repo = self.repository
        current = await repo.lookup.read("Subscription", sub_id)
        if current is None or current.content is None:
            return
        content = orjson.loads(current.content)
        content["status"] = status
        content.pop("error", None)
        if error:
            content["error"] = error
        with contextlib.suppress(FhirError):
            await repo.update("Subscription", sub_id, content, if_match=f'W/"{current.version_id}"')


async def run_dispatcher(
    repository: Repository, restore: Restore, *, clock: Callable[[], int] = now_us
) -> None:
    """Run the dispatcher until cancelled: every `subscription_poll_seconds`, take or renew
    the lease LEASE and, while held, run one round. Errors are logged, never raised."""
    owner = uuid.uuid4().hex
    poll = repository.settings.subscription_poll_seconds
    timeout = httpx.Timeout(TIMEOUT_SECONDS)
    async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client:
        dispatcher = Dispatcher(repository, restore, client, clock=clock)
        try:
            while True:
                try:
                    if await repository.lookup.lease(LEASE, owner, LEASE_US):
                        await dispatcher.tick()
                except Exception:
                    log.exception("Subscription dispatcher round failed")
                await asyncio.sleep(poll)
        finally:
            with contextlib.suppress(Exception):
                await repository.lookup.end_lease(LEASE, owner)
