"""The FHIR REST endpoint: one Starlette handler for every interaction under the base path.

It negotiates the format, enforces the body size limit, parses the body and conditional
headers into a FhirRequest, dispatches it, and renders the FhirResult. Errors propagate to
the OperationOutcome handlers in `errors.py`.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from fhir_server.api.negotiation import parse_body, parse_prefer, response_format
from fhir_server.api.rendering import render
from fhir_server.config import Settings
from fhir_server.interactions import FhirRequest, Interactions
from resources.errors import PayloadTooLarge

FHIR_PREFIX = "/fhir"


def base_url_of(request: Request, settings: Settings) -> str:
    """The public FHIR base URL: the configured one, else scheme://host/fhir of the request."""
    if settings.base_url:
        return settings.base_url.rstrip("/")
    return f"{request.url.scheme}://{request.url.netloc}{FHIR_PREFIX}"


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
    """Handle `ANY /fhir/{path}`."""
    state = request.app.state
    settings: Settings = state.settings
    interactions: Interactions = state.interactions
    query = request.query_params.multi_items()
    fmt = response_format(request.headers.get("accept"), request.query_params.get("_format"))
    pretty = request.query_params.get("_pretty") == "true"
    body = None
    method = request.method
    if method in ("POST", "PUT", "PATCH"):
        raw = await read_body(request, settings.max_body_bytes)
        body = parse_body(request.headers.get("content-type"), raw)
    path = request.path_params.get("path", "")
    if method == "POST" and path.rstrip("/").endswith("/_search") and isinstance(body, list):
        query = [*query, *body]
        body = None
    prefer_return, strict = parse_prefer(request.headers.get("prefer"))
    freq = FhirRequest(
        method="GET" if method == "HEAD" else method,
        path=path,
        query=query,
        base_url=base_url_of(request, settings),
        body=body,
        if_match=request.headers.get("if-match"),
        if_none_exist=request.headers.get("if-none-exist"),
        if_none_match=request.headers.get("if-none-match"),
        if_modified_since=request.headers.get("if-modified-since"),
        prefer_return=prefer_return,  # type: ignore[arg-type]
        strict=strict,
    )
    result = await interactions.dispatch(freq)
    return render(result, fmt, pretty, head=method == "HEAD")
