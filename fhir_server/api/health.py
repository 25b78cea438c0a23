"""Liveness and readiness for load balancers and orchestrators, beside the FHIR base.

* `GET /healthz`: 200 `{"status": "alive"}` while the process serves HTTP at all.
* `GET /readyz`: 200 `{"status": "ready"}` once start-up finished (the store opened and its
  schema migrated, conformance published) and the store answers a read now; else 503 with an
  OperationOutcome (`transient`) saying which, and `Retry-After: 5`.

Both are public (no token) and `no-store`; neither touches resource content.
"""

from __future__ import annotations

import asyncio
import logging

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fhir_server.api.errors import outcome_response
from fhir_server.repository import RepositoryFactory
from resources.errors import Issue

__all__ = ["health_routes"]

log = logging.getLogger(__name__)
NO_STORE = {"Cache-Control": "no-store"}
STORE_TIMEOUT_S = 2.0
"""How long the readiness read may take before the store counts as unreachable."""


def _ok(status: str) -> Response:
    return Response(
        orjson.dumps({"status": status}), media_type="application/json", headers=NO_STORE
    )


def _not_ready(request: Request, why: str) -> Response:
    headers = {**NO_STORE, "Retry-After": "5"}
    return outcome_response(503, [Issue(code="transient", diagnostics=why)], headers, request)


async def _healthz(_request: Request) -> Response:
    return _ok("alive")


async def _readyz(request: Request) -> Response:
    if not getattr(request.app.state, "ready", False):
        return _not_ready(request, "The server is starting: the store is not open yet")
    repositories: RepositoryFactory = request.app.state.repositories
    lookup = repositories.for_server("readiness").lookup
    try:
        await asyncio.wait_for(lookup.latest_event(), STORE_TIMEOUT_S)
    except Exception as exc:  # any failure to read means not ready; the reason is logged
        log.warning("Readiness: the store did not answer: %r", exc)
        return _not_ready(request, "The store does not answer")
    return _ok("ready")


def health_routes() -> list[Route]:
    """The two routes, mounted by `fhir_server.app` (it sets `app.state.ready`)."""
    return [
        Route("/healthz", _healthz, methods=["GET"]),
        Route("/readyz", _readyz, methods=["GET"]),
    ]
