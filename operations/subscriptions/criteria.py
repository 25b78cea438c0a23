"""What an R4 Subscription asks for, checked (R4 `subscription.html`, Subscription.criteria
and Subscription.channel): the criteria as typed search conditions, and where notifications
may go.

Criteria are a search URL of one type (`Appointment?actor=PractitionerRole/x&status=booked`),
parsed strictly by the server's search parser and matched in memory against each event's own
version (`fhir_server.search.match`), so chained and `_has` parameters are refused. Endpoints:
`rest-hook` an `http(s)` URL, `https` unless its host is allowed (`subscription_allowed_hosts`,
default loopback), never a private, link-local, reserved or cloud metadata address unless
allowed; `email` a `mailto:` address; `websocket` no endpoint.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from fhir_server.search.match import decidable
from fhir_server.search.parse import SearchContext, parse_search
from fhir_server.search.query import Condition
from resources.errors import Invalid
from resources.types import RESOURCE_TYPES

__all__ = [
    "CHANNEL_TYPES",
    "Channel",
    "Criteria",
    "allowed_hosts",
    "check_endpoint",
    "parse_criteria",
    "read_channel",
]

CHANNEL_TYPES = frozenset({"rest-hook", "websocket", "email"})
"""The channel types this server delivers on (R4 subscription-channel-type, less `sms` and
`message`)."""

RESULT_PARAMETERS = frozenset(
    {"_sort", "_count", "_include", "_revinclude", "_summary", "_elements", "_total"}
)
"""Search result parameters, meaningless for criteria (R4 `search.html#return`)."""

EMAIL_PAYLOADS = frozenset({"text/plain", "text/html"})
"""The bodies of an email notification."""

PAYLOAD_TYPES = frozenset({"application/fhir+json", "application/json"})
"""The `channel.payload` MIME types a rest-hook can carry (the resource as FHIR JSON)."""


@dataclass(frozen=True, slots=True)
class Criteria:
    """Parsed `Subscription.criteria`.

    Attributes:
        resource_type: the type the criteria search.
        conditions: the search conditions, ANDed (empty: every change of the type).
    """

    resource_type: str
    conditions: tuple[Condition, ...]


def _invalid(message: str, field: str) -> Invalid:
    return Invalid(message, code="invalid", expression=(f"Subscription.{field}",))


def parse_criteria(text: str, ctx: SearchContext) -> Criteria:
    """Parse `Subscription.criteria` (`Type?query` or `Type`).

    Raises:
        Invalid: (400) empty, an unknown type, malformed or unknown parameters, result
            parameters (`_sort`, `_include`, ...), chained or `_has` parameters.
    """
    rtype, _, query = text.strip().partition("?")
    if rtype not in RESOURCE_TYPES:
        raise _invalid(
            f"Subscription.criteria must start with a resource type: {text!r}", "criteria"
        )
    params = parse_qsl(query, keep_blank_values=True)
    results = sorted({name for name, _ in params if name in RESULT_PARAMETERS})
    if results:
        raise _invalid(f"Subscription.criteria cannot use {', '.join(results)}", "criteria")
    request = parse_search(rtype, params, ctx, strict=True)
    conditions = request.query.conditions
    if not decidable(conditions):
        raise _invalid(
            "Subscription.criteria cannot use chained or _has parameters: each event is "
            "matched on its own version",
            "criteria",
        )
    return Criteria(rtype, conditions)


@dataclass(frozen=True, slots=True)
class Channel:
    """`Subscription.channel`, read.

    Attributes:
        type: `rest-hook`, `websocket` or `email`.
        endpoint: the URL (`mailto:` for email), "" for a websocket.
        payload: the MIME type of the payload, "" for none (notification without content).
        headers: `channel.header` values as `(name, value)`.
    """

    type: str
    endpoint: str
    payload: str
    headers: tuple[tuple[str, str], ...]


def allowed_hosts(hosts: str) -> frozenset[str]:
    """`subscription_allowed_hosts` as a set of lower-case host names."""
    return frozenset(h.strip().lower().strip("[]") for h in hosts.split(",") if h.strip())


def read_channel(
    subscription: dict[str, Any], allowed_hosts: frozenset[str], *, topic_based: bool = False
) -> Channel:
    """Read and check `Subscription.channel`. A rest-hook or websocket payload is FHIR JSON
    (topic-based: `application/fhir+json` when absent); an email payload is `text/plain` or
    `text/html`, optionally `;attach=application/fhir+json` (the notification attached).

    Raises:
        Invalid: (400) an unsupported channel type or payload, a missing or refused endpoint
            (see `check_endpoint`), a header not of the form `Name: value`.
    """
    channel = subscription.get("channel") or {}
    kind = channel.get("type")
    if kind not in CHANNEL_TYPES:
        raise _invalid(
            f"Subscription.channel.type {kind!r} is not one of {sorted(CHANNEL_TYPES)}",
            "channel.type",
        )
    endpoint = str(channel.get("endpoint") or "")
    payload = str(channel.get("payload") or "")
    if kind == "email":
        if payload and payload.split(";", maxsplit=1)[0].strip() not in EMAIL_PAYLOADS:
            raise _invalid(
                f"Subscription.channel.payload {payload!r}: an email body is text/plain or "
                "text/html (optionally ;attach=application/fhir+json)",
                "channel.payload",
            )
    elif payload and payload not in PAYLOAD_TYPES:
        raise _invalid(
            f"Subscription.channel.payload {payload!r} is not supported: use application/fhir+json",
            "channel.payload",
        )
    elif topic_based and not payload:
        payload = "application/fhir+json"
    if kind == "rest-hook":
        check_endpoint(endpoint, allowed_hosts, resolve=False)
    elif kind == "email" and (not endpoint.startswith("mailto:") or "@" not in endpoint):
        raise _invalid("An email channel needs a mailto: endpoint", "channel.endpoint")
    headers: list[tuple[str, str]] = []
    for raw in channel.get("header") or []:
        name, sep, value = str(raw).partition(":")
        if not sep or not name.strip() or any(c in raw for c in "\r\n"):
            raise _invalid(
                f"Subscription.channel.header {raw!r} is not 'Name: value'", "channel.header"
            )
        headers.append((name.strip(), value.strip()))
    return Channel(kind, endpoint, payload, tuple(headers))


def check_endpoint(endpoint: str, allowed_hosts: frozenset[str], *, resolve: bool = True) -> None:
    """Refuse a rest-hook endpoint notifications must not go to: not `http(s)`, plain `http`
    to a host not allowed, or a host that is (or, with `resolve`, resolves to) a loopback, private,
    link-local (cloud metadata 169.254.169.254 included), reserved or multicast address that
    is not allowed. Resolution uses the system resolver (blocking, bounded by its timeout);
    a host that does not resolve is not refused here: deliveries to it fail and are retried,
    and every delivery checks again (a name that later resolves to a private address is
    refused then, permanently).

    Raises:
        Invalid: (400) naming the reason.
    """
    parts = urlsplit(endpoint)
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("http", "https") or not host:
        raise _invalid(
            f"Subscription.channel.endpoint must be an http(s) URL: {endpoint!r}",
            "channel.endpoint",
        )
    if host in allowed_hosts:
        return
    if parts.scheme != "https":
        raise _invalid(
            f"Subscription.channel.endpoint must use https ({host} is not in "
            "FHIR_SERVER_SUBSCRIPTION_ALLOWED_HOSTS)",
            "channel.endpoint",
        )
    for address in _addresses(host, resolve):
        if not address.is_global or address.is_multicast:
            raise _invalid(
                f"Subscription.channel.endpoint {host} is a private, loopback, link-local or "
                "reserved address; notifications are not sent there",
                "channel.endpoint",
            )


def _addresses(host: str, resolve: bool) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        if not resolve:
            return []
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return []  # not resolvable now: nothing to refuse; a delivery fails until it is
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
