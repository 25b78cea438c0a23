"""A Subscription read into what the dispatcher does with it (`Plan`): R4 criteria-based
(R4 `subscription.html`) or topic-based (Subscriptions R5 Backport IG STU 1.1, R4 form:
`criteria` = a topic's canonical URL, filters in `backport-filter-criteria` extensions on
`_criteria`, `backport-payload-content` on `channel._payload`, `backport-heartbeat-period` and
`backport-timeout` on `channel`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fhir_server.config import canonical_root
from fhir_server.repository import Repository
from fhir_server.search.query import Condition
from operations.subscriptions.criteria import Channel, allowed_hosts, parse_criteria, read_channel
from operations.subscriptions.topics import TOPICS, Topic
from resources.errors import Invalid

__all__ = ["BACKPORT", "CONTENTS", "Plan", "read_plan", "topic_root"]

BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition"
"""The canonical base of the Backport IG's extensions and profiles."""
FILTER = f"{BACKPORT}/backport-filter-criteria"
CONTENT = f"{BACKPORT}/backport-payload-content"
HEARTBEAT = f"{BACKPORT}/backport-heartbeat-period"
TIMEOUT = f"{BACKPORT}/backport-timeout"
CONTENTS = ("empty", "id-only", "full-resource")
"""The payload content levels (backport-content-value-set)."""
MAX_TIMEOUT_S = 60


@dataclass(frozen=True, slots=True)
class Plan:
    """What to deliver for one Subscription, and how.

    Attributes:
        topic: the topic of a topic-based Subscription, None for R4 criteria.
        topic_url: its canonical URL as written, or None.
        resource_type: the criteria's type (R4 criteria) or the topic's focus type.
        conditions: the criteria's or the filters' search conditions (ANDed).
        channel: the channel, checked.
        content: `empty`, `id-only` or `full-resource` (R4 criteria: `full-resource` with a
            payload, `id-only` for email with a payload, `empty` without).
        heartbeat_s: seconds between heartbeats (topic-based), or None.
        timeout_s: seconds one delivery may take.
    """

    topic: Topic | None
    topic_url: str | None
    resource_type: str
    conditions: tuple[Condition, ...]
    channel: Channel
    content: str
    heartbeat_s: int | None
    timeout_s: float


def topic_root(repository: Repository) -> str:
    """The canonical root the topics' URLs live under (from `extension_base`)."""
    return canonical_root(repository.settings.extension_base)


def _extension(element: dict[str, Any] | None, url: str) -> list[Any]:
    values: list[Any] = []
    for ext in (element or {}).get("extension") or []:
        if ext.get("url") == url:
            values.extend(v for k, v in ext.items() if k.startswith("value"))
    return values


def read_plan(subscription: dict[str, Any], repository: Repository) -> Plan:
    """Read and check a Subscription.

    Raises:
        Invalid: (400) criteria, topic, filters, channel or payload content that cannot be
            delivered (`criteria.py`, `topics.py`), an email channel without an SMTP server.
    """
    text = subscription.get("criteria")
    if not isinstance(text, str) or not text.strip():
        raise Invalid(
            "Subscription.criteria is required: a search URL such as Appointment?status=booked, "
            "or a SubscriptionTopic canonical URL",
            expression=("Subscription.criteria",),
        )
    hosts = allowed_hosts(repository.settings.subscription_allowed_hosts)
    text = text.strip()
    kind = (subscription.get("channel") or {}).get("type")
    if kind == "email" and not repository.settings.smtp_url:
        raise Invalid(
            "This server sends no email: the email channel needs FHIR_SERVER_SMTP_URL",
            code="not-supported",
            expression=("Subscription.channel.type",),
        )
    if "/SubscriptionTopic/" not in text:
        criteria = parse_criteria(text, repository.context)
        channel = read_channel(subscription, hosts, topic_based=False)
        content = "empty" if not channel.payload else "full-resource"
        if channel.type == "email" and channel.payload:
            content = "id-only"
        return Plan(
            None, None, criteria.resource_type, criteria.conditions, channel, content, None, 10.0
        )
    topic = _topic_of(text, repository)
    filters = [str(v) for v in _extension(subscription.get("_criteria"), FILTER)]
    conditions = topic.parse_filters(filters, repository)
    channel = read_channel(subscription, hosts, topic_based=True)
    payload = (subscription.get("channel") or {}).get("_payload")
    contents = [str(v) for v in _extension(payload, CONTENT)] or ["id-only"]
    if contents[0] not in CONTENTS:
        raise Invalid(
            f"backport-payload-content {contents[0]!r} is not one of {', '.join(CONTENTS)}",
            expression=("Subscription.channel.payload",),
        )
    channel_json = subscription.get("channel") or {}
    heartbeat = _extension(channel_json, HEARTBEAT)
    timeout = _extension(channel_json, TIMEOUT)
    heartbeat_s = int(heartbeat[0]) if heartbeat and int(heartbeat[0]) > 0 else None
    timeout_s = (
        float(min(int(timeout[0]), MAX_TIMEOUT_S)) if timeout and int(timeout[0]) > 0 else 10.0
    )
    return Plan(
        topic, text, topic.focus_type, conditions, channel, contents[0], heartbeat_s, timeout_s
    )


def _topic_of(url: str, repository: Repository) -> Topic:
    root = topic_root(repository)
    for topic in TOPICS.values():
        if url == topic.url(root):
            return topic
    known = ", ".join(t.url(root) for t in TOPICS.values())
    raise Invalid(
        f"Subscription.criteria names an unknown SubscriptionTopic {url!r}; this server offers "
        f"{known}",
        code="not-supported",
        expression=("Subscription.criteria",),
    )
