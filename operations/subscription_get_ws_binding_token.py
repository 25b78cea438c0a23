"""`Subscription/$get-ws-binding-token` and `Subscription/[id]/$get-ws-binding-token`
(Subscriptions R5 Backport IG STU 1.1, OperationDefinition
`backport-subscription-get-ws-binding-token`): a short-lived token a websocket client sends
as `bind-with-token {token}` to receive the notifications of the named Subscriptions.

Instance level: that Subscription; type level: the `id` parameters' (else every websocket
Subscription the caller may see). Only `websocket` Subscriptions the caller may read are
bound (400 `invalid` if none). The token (256 bits) is kept as a record for
TOKEN_SECONDS; `websocket-url` is the server's websocket endpoint on the request's origin
(`ws://`, or `wss://` behind https).

Returns `Parameters`: `token`, `expiration` (dateTime, UTC), `subscription` (one per id),
`websocket-url`.
"""

from __future__ import annotations

import secrets
from urllib.parse import urlsplit

import orjson

from fhir_server.messages import FhirResult, Operation, OperationCall
from operations.scheduling.parameters import OperationParams
from operations.subscription_status import subscriptions_of
from operations.subscriptions.websocket_session import BINDING
from resources.errors import Invalid
from resources.fhir_dates import format_instant, now_us

__all__ = ["OPERATION", "TOKEN_SECONDS", "WEBSOCKET_PATH", "websocket_url"]

TOKEN_SECONDS = 900
WEBSOCKET_PATH = "/websocket"
"""Where the server accepts websocket connections (below the server's origin)."""
DEFINITION = (
    "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/"
    "backport-subscription-get-ws-binding-token"
)


def websocket_url(base_url: str) -> str:
    """The websocket endpoint on the origin of the FHIR base `base_url`."""
    parts = urlsplit(base_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    return f"{scheme}://{parts.netloc}{WEBSOCKET_PATH}"


async def get_ws_binding_token(call: OperationCall) -> FhirResult:
    """The handler (module docstring)."""
    params = OperationParams.of(call.request)
    found = await subscriptions_of(call, params)
    ids = [
        s.id
        for s in found
        if s.content is not None
        and (orjson.loads(s.content).get("channel") or {}).get("type") == "websocket"
    ]
    if not ids:
        raise Invalid(
            "No websocket Subscription to bind: $get-ws-binding-token needs Subscriptions "
            "with channel.type websocket that the access token may read",
            expression=("id",),
        )
    token = secrets.token_urlsafe(32)
    expires = now_us() + TOKEN_SECONDS * 1_000_000
    await call.repository.records.put_record(BINDING, token, {"subscriptions": ids}, expires)
    parameters = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "token", "valueString": token},
            {"name": "expiration", "valueDateTime": format_instant(expires)},
            *({"name": "subscription", "valueString": i} for i in ids),
            {"name": "websocket-url", "valueUrl": websocket_url(call.request.base_url)},
        ],
    }
    return FhirResult(200, parameters)


OPERATION = Operation(
    name="get-ws-binding-token",
    handler=get_ws_binding_token,
    type_level=True,
    instance=True,
    resource_types=frozenset({"Subscription"}),
    definition={"url": DEFINITION},
    requires=((None, "r"),),
)
