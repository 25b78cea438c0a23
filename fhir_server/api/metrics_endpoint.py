"""`GET /metrics` in the Prometheus text format, and the HTTP metrics of each request
(`fhir_server.metrics` lists them all).

- `observe(scope, status, seconds)`: called by `request_log.RequestLog` when a response is
  done; labels the request with its FHIR interaction (R4 http.html names: `read`, `vread`,
  `update`, `patch`, `delete`, `history-instance`, `history-type`, `history-system`,
  `create`, `search-type`, `search-system`, `search-compartment`, `capabilities`,
  `transaction`, `batch`, `operation` with its `$name`), or the server's other surfaces
  (`auth`, `portal`, `waitlist-offer`, `health`, `metrics`, `other`).
- `metrics_routes(...)`: the endpoint. With `PROMETHEUS_MULTIPROC_DIR` set (several
  workers) it adds up every worker's values; the outbox gauges are read from the database
  at scrape time, so any worker answers them the same:
  `fhir_outbox_events` (events the Subscription dispatcher has not looked at yet: newest event
  number minus the slowest Subscription's cursor) and `fhir_outbox_lag_seconds` (age of the
  oldest of them; 0 when none).

Public like `/healthz` (no token): it carries counts and timings only. Turn it off with
`FHIR_SERVER_METRICS=false` (then 404 with an OperationOutcome).
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterator
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Metric,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Scope

from fhir_server.api.errors import outcome_response
from fhir_server.metrics import IN_PROGRESS, LATENCY, MULTIPROCESS, REQUESTS, WORKER_REQUESTS
from fhir_server.repository import RepositoryFactory
from operations.subscriptions.dispatch_loop import outbox
from resources.errors import Issue
from resources.types import is_resource_type

__all__ = ["labels_of", "metrics_routes", "observe", "started"]

FHIR = "/fhir"
_TYPE_LEVEL = {
    "GET": "search-type",
    "HEAD": "search-type",
    "POST": "create",
    "PUT": "update",
    "PATCH": "patch",
    "DELETE": "delete",
}
_INSTANCE = {
    "GET": "read",
    "HEAD": "read",
    "PUT": "update",
    "PATCH": "patch",
    "DELETE": "delete",
}
_SURFACES = {
    "auth": "auth",
    "portal": "portal",
    "waitlist": "waitlist-offer",
    "healthz": "health",
    "readyz": "health",
    "metrics": "metrics",
}
NO_OPERATIONS: frozenset[str] = frozenset()


def labels_of(
    method: str, path: str, operations: Container[str] = NO_OPERATIONS, bundle: str = ""
) -> tuple[str, str, str]:
    """`(interaction, type, operation)` of a request by its method and path (module
    docstring); `bundle` is the type of a Bundle posted to the base (`transaction`/`batch`).
    Unknown resource types and operations are labelled `other`."""
    if path != FHIR and not path.startswith(FHIR + "/"):
        head = path.strip("/").split("/", 1)[0]
        return _SURFACES.get(head, "other"), "", ""
    parts = [p for p in path[len(FHIR) :].split("/") if p]
    if not parts:
        known = bundle in ("transaction", "batch") and method == "POST"
        return (bundle if known else "other"), "", ""
    head = parts[0]
    if head == "metadata":
        return "capabilities", "", ""
    if head == "_history":
        return "history-system", "", ""
    if head.startswith("$"):
        return "operation", "", _operation(head, operations)
    if not is_resource_type(head):
        return "other", "other", ""
    if len(parts) == 1:
        return _TYPE_LEVEL.get(method, "other"), head, ""
    second = parts[1]
    if len(parts) == 2:
        if second == "_search":
            return "search-type", head, ""
        if second == "_history":
            return "history-type", head, ""
        if second.startswith("$"):
            return "operation", head, _operation(second, operations)
        return _INSTANCE.get(method, "other"), head, ""
    third = parts[2]
    if third == "_history":
        return ("history-instance" if len(parts) == 3 else "vread"), head, ""
    if third.startswith("$"):
        return "operation", head, _operation(third, operations)
    if len(parts) == 3 and is_resource_type(third):
        return "search-compartment", third, ""
    return "other", head, ""


def _operation(word: str, operations: Container[str]) -> str:
    return word if word[1:] in operations else "other"


def started() -> None:
    """A request began (the in-progress gauge)."""
    IN_PROGRESS.inc()


def observe(scope: Scope, status: int, seconds: float) -> None:
    """Count a finished request: its labels (`labels_of`), status and latency (s)."""
    IN_PROGRESS.dec()
    WORKER_REQUESTS.inc()
    state: dict[str, Any] = scope.get("state") or {}
    app = scope.get("app")
    interactions = getattr(getattr(app, "state", None), "interactions", None)
    operations = getattr(interactions, "operations", NO_OPERATIONS)
    labels = labels_of(
        str(scope.get("method")), str(scope.get("path")), operations, state.get("bundle", "")
    )
    key = (*labels, status)
    children = _CHILDREN.get(key)
    if children is None:  # `labels()` validates and locks: once per label set, not per request
        children = _CHILDREN[key] = (REQUESTS.labels(*labels, str(status)), LATENCY.labels(*labels))
    children[0].inc()
    children[1].observe(seconds)


_CHILDREN: dict[tuple[str, str, str, int], tuple[Any, Any]] = {}
"""The metric children of each label set seen (bounded: labels are names, never values)."""


class _Outbox(Collector):
    """The outbox gauges, measured just before this scrape."""

    def __init__(self, events: int, lag_seconds: float) -> None:
        self.events, self.lag_seconds = events, lag_seconds

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "fhir_outbox_events",
            "Events the Subscription dispatcher has not looked at yet.",
            value=self.events,
        )
        yield GaugeMetricFamily(
            "fhir_outbox_lag_seconds",
            "Age of the oldest event the Subscription dispatcher has not looked at (s).",
            value=self.lag_seconds,
        )


class _Local(Collector):
    """This process's own registry (one worker)."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


def metrics_routes(enabled: Callable[[], bool]) -> list[Route]:
    """`GET /metrics` (404 `not-found` OperationOutcome while `enabled()` is false)."""

    async def metrics(request: Request) -> Response:
        if not enabled():
            why = "Metrics are turned off on this server (FHIR_SERVER_METRICS)"
            return outcome_response(404, [Issue(code="not-found", diagnostics=why)], None, request)
        registry = CollectorRegistry()
        if MULTIPROCESS:
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        else:
            registry.register(_Local())
        repositories: RepositoryFactory = request.app.state.repositories
        registry.register(_Outbox(*await outbox(repositories.for_server("metrics"))))
        return Response(
            generate_latest(registry),
            media_type=CONTENT_TYPE_LATEST,
            headers={"Cache-Control": "no-store"},
        )

    return [Route("/metrics", metrics, methods=["GET"])]
