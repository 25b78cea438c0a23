"""The websocket endpoint of the Subscription `websocket` channel (`GET /websocket`,
upgraded): HTTP edge only; the protocol is `operations.subscriptions.websocket_session`.

With authorization on, `bind {id}` needs a bearer token in the upgrade request's
`Authorization` header that may read that Subscription (server-side clients can send one;
browsers cannot, and use `$get-ws-binding-token` with `bind-with-token` instead). With
authorization off any Subscription may be bound.
"""

from __future__ import annotations

import contextlib

from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from fhir_server.access import AccessPolicy, SystemPolicy
from fhir_server.api.fhir_endpoint import FHIR_PREFIX
from operations.subscription_get_ws_binding_token import WEBSOCKET_PATH
from operations.subscriptions.websocket_session import WebsocketSession
from resources.errors import FhirError

__all__ = ["websocket_routes"]

JOB = "subscription websocket"


async def _policy(ws: WebSocket) -> AccessPolicy | None:
    authenticate = ws.app.state.authenticate
    if authenticate is None:
        return SystemPolicy()
    header = ws.headers.get("authorization")
    if not header:
        return None
    try:
        policy: AccessPolicy = await authenticate(header)
    except FhirError:
        return None
    return policy


async def subscription_websocket(ws: WebSocket) -> None:
    """Accept the connection and serve it until it closes."""
    policy = await _policy(ws)
    await ws.accept()
    settings = ws.app.state.settings
    scheme = "https" if ws.url.scheme == "wss" else "http"
    base_url = settings.base_url or f"{scheme}://{ws.url.netloc}{FHIR_PREFIX}"
    job = ws.app.state.repositories.for_server(JOB, base_url)

    async def authorize(sub_id: str) -> bool:
        if policy is None:
            return False
        stored = await job.lookup.read("Subscription", sub_id)
        if stored is None or stored.content is None:
            return False
        return bool(await job.acting_for(policy).admit([stored]))

    session = WebsocketSession(job, ws, authorize, base_url)
    with contextlib.suppress(WebSocketDisconnect):
        await session.serve()


def websocket_routes() -> list[WebSocketRoute]:
    """The websocket route (mounted by `fhir_server.app`)."""
    return [WebSocketRoute(WEBSOCKET_PATH, subscription_websocket)]
