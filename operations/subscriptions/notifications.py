"""Notification Bundles of topic-based Subscriptions (Subscriptions R5 Backport IG STU 1.1,
R4 form: `backport-subscription-notification-r4`): a `history` Bundle whose first entry is
the `backport-subscription-status-r4` Parameters, then one entry per focus resource
(`id-only`: `fullUrl` and `request`; `full-resource`: with the resource; `empty`: none, and
no focus references).

Instants in Bundles are FHIR instants (UTC, `Z`); `at` arguments are µs since the epoch.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from fhir_server.model import StoredResource
from operations.subscriptions.plan import Plan
from resources.fhir_dates import format_instant, now_us

__all__ = ["STATUS_PROFILE", "Item", "notification_bundle", "plan_bundle", "status_parameters"]

STATUS_PROFILE = (
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
    "backport-subscription-status-r4"
)
NOTIFICATION_PROFILE = (
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
    "backport-subscription-notification-r4"
)


@dataclass(frozen=True, slots=True)
class Item:
    """One event of a notification.

    Attributes:
        number: its `eventNumber` for the Subscription (1, 2, ...).
        at: when it happened, µs UTC.
        focus: the focus version (the version deleted, for a deletion).
        deleted: whether the focus was deleted by the event.
    """

    number: int
    at: int
    focus: StoredResource
    deleted: bool = False


def status_parameters(
    *,
    base_url: str,
    subscription_id: str,
    topic_url: str | None,
    status: str,
    kind: str,
    events_since_start: int,
    items: Sequence[Item] = (),
    content: str = "id-only",
    error: str | None = None,
) -> dict[str, Any]:
    """The `backport-subscription-status-r4` Parameters of one notification or status query.

    Args:
        kind: `handshake`, `heartbeat`, `event-notification`, `query-status` or
            `query-event`.
        content: `empty` leaves out the topic and the focus references (IG "Payload Types").
        error: a reason to report as an `error` parameter, or None.
    """
    params: list[dict[str, Any]] = [
        {
            "name": "subscription",
            "valueReference": {"reference": _url(base_url, f"Subscription/{subscription_id}")},
        },
    ]
    if topic_url and content != "empty":
        params.append({"name": "topic", "valueCanonical": topic_url})
    params.append({"name": "status", "valueCode": status})
    params.append({"name": "type", "valueCode": kind})
    params.append(
        {"name": "events-since-subscription-start", "valueString": str(events_since_start)}
    )
    for item in items:
        parts: list[dict[str, Any]] = [
            {"name": "event-number", "valueString": str(item.number)},
            {"name": "timestamp", "valueInstant": format_instant(item.at)},
        ]
        if content != "empty":
            ref = _url(base_url, f"{item.focus.resource_type}/{item.focus.id}")
            parts.append({"name": "focus", "valueReference": {"reference": ref}})
        params.append({"name": "notification-event", "part": parts})
    if error:
        params.append({"name": "error", "valueCodeableConcept": {"text": error}})
    return {
        "resourceType": "Parameters",
        "id": str(uuid.uuid4()),
        "meta": {"profile": [STATUS_PROFILE]},
        "parameter": params,
    }


def notification_bundle(
    parameters: dict[str, Any], items: Sequence[Item], content: str, base_url: str, at: int
) -> dict[str, Any]:
    """The notification Bundle (module docstring) around status `parameters`."""
    sub_ref = parameters["parameter"][0]["valueReference"]["reference"]
    sub_id = sub_ref.rsplit("/", 1)[1]
    entries: list[dict[str, Any]] = [
        {
            "fullUrl": f"urn:uuid:{parameters['id']}",
            "resource": parameters,
            "request": {"method": "GET", "url": f"Subscription/{sub_id}/$status"},
            "response": {"status": "200"},
        }
    ]
    if content != "empty":
        for item in items:
            entries.append(_focus_entry(item, content, base_url))
    return {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"profile": [NOTIFICATION_PROFILE]},
        "type": "history",
        "timestamp": format_instant(at),
        "entry": entries,
    }


def plan_bundle(
    base_url: str,
    sub_id: str,
    plan: Plan,
    status: str,
    kind: str,
    items: Sequence[Item],
    count: int,
    error: str | None = None,
) -> dict[str, Any]:
    """The notification Bundle of a Subscription read as `plan` (its topic and content
    level): `kind` with `items`, `count` events since it started."""
    params = status_parameters(
        base_url=base_url,
        subscription_id=sub_id,
        topic_url=plan.topic_url,
        status=status,
        kind=kind,
        events_since_start=count,
        items=items,
        content=plan.content,
        error=error,
    )
    return notification_bundle(params, items, plan.content, base_url, now_us())


def _focus_entry(item: Item, content: str, base_url: str) -> dict[str, Any]:
    focus = item.focus
    url = f"{focus.resource_type}/{focus.id}"
    if item.deleted:
        method, status = "DELETE", "204"
    elif focus.version_id == 1:
        method, status = "POST", "201"
    else:
        method, status = "PUT", "200"
    entry: dict[str, Any] = {
        "fullUrl": _url(base_url, url),
        "request": {"method": method, "url": url if method != "POST" else focus.resource_type},
        "response": {"status": status},
    }
    if content == "full-resource" and not item.deleted and focus.content is not None:
        entry["resource"] = orjson.loads(focus.content)
    return entry


def _url(base_url: str, path: str) -> str:
    """`path` on the server's base (relative when the base is not known)."""
    return f"{base_url.rstrip('/')}/{path}" if base_url else path
