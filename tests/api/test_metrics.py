"""`/metrics` (Prometheus text, prometheus_client's parser reads it back): requests labelled by
FHIR interaction, bookings, cancellations, double-booking refusals and expired holds counted
on every path, the outbox gauges read from the database; nothing user-typed becomes a
label. The multi-process sum is tested in tests/e2e/test_workers.py."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from fhir_server.api.metrics_endpoint import labels_of
from fhir_server.repository import RepositoryFactory
from operations.subscriptions.dispatch_loop import outbox
from operations.subscriptions.dispatcher import STATE
from tests.conftest import LiveServer, make_settings
from tests.smart.flows import parameters

OPS = {"book", "hold", "find-slots", "validate"}


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/fhir/metadata", ("capabilities", "", "")),
        ("GET", "/fhir/Patient/1", ("read", "Patient", "")),
        ("HEAD", "/fhir/Patient/1", ("read", "Patient", "")),
        ("PUT", "/fhir/Patient/1", ("update", "Patient", "")),
        ("PATCH", "/fhir/Patient/1", ("patch", "Patient", "")),
        ("DELETE", "/fhir/Patient/1", ("delete", "Patient", "")),
        ("GET", "/fhir/Patient/1/_history/2", ("vread", "Patient", "")),
        ("GET", "/fhir/Patient/1/_history", ("history-instance", "Patient", "")),
        ("GET", "/fhir/Patient/_history", ("history-type", "Patient", "")),
        ("GET", "/fhir/_history", ("history-system", "", "")),
        ("GET", "/fhir/Slot", ("search-type", "Slot", "")),
        ("POST", "/fhir/Slot/_search", ("search-type", "Slot", "")),
        ("POST", "/fhir/Patient", ("create", "Patient", "")),
        ("DELETE", "/fhir/Patient", ("delete", "Patient", "")),
        ("GET", "/fhir/Patient/1/Appointment", ("search-compartment", "Appointment", "")),
        ("POST", "/fhir/Appointment/$book", ("operation", "Appointment", "$book")),
        ("POST", "/fhir/Appointment/1/$hold", ("operation", "Appointment", "$hold")),
        ("POST", "/fhir/$validate", ("operation", "", "$validate")),
        ("POST", "/fhir/Appointment/$made-up-1", ("operation", "Appointment", "other")),
        ("GET", "/fhir/NotAType/1", ("other", "other", "")),
        ("GET", "/fhir", ("other", "", "")),
        ("POST", "/auth/token", ("auth", "", "")),
        ("GET", "/portal/app.css", ("portal", "", "")),
        ("GET", "/readyz", ("health", "", "")),
        ("GET", "/waitlist/offers/abc", ("waitlist-offer", "", "")),
        ("GET", "/anything-else", ("other", "", "")),
    ],
)
def test_labels_are_fhir_interaction_names_and_never_user_words(
    method: str, path: str, expected: tuple[str, str, str]
) -> None:
    assert labels_of(method, path, OPS) == expected


def test_a_bundle_posted_to_the_base_is_a_transaction_or_a_batch() -> None:
    assert labels_of("POST", "/fhir", OPS, "transaction") == ("transaction", "", "")
    assert labels_of("POST", "/fhir/", OPS, "batch") == ("batch", "", "")
    assert labels_of("POST", "/fhir", OPS, "made-up") == ("other", "", "")


def _scrape(server: LiveServer) -> dict[str, float]:
    origin = server.base_url.rsplit("/fhir", 1)[0]
    response = httpx.get(f"{origin}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    out = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            out[sample.name + (f"{{{labels}}}" if labels else "")] = sample.value
    return out


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    with LiveServer(make_settings(tmp_path, hold_seconds=1), with_base=True) as s:
        yield s


def _visit(patient: str, hour: int) -> dict[str, object]:
    return {
        "resourceType": "Appointment",
        "status": "proposed",
        "start": f"2031-05-06T{hour:02d}:00:00Z",
        "end": f"2031-05-06T{hour:02d}:30:00Z",
        "participant": [
            {"actor": {"reference": f"Patient/{patient}"}, "status": "accepted"},
            {"actor": {"reference": "PractitionerRole/m-role"}, "status": "accepted"},
        ],
    }


def test_bookings_refusals_cancellations_and_expired_holds_are_counted(
    server: LiveServer,
) -> None:
    before = _scrape(server)
    role = {
        "resourceType": "PractitionerRole",
        "id": "m-role",
        "availableTime": [{"availableStartTime": "08:00:00", "availableEndTime": "18:00:00"}],
    }
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        assert http.put("/PractitionerRole/m-role", json=role).is_success
        sched = {
            "resourceType": "Schedule",
            "id": "m-s",
            "actor": [{"reference": "PractitionerRole/m-role"}],
        }
        assert http.put("/Schedule/m-s", json=sched).is_success
        for p in ("m1", "m2", "m3"):
            assert http.put(f"/Patient/{p}", json={"resourceType": "Patient", "id": p}).is_success
        booked = http.post("/Appointment/$book", json=parameters(_visit("m1", 9)))
        assert booked.status_code == 200, booked.text
        taken = http.post("/Appointment/$book", json=parameters(_visit("m2", 9)))
        assert taken.status_code == 409
        # a REST booking counts as well, and a REST cancellation
        rest = http.post("/Appointment", json={**_visit("m2", 10), "status": "booked"})
        assert rest.status_code == 201, rest.text
        cancelled = {**rest.json(), "status": "cancelled"}
        assert http.put(f"/Appointment/{cancelled['id']}", json=cancelled).status_code == 200
        held = http.post("/Appointment/$hold", json=parameters(_visit("m3", 11)))
        assert held.status_code == 200, held.text
        http.get("/Appointment/$made-up-operation")  # 404, labelled `other`
    deadline = time.monotonic() + 15
    while True:
        after = _scrape(server)
        if after.get("fhir_holds_expired_total", 0) > before.get("fhir_holds_expired_total", 0):
            break
        assert time.monotonic() < deadline, "the expired hold was not counted"
        time.sleep(0.2)

    def grew(name: str) -> float:
        return after.get(name, 0) - before.get(name, 0)

    assert grew("fhir_appointments_booked_total") == 2
    assert grew("fhir_appointments_cancelled_total") == 2  # by REST, and the expired hold
    assert grew("fhir_holds_expired_total") == 1
    assert grew('fhir_double_booking_refusals_total{detail="slot-unavailable"}') == 1
    book = 'interaction="operation",operation="$book",type="Appointment"'
    assert grew(f'fhir_requests_total{{code="200",{book}}}') == 1
    assert grew(f'fhir_requests_total{{code="409",{book}}}') == 1
    assert grew(f"fhir_request_duration_seconds_count{{{book}}}") == 2
    other = 'fhir_requests_total{code="404",interaction="operation",operation="other",'
    assert grew(other + 'type="Appointment"}') == 1
    assert not any("made-up" in name for name in after)
    assert after["fhir_outbox_events"] == 0 and after["fhir_outbox_lag_seconds"] == 0


def test_metrics_can_be_turned_off(tmp_path: Path) -> None:
    with LiveServer(make_settings(tmp_path, metrics=False)) as server:
        origin = server.base_url.rsplit("/fhir", 1)[0]
        answer = httpx.get(f"{origin}/metrics")
        assert answer.status_code == 404
        outcome = answer.json()
        assert outcome["resourceType"] == "OperationOutcome"
        assert outcome["issue"][0]["code"] == "not-found"
        assert "FHIR_SERVER_METRICS" in outcome["issue"][0]["diagnostics"]


async def test_outbox_counts_events_behind_the_slowest_live_subscription(
    factory: RepositoryFactory,
) -> None:
    repo = factory.for_job("test")
    assert await outbox(repo) == (0, 0.0)  # no live Subscription: nothing waits
    sub = {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "test",
        "criteria": "Patient?",
        "channel": {"type": "rest-hook", "endpoint": "http://127.0.0.1:9/hook"},
    }
    made = await repo.create(sub)
    await repo.lookup.seal_events()  # as the dispatcher does before it reads the cursor
    latest = await repo.lookup.latest_event()
    await repo.records.put_record(STATE, made.stored.id, {"cursor": latest})
    assert await outbox(repo) == (0, 0.0)
    first = await repo.create({"resourceType": "Patient"})
    for _ in range(2):
        await repo.create({"resourceType": "Patient"})
    at = first.stored.last_updated + 2_000_000
    assert await outbox(repo, now=at) == (3, 2.0)
