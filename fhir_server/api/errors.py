"""Turn every failure into an OperationOutcome response (R4 operationoutcome.html, http.html).

FhirError subclasses carry their own status and issue code. Starlette's HTTP exceptions (unknown
route, method not allowed) are mapped to FHIR codes. Anything unexpected becomes a 500 whose
diagnostics hold only a request id; the traceback goes to the server log, never to the client.
"""

from __future__ import annotations

import logging
import uuid

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from fhir_server.api.negotiation import CONTENT_TYPES, response_format
from resources.errors import FhirError, Issue, IssueType, operation_outcome
from resources.xml_format import to_xml

log = logging.getLogger("fhir_server.errors")
OUTCOME_TYPE = "application/fhir+json; charset=utf-8"

_HTTP_CODES: dict[int, IssueType] = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    406: "not-supported",
    409: "conflict",
    410: "deleted",
    412: "conflict",
    413: "too-long",
    415: "not-supported",
    422: "processing",
    429: "throttled",
}


def outcome_response(
    status: int,
    issues: list[Issue],
    headers: dict[str, str] | None = None,
    request: Request | None = None,
) -> Response:
    """An OperationOutcome response, in XML when the request asked for XML (`_format` or
    `Accept`), else JSON (also when the request's format is itself what failed)."""
    outcome = operation_outcome(issues)
    if request is not None and _wants_xml(request):
        return Response(
            to_xml(outcome), status_code=status, media_type=CONTENT_TYPES["xml"], headers=headers
        )
    return Response(
        orjson.dumps(outcome), status_code=status, media_type=OUTCOME_TYPE, headers=headers
    )


def _wants_xml(request: Request) -> bool:
    try:
        fmt = response_format(request.headers.get("accept"), request.query_params.get("_format"))
    except FhirError:
        return False
    return fmt == "xml"


async def fhir_error_handler(request: Request, exc: Exception) -> Response:
    """FhirError -> its status and OperationOutcome."""
    assert isinstance(exc, FhirError)
    return outcome_response(exc.status, exc.issues, exc.headers, request)


async def http_error_handler(request: Request, exc: Exception) -> Response:
    """Starlette HTTPException (no route, wrong method) -> OperationOutcome."""
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "exception")
    if exc.status_code == 404:
        text = f"No route for {request.method} {request.url.path}"
    elif exc.status_code == 405:
        text = f"{request.method} is not allowed on {request.url.path}"
    else:
        text = str(exc.detail)
    return outcome_response(
        exc.status_code, [Issue(code=code, diagnostics=text)], dict(exc.headers or {})
    )


def unexpected_error_response(exc: BaseException, request_id: str | None = None) -> Response:
    """500 with the request's id (`request_log`; a fresh one without it) for the log; no
    internal text reaches the client."""
    request_id = request_id or uuid.uuid4().hex
    log.error("Unexpected error (request id %s)", request_id, exc_info=exc)
    issue = Issue(
        code="exception",
        severity="fatal",
        diagnostics=f"Internal server error; quote request id {request_id} to the administrator",
    )
    return outcome_response(500, [issue], {"X-Request-Id": request_id})


async def unexpected_error_handler(request: Request, exc: Exception) -> Response:
    """Any other exception -> 500 OperationOutcome."""
    return unexpected_error_response(exc, getattr(request.state, "request_id", None))
