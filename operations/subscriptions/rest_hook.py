"""The `rest-hook` channel (R4 `subscription.html#2.46.7.1`; Backport IG "Channels").

R4 criteria-based (`send`): with `channel.payload` (application/fhir+json), the changed
resource is PUT to `{endpoint}/{type}/{id}` as FHIR JSON, and a deletion is a DELETE of that
URL; without a payload, a POST to `endpoint` with no body. `channel.header` values go with
every request as HTTP headers. A 2xx answer is a delivery; anything else, a timeout or a
refused connection is a failure the dispatcher retries (`DeliveryFailed`).

Topic-based (`post_bundle`): the notification Bundle is POSTed to `endpoint` with the
channel's payload MIME type as Content-Type and the same headers.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import orjson

from fhir_server.model import StoredResource
from operations.outbound import SendFailed
from operations.subscriptions.criteria import Channel, check_endpoint
from resources.errors import Invalid

__all__ = ["TIMEOUT_SECONDS", "DeliveryFailed", "post_bundle", "send"]

TIMEOUT_SECONDS = 10.0
"""Connect, read and write timeout of one notification."""


DeliveryFailed = SendFailed
"""A notification was not accepted (`outbound.SendFailed`: `permanent` when retrying cannot
help, e.g. the endpoint is refused by policy)."""


async def send(
    client: httpx.AsyncClient,
    channel: Channel,
    version: StoredResource,
    allowed_hosts: frozenset[str],
) -> None:
    """Deliver one change on a rest-hook channel (module docstring).

    Args:
        client: the dispatcher's HTTP client.
        channel: the Subscription's channel (`criteria.read_channel`).
        version: the version the event reports (a deletion marker for a delete).
        allowed_hosts: `subscription_allowed_hosts`; the endpoint is checked again before
            each delivery (its address may have changed since the Subscription was written).

    Raises:
        DeliveryFailed: not delivered (`permanent` when the endpoint is now refused).
    """
    await _check(channel, allowed_hosts)
    headers = dict(channel.headers)
    endpoint = channel.endpoint.rstrip("/")
    try:
        if not channel.payload:
            response = await client.post(channel.endpoint, headers=headers)
        elif version.deleted or version.content is None:
            url = f"{endpoint}/{version.resource_type}/{version.id}"
            response = await client.delete(url, headers=headers)
        else:
            url = f"{endpoint}/{version.resource_type}/{version.id}"
            headers["Content-Type"] = "application/fhir+json"
            response = await client.put(url, content=version.content, headers=headers)
    except httpx.HTTPError as exc:
        raise DeliveryFailed(f"{type(exc).__name__}: {exc}") from exc
    if not 200 <= response.status_code < 300:
        raise DeliveryFailed(f"the endpoint answered HTTP {response.status_code}")


async def post_bundle(
    client: httpx.AsyncClient,
    channel: Channel,
    bundle: dict[str, Any],
    allowed_hosts: frozenset[str],
    timeout_s: float,
) -> None:
    """POST a topic-based notification Bundle to the channel's endpoint.

    Raises:
        DeliveryFailed: not accepted with a 2xx (`permanent` when the endpoint is now
            refused by policy).
    """
    await _check(channel, allowed_hosts)
    headers = {**dict(channel.headers), "Content-Type": channel.payload or "application/fhir+json"}
    try:
        response = await client.post(
            channel.endpoint, content=orjson.dumps(bundle), headers=headers, timeout=timeout_s
        )
    except httpx.HTTPError as exc:
        raise DeliveryFailed(f"{type(exc).__name__}: {exc}") from exc
    if not 200 <= response.status_code < 300:
        raise DeliveryFailed(f"the endpoint answered HTTP {response.status_code}")


async def _check(channel: Channel, allowed_hosts: frozenset[str]) -> None:
    """The endpoint check again, off the event loop (it may resolve a host name)."""
    try:
        await asyncio.to_thread(check_endpoint, channel.endpoint, allowed_hosts)
    except Invalid as exc:
        raise DeliveryFailed(str(exc), permanent=True) from exc
