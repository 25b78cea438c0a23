"""Reminders end to end on the real server: a booking made over REST gets its reminder by
email from the server's own background job (offset PT3S, checked every 0.2 s), through a
real SMTP server on 127.0.0.1; the request and its Communication are readable over REST."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

import httpx
from aiosmtpd.controller import Controller

from tests.conftest import LiveServer, _free_port, make_settings
from tests.subscriptions.receiver import Mailbox

PATIENT = {
    "resourceType": "Patient",
    "id": "ann",
    "name": [{"family": "Lee"}],
    "telecom": [{"system": "email", "value": "ann@example.org"}],
}


def at(delta_s: float) -> str:
    moment = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=delta_s)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def test_a_booking_gets_its_reminder_email_from_the_running_server(tmp_path: Path) -> None:
    box, port = Mailbox(), _free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    settings = make_settings(
        tmp_path,
        reminder_offsets="PT3S",
        dispatch_seconds=0.2,
        smtp_url=f"smtp://127.0.0.1:{port}",
    )
    try:
        with (
            LiveServer(settings, with_base=True) as server,
            httpx.Client(base_url=server.base_url) as http,
        ):
            assert http.put("/Patient/ann", json=PATIENT).status_code == 201
            booking: dict[str, Any] = {
                "resourceType": "Appointment",
                "status": "booked",
                "start": at(6),
                "end": at(1800),
                "participant": [{"actor": {"reference": "Patient/ann"}, "status": "accepted"}],
            }
            appt = http.post("/Appointment", json=booking).json()["id"]
            confirmation, message = box.wait_for(2, timeout=15)
            deadline = time.monotonic() + 10  # the send is recorded just after the message
            while True:
                requests = http.get(
                    "/CommunicationRequest", params={"based-on": f"Appointment/{appt}"}
                ).json()
                [request] = [
                    e["resource"] for e in requests["entry"] if e["resource"].get("identifier")
                ]
                if request["status"] == "completed" or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            sent = http.get(
                "/Communication", params={"based-on": f"CommunicationRequest/{request['id']}"}
            ).json()
    finally:
        controller.stop()
    assert confirmation["Subject"] == "Appointment notice"
    assert (message["Subject"], message["To"]) == ("Appointment reminder", "ann@example.org")
    assert request["status"] == "completed"
    assert [e["resource"]["status"] for e in sent["entry"]] == ["completed"]
