"""One JSON log line per HTTP request, with a request id, and its HTTP metrics
(`metrics_endpoint.observe`) (issue "Run it in production": observability).

Every request gets an id: the caller's `X-Request-ID` when it is 1-128 characters of
`A-Z a-z 0-9 . _ - :` (anything else is ignored), else a fresh uuid4 hex. The id is echoed
as `X-Request-ID` on the response, kept in the request's state (`request.state.request_id`:
a 500's OperationOutcome quotes it), and logged when the response is done, as one JSON object
on the logger `fhir_server.access` at INFO:

`{"ts", "request_id", "method", "path", "status", "ms", "client_id"}` — `ts` an ISO 8601 UTC
instant, `ms` the latency in milliseconds, `client_id` the SMART client of the token (set by
the FHIR endpoint once it authenticated the request; null otherwise). Never the query string,
a header value, a token, a password or resource content.
"""

from __future__ import annotations

import logging
import re
import sys
import time
import uuid
from typing import Any

import orjson
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fhir_server.api import metrics_endpoint
from resources.fhir_dates import format_instant, now_us

__all__ = [
    "ACCESS_LOG",
    "REQUEST_ID_HEADER",
    "RequestLog",
    "enable_access_log",
    "header_value",
    "request_id_of",
]

ACCESS_LOG = logging.getLogger("fhir_server.access")
REQUEST_ID_HEADER = "X-Request-ID"
_VALID_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


class _Stdout(logging.StreamHandler[Any]):
    """Writes to whatever `sys.stdout` is at the time (it may be replaced after start-up)."""

    @property
    def stream(self) -> Any:
        return sys.stdout

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def enable_access_log() -> None:
    """Write the access log's lines to stdout (once per process; `FHIR_SERVER_ACCESS_LOG`)."""
    if not any(isinstance(h, _Stdout) for h in ACCESS_LOG.handlers):
        ACCESS_LOG.addHandler(_Stdout())
    ACCESS_LOG.setLevel(logging.INFO)


def header_value(scope: Scope, name: bytes) -> str | None:
    """The first value of the header `name` (lower case, as ASGI servers give names) in the
    request's raw header list, decoded as Latin-1; None if absent. Cheaper than building
    Starlette's `Headers` on every request."""
    for key, value in scope.get("headers") or ():
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def request_id_of(scope: Scope) -> str | None:
    """The id `RequestLog` gave this request, if it ran."""
    state: dict[str, Any] = scope.get("state") or {}
    found = state.get("request_id")
    return found if isinstance(found, str) else None


class RequestLog:
    """ASGI middleware (outermost): request ids and the access log (module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = header_value(scope, b"x-request-id") or ""
        request_id = given if _VALID_ID.fullmatch(given) else uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        started = time.perf_counter()
        status = 500
        metrics_endpoint.started()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            metrics_endpoint.observe(scope, status, elapsed)
            if ACCESS_LOG.isEnabledFor(logging.INFO):
                line = {
                    "ts": format_instant(now_us()),
                    "request_id": request_id,
                    "method": scope.get("method"),
                    "path": scope.get("path"),
                    "status": status,
                    "ms": round(elapsed * 1000, 2),
                    "client_id": state.get("client_id"),
                }
                ACCESS_LOG.info(orjson.dumps(line).decode())
