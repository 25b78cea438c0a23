"""Render a FhirResult as an HTTP response: body in the negotiated format, `ETag`,
`Last-Modified`, `Location` (R4 http.html#read, #create, #versioning)."""

from __future__ import annotations

import functools
from email.utils import formatdate
from typing import Any

import orjson
from starlette.responses import Response

from fhir_server.api.negotiation import CONTENT_TYPES, Format
from fhir_server.messages import FhirResult
from resources.summary import apply_elements, apply_summary
from resources.xml_format import to_xml


def http_date(us: int) -> str:
    """RFC 7231 date of an instant in µs since the epoch (whole seconds)."""
    return _http_date(us // 1_000_000)


@functools.lru_cache(maxsize=4096)
def _http_date(seconds: int) -> str:
    return formatdate(seconds, usegmt=True)


def _json(obj: Any, pretty: bool) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_INDENT_2 if pretty else 0)


def _plain(obj: Any) -> Any:
    """Resolve embedded orjson Fragments into plain objects (for XML and subsetting)."""
    return orjson.loads(orjson.dumps(obj))


def body_bytes(result: FhirResult, fmt: Format, pretty: bool) -> bytes | None:
    """The response body in `fmt`, or None for no body."""
    subset = (result.summary not in (None, "false")) or bool(result.elements)
    if result.raw is not None and fmt == "json" and not subset and not pretty:
        return result.raw
    obj: Any = result.body
    if result.raw is not None:
        obj = orjson.loads(result.raw)
    if obj is None:
        return None
    if subset and result.raw is not None:
        if result.summary not in (None, "false"):
            obj = apply_summary(obj, result.summary or "false")
        if result.elements:
            obj = apply_elements(obj, result.elements)
    if fmt == "xml":
        return to_xml(_plain(obj))
    return _json(obj, pretty)


def render(result: FhirResult, fmt: Format, pretty: bool = False, head: bool = False) -> Response:
    """Build the Starlette response for `result`."""
    headers: dict[str, str] = dict(result.headers)
    if result.stored is not None:
        headers["ETag"] = f'W/"{result.stored.version_id}"'
        headers["Last-Modified"] = http_date(result.stored.last_updated)
    if result.location:
        headers["Location"] = result.location
        if result.status == 201:
            headers["Content-Location"] = result.location
    content = None if result.status == 304 else body_bytes(result, fmt, pretty)
    if content is None:
        return Response(status_code=result.status, headers=headers)
    if head:
        headers["Content-Length"] = str(len(content))
        return Response(status_code=result.status, headers=headers, media_type=CONTENT_TYPES[fmt])
    return Response(
        content, status_code=result.status, headers=headers, media_type=CONTENT_TYPES[fmt]
    )
