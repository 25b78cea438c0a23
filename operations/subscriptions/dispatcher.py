"""The Subscription dispatcher: delivers every change from the event log, in order, once per
Subscription (at least once across a crash), in one process at a time (ARCHITECTURE.md
"Events and background work").

Each round (`Dispatcher.tick`, every `subscription_poll_seconds` while this process holds the
lease LEASE in the database, renewed every second by `dispatch_loop.run_dispatcher`; another
process takes it over within LEASE_US of this one dying) seals the log, then works every
`requested` or `active` Subscription on its own:

* `requested`: a topic-based rest-hook first gets a `handshake` (accepted: `active`; refused:
  `error`, Backport IG "Channels"); every other becomes `active` at once;
* from its cursor (record STATE: the last event number it has seen, kept in the database, so a
  restart resumes where it stopped), each event is turned into focus versions (R4 criteria:
  the version itself, or for a deletion the version deleted; a topic: `Topic.focuses`) that
  match the criteria or filters and that the creator's credentials may read *now*
  (`rules.ACCESS`, restored by the composition root; revoked: the Subscription turns
  `error`). Each such focus gets the next `eventNumber`, is recorded (record EVENT, replayed by
  `$events` and pushed by the websocket hubs) and is sent on the channel; the cursor and the
  count move only once it is sent, so events arrive in order and a crash between a delivery
  and its state write repeats that delivery with the same event numbers;
* a failed delivery is retried with exponential backoff and jitter (from
  `subscription_backoff_seconds`, doubling up to BACKOFF_MAX_S) while later events wait;
  after `subscription_retry_hours` of failures (or at once for an endpoint now refused) the
  Subscription turns `error` with the reason in `Subscription.error`;
* a topic-based Subscription with a heartbeat period gets a `heartbeat` when nothing was sent
  for that long.

Instants are µs since the epoch, UTC.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import orjson

from fhir_server.access import AccessPolicy
from fhir_server.model import Event, StoredResource
from fhir_server.repository import Repository
from fhir_server.search.match import matches
from fhir_server.search.query import StoreQuery, TokenCondition, TokenValue
from operations.leased import Holding
from operations.subscriptions.delivery import Delivery
from operations.subscriptions.notifications import Item
from operations.subscriptions.plan import Plan, read_plan
from operations.subscriptions.rest_hook import DeliveryFailed
from operations.subscriptions.rules import ACCESS, STATE
from operations.subscriptions.topics import judged_version
from resources.errors import FhirError
from resources.fhir_dates import US, now_us
from resources.indexing import extract_index

__all__ = [
    "EVENT",
    "LEASE",
    "STATE",
    "Dispatcher",
    "Restore",
    "event_key",
    "events_since_start",
]

LEASE = "subscriptions:dispatcher"
LEASE_US = 5_000_000
"""How long the dispatcher's lease lasts unless renewed (µs): another process takes over
within this long after the holder dies."""
ROUND_US = 5_000_000
"""How long one round keeps delivering to one Subscription before the lease is renewed."""
EVENT = "subscription-event"
"""Record kind of one notified event, keyed `event_key(id, number)`: `{e, at, focus: [type,
id, version], deleted}` (its event log number, µs, the focus version)."""
GRACE_US = 30_000_000
"""How long after an event a Subscription may still lack its credentials record (put just
after its write commits) before it counts as unauthorized."""
PROBE_MAX = 1000
"""How many recorded, undelivered events `events_since_start` counts at most."""
BATCH = 200
"""Events read per Subscription per round."""
BACKOFF_MAX_S = 300.0
"""The longest retry delay (s); the first is `subscription_backoff_seconds`."""

Restore = Callable[[dict[str, Any]], Awaitable[AccessPolicy | None]]
"""Turns a Subscription creator's `AccessPolicy.credentials()` back into a policy, or None once
the grant no longer holds (revoked)."""

log = logging.getLogger(__name__)


def event_key(sub_id: str, number: int) -> str:
    """The EVENT record key of a Subscription's event `number` (sorts by number)."""
    return f"{sub_id}/{number:012d}"


async def events_since_start(repository: Repository, sub_id: str) -> int:
    """How many events the Subscription has had since it started (Backport IG
    `events-since-subscription-start`: generated, whether or not delivered yet): the events
    delivered (STATE `count`) plus those recorded and still being delivered (EVENT records
    past it; at most PROBE_MAX looked at)."""
    state = await repository.records.get_record(STATE, sub_id) or {}
    count = int(state.get("count", 0))
    for _ in range(PROBE_MAX):
        if await repository.records.get_record(EVENT, event_key(sub_id, count + 1)) is None:
            break
        count += 1
    return count


