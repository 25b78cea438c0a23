"""One websocket connection of the `websocket` channel (R4 `subscription.html#2.46.7.2`;
Backport IG "Channels: Websockets").

Messages from the client (text frames):

* `bind {id}` (R4): the connection receives `ping {id}` for each event of Subscription `id`
  from now on; answered `bound {id}`, or `error {id}: {reason}` when the connection may not
  read that Subscription (`authorize`).
* `bind-with-token {token}` (Backport IG): a token from `$get-ws-binding-token` (record
  BINDING, until it expires) binds every Subscription it names; each gets a `handshake`
  notification Bundle, then an `event-notification` Bundle per event and `heartbeat`
  Bundles per its heartbeat period. An unknown or expired token is answered
  `error {token}: ...` in words.

Events come from the records the dispatcher writes for each notified event
(`dispatcher.EVENT`), read every `subscription_poll_seconds`, so a socket bound to any server
process is served, in event order, from the event after the one current at binding.
Instants are µs since the epoch, UTC.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from fhir_server.repository import Repository
from operations.subscriptions.dispatcher import EVENT, STATE, event_key
from operations.subscriptions.notifications import Item, plan_bundle
from operations.subscriptions.plan import Plan, read_plan
from resources.errors import FhirError
from resources.fhir_dates import US, now_us

__all__ = ["BINDING", "Socket", "WebsocketSession"]

BINDING = "ws-binding-token"
"""Record kind of a websocket binding token: `{subscriptions: [id, ...]}`, expiring."""


class Socket(Protocol):
    """What a session needs of a websocket (Starlette's WebSocket has these)."""

    async def receive_text(self) -> str:
        """The next text frame; raises when the connection closes."""

    async def send_text(self, data: str) -> None:
        """Send a text frame."""


@dataclass(slots=True)
class _Binding:
    sub_id: str
    plan: Plan | None  # None: R4 `bind` (pings)
    next_number: int
    last_sent: int = field(default_factory=now_us)


class WebsocketSession:
    """Serves one connection until it closes (module docstring).

    Args:
        repository: a job repository (reads the Subscription, its records and focuses).
        socket: the accepted websocket.
        authorize: whether this connection may bind a Subscription by id (`bind {id}`):
            the caller's token may read it, or authorization is off.
        base_url: the FHIR base for references in Bundles.
    """

    def __init__(
        self,
        repository: Repository,
        socket: Socket,
        authorize: Callable[[str], Awaitable[bool]],
        base_url: str,
    ) -> None:
        self.repository = repository
        self.socket = socket
        self.authorize = authorize
        self.base_url = base_url
        self.bindings: dict[str, _Binding] = {}
        self.poll = repository.settings.subscription_poll_seconds

    async def serve(self) -> None:
        """Read client messages and push events until the connection closes."""
        pusher = asyncio.create_task(self._push())
        try:
            while True:
                text = (await self.socket.receive_text()).strip()
                verb, _, arg = text.partition(" ")
                if verb == "bind":
                    await self._bind(arg.strip())
                elif verb == "bind-with-token":
                    await self._bind_with_token(arg.strip())
                else:
                    await self.socket.send_text(f"error {text[:64]}: unknown message")
        finally:
            pusher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pusher

    async def _bind(self, sub_id: str) -> None:
        if not sub_id or not await self.authorize(sub_id):
            await self.socket.send_text(f"error {sub_id}: not found or not allowed")
            return
        self.bindings[sub_id] = _Binding(sub_id, None, await self._next(sub_id))
        await self.socket.send_text(f"bound {sub_id}")

    async def _bind_with_token(self, token: str) -> None:
        doc = await self.repository.records.get_record(BINDING, token) if token else None
        if doc is None:
            await self.socket.send_text(f"error {token[:16]}: unknown or expired binding token")
            return
        for sub_id in doc.get("subscriptions") or []:
            sub = await self._subscription(sub_id)
            if sub is None:
                continue
            plan = read_plan(sub, self.repository)
            binding = _Binding(sub_id, plan, await self._next(sub_id))
            self.bindings[sub_id] = binding
            count = binding.next_number - 1
            bundle = plan_bundle(
                self.base_url, sub_id, plan, str(sub.get("status")), "handshake", [], count
            )
            await self.socket.send_text(orjson.dumps(bundle).decode())

    async def _subscription(self, sub_id: str) -> dict[str, Any] | None:
        stored = await self.repository.lookup.read("Subscription", sub_id)
        if stored is None or stored.content is None:
            return None
        sub: dict[str, Any] = orjson.loads(stored.content)
        try:
            read_plan(sub, self.repository)
        except FhirError:
            return None
        return sub

    async def _next(self, sub_id: str) -> int:
        state = await self.repository.records.get_record(STATE, sub_id) or {}
        return int(state.get("count", 0)) + 1

    async def _push(self) -> None:
        while True:
            for binding in list(self.bindings.values()):
                await self._push_one(binding)
            await asyncio.sleep(self.poll)

    async def _push_one(self, binding: _Binding) -> None:
        records = self.repository.records
        while (
            doc := await records.get_record(EVENT, event_key(binding.sub_id, binding.next_number))
        ) is not None:
            number = binding.next_number
            binding.next_number += 1
            binding.last_sent = now_us()
            if binding.plan is None:
                await self.socket.send_text(f"ping {binding.sub_id}")
                continue
            rtype, rid, version = doc["focus"]
            focus = await self.repository.lookup.vread(rtype, rid, int(version))
            if focus is None:
                continue
            item = Item(number, int(doc["at"]), focus, bool(doc.get("deleted")))
            bundle = plan_bundle(
                self.base_url,
                binding.sub_id,
                binding.plan,
                "active",
                "event-notification",
                [item],
                number,
            )
            await self.socket.send_text(orjson.dumps(bundle).decode())
        plan = binding.plan
        if (
            plan is not None
            and plan.heartbeat_s
            and now_us() - binding.last_sent >= plan.heartbeat_s * US
        ):
            binding.last_sent = now_us()
            count = binding.next_number - 1
            bundle = plan_bundle(
                self.base_url, binding.sub_id, plan, "active", "heartbeat", [], count
            )
            await self.socket.send_text(orjson.dumps(bundle).decode())
