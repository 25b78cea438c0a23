"""The Bulk Data status and file endpoints: HTTP routes of their own on the server's origin,
beside the FHIR base (Bulk Data Access 2.0 export.md "Bulk Data Status Request", "Bulk Data
Delete Request", "Bulk Data Output File Request").

* `GET /bulk-export/{job}`: 202 (`X-Progress`, `Retry-After`), 200 with the manifest
  (`application/json`), 429, 404, 500;
* `DELETE /bulk-export/{job}`: 202 with an OperationOutcome;
* `GET /bulk-export/{job}/{file}`: the ndjson file (`application/fhir+ndjson`).

They take the same bearer tokens as the FHIR API (401 without one when authorization is on);
what they answer is `operations.bulk_export.BulkExports`'s. Errors are OperationOutcomes (the
app's FhirError handler); a 403 is recorded like one of the FHIR API.
"""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from fhir_server.access import AccessPolicy
from fhir_server.api.fhir_endpoint import UNAUTHENTICATED, Authenticate, Denied, base_url_of
from fhir_server.messages import FhirResult
from fhir_server.repository import Repository, RepositoryFactory
from operations.bulk_export import STATUS_PATH, BulkExports
from resources.errors import Forbidden

__all__ = ["NDJSON", "bulk_data_routes"]

NDJSON = "application/fhir+ndjson"


def bulk_data_routes() -> list[Route]:
    """The routes, mounted by `fhir_server.app` (they read `app.state.exports`)."""
    return [
        Route(STATUS_PATH + "/{job}", _status, methods=["GET", "DELETE"]),
        Route(STATUS_PATH + "/{job}/{name}", _download, methods=["GET"]),
    ]


async def _policy(request: Request) -> AccessPolicy:
    authenticate: Authenticate | None = request.app.state.authenticate
    if authenticate is None:
        return UNAUTHENTICATED
    return await authenticate(request.headers.get("authorization"))


def _repository(request: Request, policy: AccessPolicy) -> Repository:
    repositories: RepositoryFactory = request.app.state.repositories
    return repositories.for_request(policy, base_url_of(request, request.app.state.settings))


async def _status(request: Request) -> Response:
    exports: BulkExports = request.app.state.exports
    policy = await _policy(request)
    repository = _repository(request, policy)
    job = request.path_params["job"]
    try:
        if request.method == "DELETE":
            result = await exports.cancel(repository, job)
        else:
            result = await exports.status(repository, repository.base_url, job)
    except Forbidden as exc:
        await _record_denial(request, policy, exc)
        raise
    return _json(result)


async def _download(request: Request) -> Response:
    exports: BulkExports = request.app.state.exports
    policy = await _policy(request)
    params = request.path_params
    try:
        path = await exports.file(_repository(request, policy), params["job"], params["name"])
    except Forbidden as exc:
        await _record_denial(request, policy, exc)
        raise
    return FileResponse(path, media_type=NDJSON)


def _json(result: FhirResult) -> Response:
    """A status answer: the manifest as `application/json`, an OperationOutcome as FHIR
    JSON, or no body."""
    if result.body is None:
        return Response(status_code=result.status, headers=result.headers)
    media = "application/json" if result.status == 200 else "application/fhir+json"
    return Response(
        orjson.dumps(result.body), result.status, headers=result.headers, media_type=media
    )


async def _record_denial(request: Request, policy: AccessPolicy, exc: Forbidden) -> None:
    on_denied: Denied | None = request.app.state.on_denied
    if on_denied is not None:
        await on_denied(policy, f"{request.method} {request.url.path}", exc.diagnostics)
