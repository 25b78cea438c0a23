"""Sending one notification of a Subscription on its channel (`Plan.channel`): the glue
between the dispatcher and the channels.

* rest-hook, R4 criteria: one request per event (`rest_hook.send`);
* rest-hook, topic-based: the notification Bundle POSTed (`rest_hook.post_bundle`);
* email: one message (`email_channel.send_email`), body limited by the content level;
* websocket: nothing to send here: every process's websocket hub pushes the events the
  dispatcher recorded (`websocket_hub.py`), so a socket bound to any process is served.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import httpx
import orjson

from fhir_server.repository import Repository
from operations.subscriptions.criteria import allowed_hosts
from operations.subscriptions.email_channel import send_email
from operations.subscriptions.notifications import Item, plan_bundle
from operations.subscriptions.plan import Plan
from operations.subscriptions.rest_hook import post_bundle, send
from resources.fhir_dates import now_us

__all__ = ["Delivery"]


class Delivery:
    """Sends notifications for the dispatcher.

    Args:
        repository: the dispatcher's job repository (settings, base URL).
        client: the HTTP client rest-hooks use.
    """

    def __init__(self, repository: Repository, client: httpx.AsyncClient) -> None:
        self.repository = repository
        self.client = client
        self.settings = repository.settings
        self.allowed = allowed_hosts(self.settings.subscription_allowed_hosts)

    def bundle(
        self, sub_id: str, plan: Plan, status: str, kind: str, items: Sequence[Item], count: int
    ) -> dict[str, Any]:
        """The topic-based notification Bundle of `items` (`notifications.plan_bundle`)."""
        return plan_bundle(self.repository.base_url, sub_id, plan, status, kind, items, count)

    async def send(
        self, sub_id: str, plan: Plan, status: str, kind: str, items: Sequence[Item], count: int
    ) -> None:
        """Send one notification (`kind`: `handshake`, `heartbeat`, `event-notification`).

        Raises:
            DeliveryFailed: it was not accepted (the dispatcher retries or gives up).
        """
        channel = plan.channel
        if channel.type == "websocket":
            return
        if channel.type == "email":
            await self._email(sub_id, plan, status, kind, items, count)
        elif plan.topic is None:
            for item in items:
                version = item.focus
                if item.deleted:
                    version = dataclasses.replace(version, deleted=True, content=None)
                await send(self.client, channel, version, self.allowed)
        else:
            bundle = self.bundle(sub_id, plan, status, kind, items, count)
            await post_bundle(self.client, channel, bundle, self.allowed, plan.timeout_s)

    async def _email(
        self, sub_id: str, plan: Plan, status: str, kind: str, items: Sequence[Item], count: int
    ) -> None:
        what = (
            plan.topic.title if plan.topic is not None else f"changes matching {plan.resource_type}"
        )
        lines = [f"Subscription/{sub_id} ({what}): {kind}."]
        attachment: dict[str, Any] | None = None
        for item in items:
            line = f"Event {item.number}"
            if plan.content != "empty":
                action = "deleted" if item.deleted else "changed"
                line += f": {item.focus.resource_type}/{item.focus.id} {action}"
            lines.append(line + ".")
        if plan.topic is not None:
            attachment = self.bundle(sub_id, plan, status, kind, items, count)
        elif plan.content == "full-resource" and items and items[-1].focus.content:
            attachment = orjson.loads(items[-1].focus.content)
        numbers = "-".join(str(i.number) for i in items) or f"{kind}.{now_us()}"
        await send_email(
            smtp_url=self.settings.smtp_url,
            sender=self.settings.mail_from,
            channel=plan.channel,
            subject=f"FHIR notification: {what} ({kind})",
            lines=lines,
            attachment=attachment,
            message_id=f"{sub_id}.{numbers}@fhir-server",
            timeout_s=plan.timeout_s,
        )
