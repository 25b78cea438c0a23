"""R4 Subscriptions on the rest-hook channel, end to end: the real server (uvicorn on
127.0.0.1, SQLite file) and a real HTTP receiver (`receiver.py`).

Every matching change arrives, in order, with the channel's headers; a receiver that fails
first, or is down across a server restart, still gets every event, in order, none lost; a
Subscription whose deliveries keep failing past the retry window turns `error`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import LiveServer, make_settings
from tests.subscriptions.helpers import FAST, http_of, wait_status
from tests.subscriptions.receiver import Receiver


def subscription(endpoint: str, criteria: str, **channel: Any) -> dict[str, Any]:
    return {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "test",
        "criteria": criteria,
        "channel": {"type": "rest-hook", "endpoint": endpoint, **channel},
    }


def patient(family: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "name": [{"family": family}]}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    with LiveServer(make_settings(tmp_path, **FAST), with_base=True) as s:
        yield s


def test_rest_hook_payload_puts_each_matching_change_in_order_with_headers(
    server: LiveServer, receiver: Receiver
) -> None:
    with http_of(server) as http:
        sub = subscription(
            receiver.url,
            "Patient?family=Rider",
            payload="application/fhir+json",
            header=["Authorization: Bearer hook-secret"],
        )
        created = http.post("/Subscription", json=sub)
        assert created.status_code == 201, created.text
        sub_id = created.json()["id"]
        wait_status(http, sub_id, "active")
        rider = http.post("/Patient", json=patient("Rider")).json()
        http.post("/Patient", json=patient("Other"))
        moved = {**rider, "name": [{"family": "Rider", "given": ["Ann"]}]}
        assert http.put(f"/Patient/{rider['id']}", json=moved).status_code == 200
        assert http.delete(f"/Patient/{rider['id']}").status_code in (200, 204)
        got = receiver.wait_for(3)
    path = f"/hook/Patient/{rider['id']}"
    assert [(r.method, r.path) for r in got] == [("PUT", path), ("PUT", path), ("DELETE", path)]
    assert all(r.headers.get("Authorization") == "Bearer hook-secret" for r in got)
    assert got[0].headers["Content-Type"] == "application/fhir+json"

    versions = [orjson.loads(r.body)["meta"]["versionId"] for r in got[:2]]
    assert versions == ["1", "2"]
    time.sleep(0.3)
    assert len(receiver.requests) == 3  # the other Patient never matched


def test_rest_hook_without_payload_posts_an_empty_body(
    server: LiveServer, receiver: Receiver
) -> None:
    with http_of(server) as http:
        sub_id = http.post("/Subscription", json=subscription(receiver.url, "Patient")).json()["id"]
        wait_status(http, sub_id, "active")
        http.post("/Patient", json=patient("Any"))
        [got] = receiver.wait_for(1)
    assert (got.method, got.path, got.body) == ("POST", "/hook", b"")


def test_rest_hook_failing_first_deliveries_still_get_every_event_in_order(
    server: LiveServer,
) -> None:
    receiver = Receiver(fail_first=3).start()
    try:
        with http_of(server) as http:
            sub = subscription(receiver.url, "Patient", payload="application/fhir+json")
            sub_id = http.post("/Subscription", json=sub).json()["id"]
            wait_status(http, sub_id, "active")
            ids = [http.post("/Patient", json=patient(f"P{i}")).json()["id"] for i in range(5)]
            got = receiver.wait_for(5)
    finally:
        receiver.stop()
    assert receiver.failed == 3
    assert [r.path.rsplit("/", 1)[1] for r in got] == ids


def test_rest_hook_endpoint_down_across_a_server_restart_loses_nothing(tmp_path: Path) -> None:
    receiver = Receiver()  # not started: connections are refused
    settings = make_settings(tmp_path, **FAST)
    with LiveServer(settings) as first, http_of(first) as http:
        sub = subscription(receiver.url, "Patient", payload="application/fhir+json")
        sub_id = http.post("/Subscription", json=sub).json()["id"]
        wait_status(http, sub_id, "active")
        ids = [http.post("/Patient", json=patient(f"R{i}")).json()["id"] for i in range(4)]
        time.sleep(0.3)  # deliveries fail meanwhile
    receiver.start()
    try:
        with LiveServer(settings) as second, http_of(second) as http:
            ids.append(http.post("/Patient", json=patient("After")).json()["id"])
            got = receiver.wait_for(5)
            time.sleep(0.3)
    finally:
        receiver.stop()
    assert [r.path.rsplit("/", 1)[1] for r in receiver.requests] == ids
    assert len(got) == 5


def test_rest_hook_failing_past_the_retry_window_turns_error(tmp_path: Path) -> None:
    receiver = Receiver(fail_first=1_000_000).start()
    settings = make_settings(tmp_path, subscription_retry_hours=0.5 / 3600, **FAST)
    try:
        with LiveServer(settings) as server, http_of(server) as http:
            sub_id = http.post("/Subscription", json=subscription(receiver.url, "Patient")).json()[
                "id"
            ]
            wait_status(http, sub_id, "active")
            http.post("/Patient", json=patient("X"))
            failed = wait_status(http, sub_id, "error")
    finally:
        receiver.stop()
    assert "HTTP 500" in failed["error"]
    assert receiver.failed >= 2


@pytest.mark.parametrize(
    ("criteria", "endpoint", "expected"),
    [
        ("Patient", "http://example.org/hook", "must use https"),
        ("Patient", "https://10.1.2.3/hook", "private"),
        ("Patient", "https://169.254.169.254/latest", "private"),
        ("Patient", "https://[fd00::1]/hook", "private"),
        ("Patient", "https://192.168.1.10/hook", "private"),
        ("Patient", "ftp://127.0.0.1/hook", "http(s) URL"),
        ("Appointment?patient.name=x", "http://127.0.0.1:9/hook", "chained"),
        ("Nonsense?x=1", "http://127.0.0.1:9/hook", "resource type"),
        ("Patient?_sort=name", "http://127.0.0.1:9/hook", "_sort"),
        ("Patient?bogus=1", "http://127.0.0.1:9/hook", "bogus"),
    ],
)
def test_subscription_refused_criteria_or_endpoint_is_400_and_stores_nothing(
    server: LiveServer, criteria: str, endpoint: str, expected: str
) -> None:
    with http_of(server) as http:
        answer = http.post("/Subscription", json=subscription(endpoint, criteria))
        assert answer.status_code == 400, answer.text
        outcome = answer.json()
        assert outcome["resourceType"] == "OperationOutcome"
        assert expected in outcome["issue"][0]["diagnostics"]
        assert http.get("/Subscription").json().get("total", 0) == 0


def test_every_write_path_checks_the_endpoint(server: LiveServer, receiver: Receiver) -> None:
    """Transaction and batch entries, PUT and PATCH go through the same rules as POST."""
    bad = subscription("https://10.0.0.7/hook", "Patient")
    with http_of(server) as http:
        transaction = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {"resource": patient("Tx"), "request": {"method": "POST", "url": "Patient"}},
                {"resource": bad, "request": {"method": "POST", "url": "Subscription"}},
            ],
        }
        refused = http.post("/", json=transaction)
        assert refused.status_code == 400, refused.text
        assert http.get("/Patient", params={"family": "Tx"}).json().get("total", 0) == 0
        batch = {**transaction, "type": "batch"}
        answers = http.post("/", json=batch).json()["entry"]
        assert [e["response"]["status"][:3] for e in answers] == ["201", "400"]
        good = http.post("/Subscription", json=subscription(receiver.url, "Patient")).json()
        assert (
            http.put(f"/Subscription/{good['id']}", json={**bad, "id": good["id"]}).status_code
            == 400
        )
        patch = [
            {"op": "replace", "path": "/channel/endpoint", "value": "https://169.254.169.254/x"}
        ]
        patched = http.patch(
            f"/Subscription/{good['id']}",
            content=orjson.dumps(patch),
            headers={"Content-Type": "application/json-patch+json"},
        )
        assert patched.status_code == 400, patched.text
        assert http.get(f"/Subscription/{good['id']}").json()["channel"]["endpoint"] == receiver.url


def test_two_server_processes_deliver_each_event_once_and_hand_over(
    tmp_path: Path, receiver: Receiver
) -> None:
    """Two servers on one database: the lease lets one dispatch; when it stops, the other
    takes over and resumes where it stopped; no event twice, none lost, in order."""
    settings = make_settings(tmp_path, **FAST)
    first, second = LiveServer(settings, with_base=True), LiveServer(settings, with_base=True)
    with second, http_of(second) as http:
        with first:
            sub = subscription(receiver.url, "Patient", payload="application/fhir+json")
            sub_id = http.post("/Subscription", json=sub).json()["id"]
            wait_status(http, sub_id, "active")
            ids = [http.post("/Patient", json=patient(f"W{i}")).json()["id"] for i in range(6)]
            receiver.wait_for(6)
        ids += [http.post("/Patient", json=patient(f"V{i}")).json()["id"] for i in range(3)]
        receiver.wait_for(9, timeout=20)
        time.sleep(0.5)
    assert [r.path.rsplit("/", 1)[1] for r in receiver.requests] == ids