class Dispatcher:
    """One process's dispatcher (module docstring).

    Args:
        repository: a job repository (`RepositoryFactory.for_job`).
        restore: the credentials restorer.
        client: the HTTP client deliveries use.
        clock: the current time in µs UTC.

    Attributes:
        holding: whether this process holds LEASE (`dispatch_loop.run_dispatcher` keeps it
            current; a round stops delivering when it turns false). Held by default, for a
            dispatcher driven by hand.
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
        self.delivery = Delivery(repository, client)
        self.clock = clock
        settings = repository.settings
        self.backoff_base_s = settings.subscription_backoff_seconds
        self.retry_us = int(settings.subscription_retry_hours * 3600 * US)
        self.keep_us = int(settings.subscription_event_days * 86400 * US)
        self.holding = Holding(held=True)

    async def tick(self) -> int:
        """One round: seal the log, work every live Subscription; return events notified."""
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
        try:
            plan = read_plan(sub, self.repository)
        except FhirError as exc:  # e.g. a topic or host no longer offered
            await self._set_status(stored.id, "error", f"Cannot deliver: {exc}")
            return 0
        if sub.get("status") == "requested" and not await self._activate(stored.id, plan, state):
            return 0
        now = self.clock()
        if state.get("retry_at", 0) > now:
            return 0
        delivered = 0
        deadline = now + ROUND_US
        events = await self.repository.lookup.events_after(int(state["cursor"]), BATCH)
        for event in events:
            if self.clock() > deadline or not self.holding.held:
                break
            items = await self._items(stored.id, plan, event, int(state.get("count", 0)))
            if items is None:
                return delivered  # the Subscription was stopped
            if items and not await self._deliver(stored.id, plan, event, items, state):
                return delivered
            delivered += len(items)
            state["cursor"] = event.number
        if events:
            await records.put_record(STATE, stored.id, state)
        await self._heartbeat(stored.id, plan, state)
        return delivered

    async def _activate(self, sub_id: str, plan: Plan, state: dict[str, Any]) -> bool:
        """`requested` -> `active` (after an accepted handshake for a topic-based rest-hook),
        or `error`; True if it is active now."""
        if plan.topic is not None and plan.channel.type == "rest-hook":
            try:
                await self.delivery.send(sub_id, plan, "requested", "handshake", [], 0)
            except DeliveryFailed as exc:
                await self._set_status(sub_id, "error", f"The handshake failed: {exc}")
                return False
            state["last_sent"] = self.clock()
        await self._set_status(sub_id, "active", None)
        return True

    async def _items(self, sub_id: str, plan: Plan, event: Event, count: int) -> list[Item] | None:
        """The notified events one log event makes for this Subscription, numbered from
        `count + 1` (each focus that matches and that the creator may read now); None to stop
        this round: the creator's grant no longer holds (the Subscription is turned `error`),
        or its credentials are not recorded yet (GRACE_US)."""
        repo = self.repository
        if plan.topic is not None:
            focuses = await plan.topic.focuses(repo, event.version)
        elif event.version.resource_type == plan.resource_type:
            judged = await judged_version(repo, event.version)
            focuses = [judged] if judged is not None else []
        else:
            return []
        wanted = [f for f in focuses if f.content is not None and self._matches(plan, f)]
        if not wanted:
            return []
        credentials = await repo.records.get_record(ACCESS, sub_id)
        if credentials is None and self.clock() - event.version.last_updated < GRACE_US:
            return None  # its credentials are put just after it commits: next round
        policy = await self.restore(credentials) if credentials else None
        if policy is None:
            await self._set_status(
                sub_id,
                "error",
                "The authorization this Subscription was created with no longer holds "
                "(revoked or lapsed): notifications stopped",
            )
            return None
        shown = await repo.acting_for(policy).admit(wanted)
        deleted = event.version.deleted and plan.resource_type == event.version.resource_type
        return [
            Item(count + i + 1, event.version.last_updated, focus, deleted=deleted)
            for i, focus in enumerate(shown)
        ]

    def _matches(self, plan: Plan, focus: StoredResource) -> bool:
        assert focus.content is not None
        ctx = self.repository
        index = extract_index(orjson.loads(focus.content), ctx.context.default_tz, ctx.bases)
        return bool(matches(index, plan.conditions))

    async def _deliver(
        self, sub_id: str, plan: Plan, event: Event, items: list[Item], state: dict[str, Any]
    ) -> bool:
        """Record and send the notified events of one log event; on success move the state
        past it at once; on failure plan the retry or turn the Subscription `error`. True if
        sent."""
        records = self.repository.records
        expires = self.clock() + self.keep_us
        for item in items:
            focus = [item.focus.resource_type, item.focus.id, item.focus.version_id]
            doc = {"e": event.number, "at": item.at, "focus": focus, "deleted": item.deleted}
            await records.put_record(EVENT, event_key(sub_id, item.number), doc, expires)
        count = items[-1].number
        try:
            await self.delivery.send(sub_id, plan, "active", "event-notification", items, count)
        except DeliveryFailed as exc:
            await self._failed(sub_id, exc, state)
            return False
        state.update(cursor=event.number, count=count, last_sent=self.clock())
        for key in ("attempts", "failing_since", "retry_at"):
            state.pop(key, None)
        await records.put_record(STATE, sub_id, state)
        return True

    async def _failed(self, sub_id: str, exc: DeliveryFailed, state: dict[str, Any]) -> None:
        now = self.clock()
        attempts = int(state.get("attempts", 0)) + 1
        since = int(state.get("failing_since") or now)
        if exc.permanent or now - since >= self.retry_us:
            await self._set_status(sub_id, "error", f"Delivery failed: {exc}")
        delay = min(self.backoff_base_s * 2 ** (attempts - 1), BACKOFF_MAX_S)
        delay *= 0.5 + random.random() / 2  # noqa: S311 (jitter, not security)
        state.update(attempts=attempts, failing_since=since, retry_at=now + int(delay * US))
        await self.repository.records.put_record(STATE, sub_id, state)
        log.info("Subscription/%s: delivery attempt %d failed (%s)", sub_id, attempts, exc)

    async def _heartbeat(self, sub_id: str, plan: Plan, state: dict[str, Any]) -> None:
        """Send a `heartbeat` when nothing was sent for the heartbeat period (not on
        websockets: their hubs send their own)."""
        if plan.heartbeat_s is None or plan.channel.type == "websocket":
            return
        now = self.clock()
        if now - int(state.get("last_sent") or 0) < plan.heartbeat_s * US:
            return
        state["last_sent"] = now
        await self.repository.records.put_record(STATE, sub_id, state)
        count = int(state.get("count", 0))
        with contextlib.suppress(DeliveryFailed):
            await self.delivery.send(sub_id, plan, "active", "heartbeat", [], count)

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
