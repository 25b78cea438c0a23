"""The FHIR REST endpoint: one Starlette handler for every interaction under the base path.

It negotiates the format, enforces the body size limit, parses the body and conditional
headers into a FhirRequest, dispatches it, and renders the FhirResult. Errors propagate to
the OperationOutcome handlers in `errors.py`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from fhir_server.access import AccessPolicy, SystemPolicy
from fhir_server.api.negotiation import parse_body, parse_prefer, prefers_async, response_format
from fhir_server.api.rendering import render
from fhir_server.api.request_log import header_value
from fhir_server.config import Settings
from fhir_server.interactions import Interactions
from fhir_server.messages import FhirRequest
from fhir_server.repository import RepositoryFactory
from resources.errors import Forbidden, PayloadTooLarge

FHIR_PREFIX = "/fhir"
WELL_KNOWN = FHIR_PREFIX + "/.well-known/"
PUBLIC_PATHS = frozenset({"metadata"})
UNAUTHENTICATED = SystemPolicy("anonymous")
"""The policy of every request when authorization is off (and of the public paths)."""
CORS_HEADERS = {  # bearer tokens, never cookies: any origin may call with its own token
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Expose-Headers": "Location, ETag, Last-Modified, Content-Location, Expires, "
    "WWW-Authenticate",
}
CORS_PREFLIGHT = {
    **CORS_HEADERS,
    "Access-Control-Allow-Methods": "GET, HEAD, POST, PUT, PATCH, DELETE",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, Accept, If-Match, "
    "If-None-Match, If-None-Exist, If-Modified-Since, Prefer",
    "Access-Control-Max-Age": "600",
}
Authenticate = Callable[[str | None], Awaitable[AccessPolicy]]
"""`Authorization` header value -> the request's AccessPolicy; raises Unauthorized (401)."""
Denied = Callable[[AccessPolicy, str, str], Awaitable[None]]
"""Records a 403: `(policy, "METHOD path", reason)`."""


def base_url_of(request: Request, settings: Settings) -> str:
    """The public FHIR base URL: the configured one, else scheme://host/fhir of the request
    (from the Host header, without building the whole request URL)."""
    if settings.base_url:
        return settings.base_url.rstrip("/")
    host = request.headers.get("host")
    if not host:
        server = request.scope.get("server") or ("localhost", 80)
        host = f"{server[0]}:{server[1]}"
    return f"{request.scope.get('scheme', 'http')}://{host}{FHIR_PREFIX}"


async def read_body(request: Request, limit: int) -> bytes:
    """Read the body, refusing more than `limit` bytes with PayloadTooLarge (413)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"The request body ({declared} bytes) exceeds {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"The request body exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def fhir_endpoint(request: Request) -> Response:
    """Handle `ANY /fhir/{path}`.

    With authorization on (`app.state.authenticate` set), every path but `metadata` needs a
    bearer token: the policy it yields builds the request's repository (401 Unauthorized
    without a valid one, before anything else is read). With it off, the request acts as
    `anonymous` with a system policy.
    """
    state = request.app.state
    authenticate: Authenticate | None = state.authenticate
    path = request.path_params.get("path", "")
    if authenticate is None or path.strip("/") in PUBLIC_PATHS:
        return await _serve(request, path, UNAUTHENTICATED)
    policy = await authenticate(header_value(request.scope, b"authorization"))
    client_id = getattr(policy, "client_id", None) or None
    request.scope.setdefault("state", {})["client_id"] = client_id  # for the access log
    try:
        return await _serve(request, path, policy)
    except Forbidden as exc:
        on_denied: Denied | None = state.on_denied
        if on_denied is not None:
            await on_denied(policy, f"{request.method} {path}", exc.diagnostics)
        raise


async def _serve(request: Request, path: str, policy: AccessPolicy) -> Response:
    state = request.app.state
    settings: Settings = state.settings
    interactions: Interactions = state.interactions
    repositories: RepositoryFactory = state.repositories
    if request.scope.get("query_string"):
        params = request.query_params
        query = params.multi_items()
        format_param, pretty = params.get("_format"), params.get("_pretty") == "true"
    else:
        query, format_param, pretty = [], None, False
    headers = request.headers
    fmt = response_format(headers.get("accept"), format_param)
    body = None
    method = request.method
    if method in ("POST", "PUT", "PATCH"):
        raw = await read_body(request, settings.max_body_bytes)
        body = parse_body(headers.get("content-type"), raw)
        if not path.strip("/") and isinstance(body, dict):  # for the metrics' label
            request.state.bundle = body.get("type")
    if method == "POST" and path.rstrip("/").endswith("/_search") and isinstance(body, list):
        query = [*query, *body]
        body = None
    prefer_return, strict = parse_prefer(headers.get("prefer"))
    base_url = base_url_of(request, settings)
    freq = FhirRequest(
        method="GET" if method == "HEAD" else method,
        path=path,
        query=query,
        base_url=base_url,
        body=body,
        if_match=headers.get("if-match"),
        if_none_exist=headers.get("if-none-exist"),
        if_none_match=headers.get("if-none-match"),
        if_modified_since=headers.get("if-modified-since"),
        prefer_return=prefer_return,  # type: ignore[arg-type]
        strict=strict,
        respond_async=prefers_async(headers.get("prefer")),
        response_format=fmt,
    )
    repository = repositories.for_request(policy, base_url)
    result = await interactions.dispatch(freq, repository)
    return render(result, fmt, pretty, head=method == "HEAD")


class FhirMount:
    """ASGI middleware sending every `/fhir` and `/fhir/...` HTTP request straight to the FHIR
    handler, ahead of the framework's router and its per-request exception and exit-stack
    layers (the handler turns every failure into an OperationOutcome itself). Everything else
    goes on to the wrapped application (`/fhir/.well-known/...` included: the SMART discovery
    documents are routes of their own). Measured with bench/rest.py: about 10% more reads/s.
    A request with an `Origin` header (a browser app) gets CORS headers for any origin, and
    its `OPTIONS` preflight a 204: the API takes bearer tokens, never cookies.

    Args:
        app: the wrapped ASGI application.
        handler: the FHIR request handler (a Request in, a Response out, never raising).
    """

    def __init__(self, app: ASGIApp, handler: Callable[[Request], Awaitable[Response]]) -> None:
        self.app = app
        self.handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Route one ASGI call."""
        path: str = scope.get("path", "")
        if (
            scope["type"] == "http"
            and (path == FHIR_PREFIX or path.startswith(FHIR_PREFIX + "/"))
            and not path.startswith(WELL_KNOWN)
        ):
            scope["path_params"] = {"path": path[len(FHIR_PREFIX) + 1 :]}
            request = Request(scope, receive)
            if "origin" in request.headers:  # a browser app on another origin (CORS)
                if request.method == "OPTIONS":
                    await Response(status_code=204, headers=CORS_PREFLIGHT)(scope, receive, send)
                    return
                response = await self.handler(request)
                response.headers.update(CORS_HEADERS)
            else:
                response = await self.handler(request)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
