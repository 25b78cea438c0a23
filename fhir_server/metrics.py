"""The server's Prometheus metrics (prometheus_client), defined once and counted where each
event happens in one place every path goes through:

- `fhir_requests_total{interaction,type,operation,code}` (counter),
  `fhir_request_duration_seconds{interaction,type,operation}` (histogram),
  `fhir_requests_in_progress` (gauge, summed over live workers) and
  `fhir_worker_requests{pid}` (gauge per live worker): `api.request_log.RequestLog`,
  around every HTTP request (labels: `api.metrics_endpoint.labels_of`);
- `fhir_appointments_booked_total`, `fhir_appointments_cancelled_total`: `repository.commit`,
  for each committed Appointment version that becomes booked / cancelled, on any path;
- `fhir_double_booking_refusals_total{detail}`: `repository.commit`, a write refused because
  its time was taken (`slot-unavailable`, `patient-conflict`);
- `fhir_holds_expired_total`: `operations.scheduling.holds`, the sweeper cancelling a hold;
- `fhir_reminder_lateness_seconds` (histogram): `operations.reminders.sender`, sent minus due;
- `fhir_outbox_events`, `fhir_outbox_lag_seconds` (gauges): read from the database at each
  scrape (`api.metrics_endpoint`).

Several worker processes (`fhir-server serve --workers N`): `serve` points
`PROMETHEUS_MULTIPROC_DIR` at a fresh folder before the workers start; each writes its
values there and a scrape of any worker adds them up (prometheus_client's multiprocess
mode): counters and histograms summed over all workers that ever ran, the in-progress gauge
over live ones, the per-worker gauge labelled by pid. One process: the default registry.

Labels carry only interaction names, resource types, operation names, status codes and
pids, never an id, a name or a token. Path words that are not a known resource type or
operation become `other`, so a client cannot grow the label sets.
"""

from __future__ import annotations

import os

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "BOOKINGS",
    "CANCELLATIONS",
    "DOUBLE_BOOKING_REFUSALS",
    "HOLDS_EXPIRED",
    "IN_PROGRESS",
    "LATENCY",
    "MULTIPROCESS",
    "REMINDER_LATENESS",
    "REQUESTS",
    "WORKER_REQUESTS",
]

MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
"""Whether this process writes its values for a multiprocess scrape (read once, at import,
as prometheus_client does)."""

REQUESTS = Counter(
    "fhir_requests",
    "HTTP requests answered, by FHIR interaction, resource type, operation and status code.",
    ["interaction", "type", "operation", "code"],
)
LATENCY = Histogram(
    "fhir_request_duration_seconds",
    "Time from the request's arrival to its last response byte (s).",
    ["interaction", "type", "operation"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
IN_PROGRESS = Gauge(
    "fhir_requests_in_progress",
    "Requests being answered now (all live workers).",
    multiprocess_mode="livesum",
)
WORKER_REQUESTS = Gauge(
    "fhir_worker_requests",
    "Requests answered by each live worker process since it started.",
    multiprocess_mode="liveall",
)
BOOKINGS = Counter(
    "fhir_appointments_booked",
    "Appointment versions that became booked (REST, transaction, batch or $book).",
)
CANCELLATIONS = Counter(
    "fhir_appointments_cancelled",
    "Appointment versions that became cancelled (including expired holds).",
)
DOUBLE_BOOKING_REFUSALS = Counter(
    "fhir_double_booking_refusals",
    "Writes refused with 409 because the time was taken (SCHEDULING.md Never double-book).",
    ["detail"],
)
HOLDS_EXPIRED = Counter(
    "fhir_holds_expired",
    "Holds the sweeper cancelled because their hold-expires had passed.",
)
REMINDER_LATENESS = Histogram(
    "fhir_reminder_lateness_seconds",
    "How late a reminder or notice was sent: sent minus its occurrenceDateTime (s).",
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200),
)
