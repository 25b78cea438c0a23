"""Topic-based Subscriptions (Subscriptions R5 Backport IG STU 1.1, R4 form) on rest-hook,
end to end: the real server and a real HTTP receiver.

The handshake comes first and turns the Subscription `active`; event notifications are
`history` Bundles with the status Parameters first, numbered 1, 2, ... per Subscription;
payload content levels shape the entries; `schedule-availability` fires for the Schedule
whose free time changed and only for it; heartbeats arrive; `$status` and `$events` report
and replay; a refused handshake turns the Subscription `error`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import LiveServer, make_settings
from tests.subscriptions.helpers import (
    APPOINTMENT_CHANGE,
    FAST,
    SCHEDULE_AVAILABILITY,
    appointment,
    http_of,
    seed_clinic,
    status_of,
    topic_subscription,
    wait_status,
)
from tests.subscriptions.receiver import Receiver

DAY = "2026-12-07"


def at(hhmm: str) -> str:
    return f"{DAY}T{hhmm}:00Z"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    with LiveServer(make_settings(tmp_path, **FAST), with_base=True) as s, http_of(s) as http:
        seed_clinic(http)
        yield s


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


def bundles(receiver: Receiver, n: int) -> list[dict[str, Any]]:
    return [orjson.loads(r.body) for r in receiver.wait_for(n)]


def test_appointment_change_handshake_then_numbered_full_resource_notifications(
    server: LiveServer, receiver: Receiver
) -> None:
    with http_of(server) as http:
        sub = topic_subscription(
            APPOINTMENT_CHANGE,
            ["Appointment?patient=Patient/pat"],
            endpoint=receiver.url,
            content="full-resource",
        )
        sub_id = http.post("/Subscription", json=sub).json()["id"]
        wait_status(http, sub_id, "active")
        mine = http.post(
            "/Appointment",
            json=appointment(at("09:00"), at("09:30"), "PractitionerRole/dr", "Patient/pat"),
        )
        assert mine.status_code == 201, mine.text
        other = appointment(at("10:00"), at("10:30"), "PractitionerRole/dr", "Patient/pat2")
        assert http.post("/Appointment", json=other).status_code == 201
        cancelled = {**mine.json(), "status": "cancelled"}
        assert http.put(f"/Appointment/{mine.json()['id']}", json=cancelled).status_code == 200
        got = bundles(receiver, 3)
        time.sleep(0.3)
    assert len(receiver.requests) == 3  # Patient/pat2's booking is filtered out
    assert all(r.headers["Content-Type"] == "application/fhir+json" for r in receiver.requests)
    handshake, booked, cancel = (status_of(b) for b in got)
    assert (
        handshake["type"],
        handshake["status"],
        handshake["events-since-subscription-start"],
    ) == ("handshake", "requested", "0")
    assert handshake["subscription"]["reference"].endswith(f"/Subscription/{sub_id}")
    assert booked["type"] == "event-notification" and booked["topic"] == APPOINTMENT_CHANGE
    assert [e["event-number"] for e in booked["notification-event"]] == ["1"]
    assert [e["event-number"] for e in cancel["notification-event"]] == ["2"]
    assert cancel["events-since-subscription-start"] == "2"
    appt_id = mine.json()["id"]
    assert booked["notification-event"][0]["focus"]["reference"].endswith(f"/Appointment/{appt_id}")
    assert got[1]["entry"][1]["resource"]["status"] == "booked"
    assert got[2]["entry"][1]["resource"]["status"] == "cancelled"
    assert got[2]["entry"][1]["request"] == {"method": "PUT", "url": f"Appointment/{appt_id}"}


@pytest.mark.parametrize("content", ["empty", "id-only"])
def test_payload_content_levels_shape_the_bundle(
    server: LiveServer, receiver: Receiver, content: str
) -> None:
    with http_of(server) as http:
        sub = topic_subscription(APPOINTMENT_CHANGE, [], endpoint=receiver.url, content=content)
        sub_id = http.post("/Subscription", json=sub).json()["id"]
        wait_status(http, sub_id, "active")
        http.post(
            "/Appointment",
            json=appointment(at("09:00"), at("09:30"), "PractitionerRole/dr", "Patient/pat"),
        )
        _, event = bundles(receiver, 2)
    status = status_of(event)
    if content == "empty":
        assert len(event["entry"]) == 1
        assert "topic" not in status
        assert "focus" not in status["notification-event"][0]
    else:
        [entry] = event["entry"][1:]
        assert "resource" not in entry and entry["request"]["method"] == "POST"
        assert status["notification-event"][0]["focus"]["reference"].endswith(
            entry["request"]["url"] + "/" + entry["fullUrl"].rsplit("/", 1)[1]
        )


def test_schedule_availability_fires_for_the_schedule_whose_free_time_changed(
    server: LiveServer, receiver: Receiver
) -> None:
    with http_of(server) as http:
        sub = topic_subscription(
            SCHEDULE_AVAILABILITY, ["schedule=Schedule/s-dr"], endpoint=receiver.url
        )
        sub_id = http.post("/Subscription", json=sub).json()["id"]
        wait_status(http, sub_id, "active")
        other = appointment(at("09:00"), at("09:30"), "PractitionerRole/dr2", "Patient/pat")
        assert http.post("/Appointment", json=other).status_code == 201  # s-dr2 only
        booked = http.post(
            "/Appointment",
            json=appointment(at("10:00"), at("10:30"), "PractitionerRole/dr", "Patient/pat2"),
        )
        assert booked.status_code == 201
        noted = {**booked.json(), "comment": "bring the forms"}  # no change of free time
        assert http.put(f"/Appointment/{booked.json()['id']}", json=noted).status_code == 200
        schedule = http.get("/Schedule/s-dr").json()
        schedule["comment"] = "hours changed"
        assert http.put("/Schedule/s-dr", json=schedule).status_code == 200
        got = bundles(receiver, 3)
        time.sleep(0.3)
    assert len(receiver.requests) == 3
    focuses = [status_of(b)["notification-event"][0]["focus"]["reference"] for b in got[1:]]
    assert all(f.endswith("/Schedule/s-dr") for f in focuses)


def test_status_and_events_report_and_replay_by_event_number(
    server: LiveServer, receiver: Receiver
) -> None:
    with http_of(server) as http:
        sub = topic_subscription(APPOINTMENT_CHANGE, [], endpoint=receiver.url, content="id-only")
        sub_id = http.post("/Subscription", json=sub).json()["id"]
        wait_status(http, sub_id, "active")
        ids = [
            http.post(
                "/Appointment",
                json=appointment(
                    at(t), at(t.replace(":00", ":20")), "PractitionerRole/dr", "Patient/pat"
                ),
            ).json()["id"]
            for t in ("09:00", "10:00", "11:00")
        ]
        bundles(receiver, 4)
        status = http.get(f"/Subscription/{sub_id}/$status")
        assert status.status_code == 200, status.text
        [entry] = status.json()["entry"]
        params = {p["name"]: p for p in entry["resource"]["parameter"]}
        assert params["type"]["valueCode"] == "query-status"
        assert params["events-since-subscription-start"]["valueString"] == "3"
        assert params["status"]["valueCode"] == "active"
        replay = http.get(
            f"/Subscription/{sub_id}/$events",
            params={"eventsSinceNumber": "2", "content": "full-resource"},
        )
        assert replay.status_code == 200, replay.text
        body = replay.json()
        typed = http.get("/Subscription/$status", params={"status": "active"}).json()
        bad = http.get(f"/Subscription/{sub_id}/$events", params={"eventsSinceNumber": "two"})
    replayed = status_of(body)
    assert replayed["type"] == "query-event"
    assert [e["event-number"] for e in replayed["notification-event"]] == ["2", "3"]
    assert [e["resource"]["id"] for e in body["entry"][1:]] == ids[1:]
    assert typed["total"] == 1
    assert bad.status_code == 400
    assert bad.json()["resourceType"] == "OperationOutcome"


def test_heartbeats_arrive_when_nothing_happens(server: LiveServer, receiver: Receiver) -> None:
    with http_of(server) as http:
        sub = topic_subscription(APPOINTMENT_CHANGE, [], endpoint=receiver.url, heartbeat=1)
        sub_id = http.post("/Subscription", json=sub).json()["id"]
        wait_status(http, sub_id, "active")
        got = bundles(receiver, 3)
    assert [status_of(b)["type"] for b in got] == ["handshake", "heartbeat", "heartbeat"]
    assert got[2 - 1]["entry"][0]["resource"]["parameter"][0]["name"] == "subscription"
    assert receiver.requests[2].at - receiver.requests[1].at >= 0.9


def test_refused_handshake_turns_the_subscription_error(server: LiveServer) -> None:
    down = Receiver()  # never started: the handshake cannot be delivered
    with http_of(server) as http:
        sub = topic_subscription(APPOINTMENT_CHANGE, [], endpoint=down.url)
        sub_id = http.post("/Subscription", json=sub).json()["id"]
        failed = wait_status(http, sub_id, "error")
    assert "handshake" in failed["error"]


@pytest.mark.parametrize(
    ("criteria", "filters", "expected"),
    [
        (APPOINTMENT_CHANGE.replace("appointment-change", "nope"), [], "unknown SubscriptionTopic"),
        (APPOINTMENT_CHANGE, ["Appointment?service-type=x"], "not offered"),
        (APPOINTMENT_CHANGE, ["Schedule?actor=x"], "filters Appointment"),
        (SCHEDULE_AVAILABILITY, ["schedule=Practitioner/x"], "not a Schedule"),
    ],
)
def test_unknown_topic_or_filter_is_400(
    server: LiveServer, criteria: str, filters: list[str], expected: str
) -> None:
    with http_of(server) as http:
        answer = http.post(
            "/Subscription",
            json=topic_subscription(criteria, filters, endpoint="http://127.0.0.1:9/x"),
        )
    assert answer.status_code == 400, answer.text
    assert expected in answer.json()["issue"][0]["diagnostics"]


def test_capability_statement_and_topics_are_published(server: LiveServer) -> None:
    with http_of(server) as http:
        statement = http.get("/metadata").json()
        topic = http.get("/SubscriptionTopic/appointment-change")
        listed = http.get("/SubscriptionTopic").json()
    [sub] = [r for r in statement["rest"][0]["resource"] if r["type"] == "Subscription"]
    assert {e["valueCanonical"] for e in sub["extension"]} == {
        APPOINTMENT_CHANGE,
        SCHEDULE_AVAILABILITY,
    }
    assert {o["name"] for o in sub["operation"]} >= {"status", "events", "get-ws-binding-token"}
    assert any(e["valueUri"].endswith("/websocket") for e in statement["rest"][0]["extension"])
    assert topic.status_code == 200 and topic.json()["url"] == APPOINTMENT_CHANGE
    assert {e["resource"]["url"] for e in listed["entry"]} == {
        APPOINTMENT_CHANGE,
        SCHEDULE_AVAILABILITY,
    }


def test_schedule_availability_fires_for_a_booking_that_names_only_a_stored_slot(
    server: LiveServer, receiver: Receiver
) -> None:
    with http_of(server) as http:
        slot = {
            "resourceType": "Slot",
            "id": "room-slot",
            "schedule": {"reference": "Schedule/s-room"},
            "status": "free",
            "start": at("10:00"),
            "end": at("10:30"),
        }
        assert http.put("/Slot/room-slot", json=slot).status_code == 201
        sub = topic_subscription(
            SCHEDULE_AVAILABILITY, ["schedule=Schedule/s-room"], endpoint=receiver.url
        )
        sub_id = http.post("/Subscription", json=sub).json()["id"]
        wait_status(http, sub_id, "active")
        booking = {
            "resourceType": "Appointment",
            "status": "booked",
            "start": at("10:00"),
            "end": at("10:30"),
            "slot": [{"reference": "Slot/room-slot"}],
            "participant": [{"actor": {"reference": "Patient/pat3"}, "status": "accepted"}],
        }
        assert http.post("/Appointment", json=booking).status_code == 201
        _, event = bundles(receiver, 2)
    focus = status_of(event)["notification-event"][0]["focus"]["reference"]
    assert focus.endswith("/Schedule/s-room")
