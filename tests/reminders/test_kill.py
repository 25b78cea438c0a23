"""Killed while sending: `fhir-server serve` (a real process, SQLite file) sends the
confirmations and reminders of 15 bookings through a slow real SMTP server (aiosmtpd,
0.1 s per message); it is killed with SIGKILL halfway; a new process on the same file takes
the job over (its lease lapses within 5 s) and sends the rest. Every message arrives, each
Message-ID once, except at most the one message the kill interrupted inside the SMTP
exchange, which comes again with the same Message-ID."""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from aiosmtpd.controller import Controller

from tests.conftest import _free_port
from tests.subscriptions.receiver import Mailbox

BOOKINGS = 15


class SlowMailbox(Mailbox):
    """Takes 0.1 s per message, like a busy relay."""

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(0.1)
        return await super().handle_DATA(server, session, envelope)


def _serve(tmp_path: Path, port: int, smtp_port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "FHIR_SERVER_DATABASE_URL": f"sqlite:///{tmp_path / 'fhir.db'}",
        "FHIR_SERVER_AUTH": "off",
        "FHIR_SERVER_BASE_URL": f"http://127.0.0.1:{port}/fhir",
        "FHIR_SERVER_SMTP_URL": f"smtp://127.0.0.1:{smtp_port}",
        "FHIR_SERVER_REMINDER_OFFSETS": "PT1H",
        "FHIR_SERVER_DISPATCH_SECONDS": "0.2",
    }
    command = [str(Path(sys.executable).parent / "fhir-server"), "serve", "--port", str(port)]
    command += ["--workers", "1"]  # SIGKILL of the one process, no orphaned workers
    with (tmp_path / f"server-{port}-{time.monotonic_ns()}.log").open("wb") as log:
        process = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=log, stderr=log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/fhir/metadata", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise AssertionError("the server did not start")


def _at(seconds: float) -> str:
    moment = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def test_killed_while_sending_each_message_goes_once_after_restart(tmp_path: Path) -> None:
    box, smtp_port = SlowMailbox(), _free_port()
    controller = Controller(box, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    port = _free_port()
    first = _serve(tmp_path, port, smtp_port)
    second = None
    try:
        base = f"http://127.0.0.1:{port}/fhir"
        with httpx.Client(base_url=base, timeout=10) as http:
            for n in range(BOOKINGS):
                patient = {
                    "resourceType": "Patient",
                    "id": f"p{n}",
                    "telecom": [{"system": "email", "value": f"p{n}@example.org"}],
                }
                assert http.put(f"/Patient/p{n}", json=patient).is_success
                booking = {
                    "resourceType": "Appointment",
                    "status": "booked",
                    "start": _at(3600 + 4),  # reminded (PT1H) in 4 s
                    "end": _at(3600 + 1800),
                    "participant": [
                        {"actor": {"reference": f"Patient/p{n}"}, "status": "accepted"}
                    ],
                }
                assert http.post("/Appointment", json=booking).status_code == 201
        box.wait_for(BOOKINGS // 2, timeout=20)  # half the confirmations are out
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        killed_at = len(box.messages)
        assert killed_at < 2 * BOOKINGS  # it really died halfway
        second = _serve(tmp_path, port, smtp_port)
        try:
            box.wait_for(2 * BOOKINGS, timeout=60)
        except AssertionError as exc:
            logs = "".join(p.read_text()[-3000:] for p in sorted(tmp_path.glob("server-*.log")))
            raise AssertionError(f"{exc}\n{logs}") from None
        time.sleep(1.5)  # anything more would come now
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=15)
        controller.stop()
    ids = collections.Counter(str(m["Message-ID"]) for m in box.messages)
    subjects = collections.Counter(str(m["Subject"]) for m in box.messages)
    assert len(ids) == 2 * BOOKINGS, subjects  # every confirmation and reminder
    assert set(subjects) == {"Appointment notice", "Appointment reminder"}
    repeated = [i for i, count in ids.items() if count > 1]
    print(f"killed after {killed_at} messages; {len(box.messages)} in all; repeated {repeated}")
    assert len(repeated) <= 1, ids  # only the message the kill cut off may come twice
    assert all(count <= 2 for count in ids.values())
