"""The websocket and email channels, end to end: the real server, a real websocket client
(`websockets`) and a real SMTP server (`aiosmtpd` on 127.0.0.1).

R4 `bind {id}` answers `bound {id}` and sends `ping {id}` per event; the Backport IG's
`$get-ws-binding-token` + `bind-with-token` sends a handshake Bundle, then event-notification
Bundles numbered like every other channel; email notifications arrive as messages whose
Message-ID names the Subscription and event number, with the notification attached when the
payload asks for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiosmtpd.controller import Controller
from websockets.sync.client import connect

from tests.conftest import LiveServer, _free_port, make_settings
from tests.subscriptions.helpers import (
    APPOINTMENT_CHANGE,
    FAST,
    appointment,
    http_of,
    seed_clinic,
    status_of,
    topic_subscription,
    wait_status,
)
from tests.subscriptions.receiver import Mailbox

DAY = "2026-12-07"


def at(hhmm: str) -> str:
    return f"{DAY}T{hhmm}:00Z"


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    port = _free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield box, port
    controller.stop()


@pytest.fixture
def server(tmp_path: Path, mailbox: tuple[Mailbox, int]) -> Iterator[LiveServer]:
    smtp = f"smtp://127.0.0.1:{mailbox[1]}"
    settings = make_settings(tmp_path, smtp_url=smtp, mail_from="fhir@clinic.test", **FAST)
    with LiveServer(settings, with_base=True) as s, http_of(s) as http:
        seed_clinic(http)
        yield s


def ws_url(server: LiveServer) -> str:
    return f"ws://127.0.0.1:{server.port}/websocket"


def book(http: Any, hhmm: str, patient: str = "Patient/pat") -> str:
    end = hhmm[:3] + "20"
    r = http.post(
        "/Appointment", json=appointment(at(hhmm), at(end), "PractitionerRole/dr", patient)
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def test_websocket_r4_bind_answers_bound_and_pings_per_event(server: LiveServer) -> None:
    with http_of(server) as http:
        sub = {
            "resourceType": "Subscription",
            "status": "requested",
            "reason": "test",
            "criteria": "Appointment?patient=Patient/pat",
            "channel": {"type": "websocket"},
        }
        sub_id = http.post("/Subscription", json=sub).json()["id"]
        wait_status(http, sub_id, "active")
        with connect(ws_url(server), open_timeout=5) as ws:
            ws.send(f"bind {sub_id}")
            assert ws.recv(timeout=5) == f"bound {sub_id}"
            ws.send("bind no-such-subscription")
            assert ws.recv(timeout=5).startswith("error no-such-subscription")
            book(http, "09:00")
            book(http, "10:00", patient="Patient/pat2")  # not this Subscription's
            book(http, "11:00")
            assert [ws.recv(timeout=5), ws.recv(timeout=5)] == [f"ping {sub_id}"] * 2
            with pytest.raises(TimeoutError):
                ws.recv(timeout=0.5)


def test_websocket_bind_with_token_handshake_then_numbered_bundles(server: LiveServer) -> None:
    with http_of(server) as http:
        sub = topic_subscription(
            APPOINTMENT_CHANGE, [], channel_type="websocket", content="full-resource"
        )
        sub_id = http.post("/Subscription", json=sub).json()["id"]
        wait_status(http, sub_id, "active")
        token = http.post(f"/Subscription/{sub_id}/$get-ws-binding-token")
        assert token.status_code == 200, token.text
        params = {p["name"]: p for p in token.json()["parameter"]}
        assert params["subscription"]["valueString"] == sub_id
        url = params["websocket-url"]["valueUrl"]
        assert url == ws_url(server)
        with connect(url, open_timeout=5) as ws:
            ws.send("bind-with-token not-a-token")
            assert ws.recv(timeout=5).startswith("error ")
            ws.send(f"bind-with-token {params['token']['valueString']}")
            handshake = status_of(orjson.loads(ws.recv(timeout=5)))
            assert handshake["type"] == "handshake"
            first, second = book(http, "09:00"), book(http, "10:00")
            got = [orjson.loads(ws.recv(timeout=5)) for _ in range(2)]
    numbers = [status_of(b)["notification-event"][0]["event-number"] for b in got]
    assert numbers == ["1", "2"]
    assert [b["entry"][1]["resource"]["id"] for b in got] == [first, second]


def test_get_ws_binding_token_refuses_a_subscription_that_is_not_websocket(
    server: LiveServer,
) -> None:
    with http_of(server) as http:
        sub = topic_subscription(APPOINTMENT_CHANGE, [], endpoint="http://127.0.0.1:9/hook")
        sub_id = http.post("/Subscription", json=sub).json()["id"]
        answer = http.post(f"/Subscription/{sub_id}/$get-ws-binding-token")
    assert answer.status_code == 400
    assert "websocket" in answer.json()["issue"][0]["diagnostics"]


def test_email_topic_notification_with_attached_bundle(
    server: LiveServer, mailbox: tuple[Mailbox, int]
) -> None:
    box, _ = mailbox
    with http_of(server) as http:
        sub = topic_subscription(
            APPOINTMENT_CHANGE,
            ["Appointment?patient=Patient/pat"],
            channel_type="email",
            endpoint="mailto:frontdesk@clinic.test",
            payload="text/plain;attach=application/fhir+json",
        )
        sub_id = http.post("/Subscription", json=sub).json()["id"]
        wait_status(http, sub_id, "active")
        appt = book(http, "09:00")
        [message] = box.wait_for(1)
    assert message["To"] == "frontdesk@clinic.test"
    assert message["From"] == "fhir@clinic.test"
    assert message["Message-ID"] == f"<{sub_id}.1@fhir-server>"
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    assert f"Appointment/{appt}" in body.get_content()
    [attachment] = list(message.iter_attachments())
    bundle = orjson.loads(attachment.get_content())
    assert status_of(bundle)["notification-event"][0]["event-number"] == "1"


def test_email_without_smtp_server_configured_is_refused(tmp_path: Path) -> None:
    with LiveServer(make_settings(tmp_path, **FAST), with_base=True) as s, http_of(s) as http:
        sub = {
            "resourceType": "Subscription",
            "status": "requested",
            "reason": "test",
            "criteria": "Patient",
            "channel": {
                "type": "email",
                "endpoint": "mailto:x@clinic.test",
                "payload": "text/plain",
            },
        }
        answer = http.post("/Subscription", json=sub)
    assert answer.status_code == 400
    assert "FHIR_SERVER_SMTP_URL" in answer.json()["issue"][0]["diagnostics"]
