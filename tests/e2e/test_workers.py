"""Two `fhir-server serve` processes on one SQLite file (what `--workers 2` runs, with a port
each so the test can aim at either): they share bookings, tokens and the once-only work.

- 200 `$book`s race for 20 times with Dr. Smith (10 patients per time), spread over both
  processes: exactly one booking per time, 180 refused 409, and the file holds no two booked
  Appointments of his at one time.
- A token one process issued works on the other; revoked at one, both refuse it at once.
- The per-user rate limit counts a user's requests on both processes together.
- The hold sweeper runs in exactly one process (its lease); killed with SIGKILL, the other
  takes the lease over within 10 s and sweeps the next expired hold.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from fhir_server.cli import _load_demo
from tests.conftest import _free_port, make_settings
from tests.smart.flows import appointment, bearer, parameters, patient_token, run_cli

SWEEPER_TOOK = "Hold sweeper: took the lease holds:sweeper"


class Serve:
    """One `fhir-server serve --workers 1` process; its output goes to `log`."""

    def __init__(self, env: dict[str, str], port: int, log: Path) -> None:
        self.port, self.log = port, log
        command = [str(Path(sys.executable).parent / "fhir-server"), "serve"]
        command += ["--port", str(port), "--workers", "1", "--log-level", "info"]
        with log.open("wb") as out:
            self.process = subprocess.Popen(command, env=env, stdout=out, stderr=out)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()
            try:
                if httpx.get(f"{self.origin}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"not ready: {self.log.read_text()}")

    def said(self, text: str) -> int:
        return self.log.read_text(errors="replace").count(text)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp = tmp_path_factory.mktemp("workers")
    port_a, port_b = _free_port(), _free_port()
    settings = make_settings(tmp, auth=True, base_url=f"http://127.0.0.1:{port_a}/fhir")
    assert __import__("asyncio").run(_load_demo(settings)) > 0
    env = {
        **os.environ,
        "FHIR_SERVER_DATABASE_URL": settings.database_url,
        "FHIR_SERVER_BASE_URL": settings.base_url,  # one public URL: tokens valid on both
        "FHIR_SERVER_SIGNING_KEYS": settings.signing_keys,
        "FHIR_SERVER_EXPORT_DIR": settings.export_dir,
        "FHIR_SERVER_HOLD_SECONDS": "2",
        "FHIR_SERVER_ACCESS_LOG": "false",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp / "metrics"),  # what `serve --workers 2` sets
    }
    (tmp / "metrics").mkdir()
    servers = [Serve(env, port_a, tmp / "a.log"), Serve(env, port_b, tmp / "b.log")]
    try:
        for server in servers:
            server.wait_ready()
        admin = bearer(run_cli(settings, "token", "--scope", "system/*.cruds").strip())
        yield settings, servers, admin
    finally:
        for server in servers:
            server.stop()


def test_200_racing_books_over_two_processes_book_each_time_once(pair: Any) -> None:
    settings, servers, admin = pair
    entries = [
        {
            "resource": {"resourceType": "Patient", "id": f"racer-{n}", "name": [{"family": "R"}]},
            "request": {"method": "PUT", "url": f"Patient/racer-{n}"},
        }
        for n in range(200)
    ]
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    made = httpx.post(f"{servers[0].origin}/fhir", json=bundle, headers=admin, timeout=60)
    assert made.status_code == 200, made.text
    times = [(day, hour) for day in range(4) for hour in (9, 11, 13, 14, 15)]  # 20 free times

    def book(n: int) -> int:
        day, hour = times[n % 20]
        body = parameters(appointment(f"racer-{n}", day, hour))
        url = f"{servers[n % 2].origin}/fhir/Appointment/$book"
        return httpx.post(url, json=body, headers=admin, timeout=60).status_code

    with concurrent.futures.ThreadPoolExecutor(max_workers=50) as pool:
        statuses = Counter(pool.map(book, range(200)))
    assert statuses == {201: 20, 409: 180} or statuses == {200: 20, 409: 180}, statuses
    conn = sqlite3.connect(settings.database_url.removeprefix("sqlite:///"))
    try:  # straight from the file: every current Appointment naming a racer
        rows = conn.execute(
            "SELECT content FROM resources WHERE res_type = 'Appointment' AND deleted = 0"
        ).fetchall()
    finally:
        conn.close()
    booked = Counter(
        appt["start"]
        for appt in (json.loads(row[0]) for row in rows)
        if appt["status"] == "booked" and "racer-" in json.dumps(appt["participant"])
    )
    assert len(booked) == 20 and set(booked.values()) == {1}, booked
    # /metrics on either process adds up both processes' counts
    for server in servers:
        scraped = _metrics(server)
        assert scraped["fhir_appointments_booked_total"] == 20
        assert scraped['fhir_double_booking_refusals_total{detail="slot-unavailable"}'] == 180
        books = 'fhir_requests_total{code="409",interaction="operation",operation="$book",'
        assert scraped[books + 'type="Appointment"}'] == 180


def _metrics(server: Serve) -> dict[str, float]:
    """`GET /metrics` as {sample with labels: value} (prometheus_client's own parser)."""
    text = httpx.get(f"{server.origin}/metrics").text
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            out[sample.name + (f"{{{labels}}}" if labels else "")] = sample.value
    return out


def test_a_token_from_one_process_works_on_the_other_and_is_revoked_on_both(
    pair: Any,
) -> None:
    settings, (a, b), _ = pair
    with httpx.Client(base_url=a.origin, follow_redirects=False, timeout=30) as http:
        token = patient_token(http, settings.base_url, "launch/patient patient/Patient.rs")
    read = "/fhir/Patient/demo-patient-munoz"
    for server in (a, b):
        assert httpx.get(server.origin + read, headers=bearer(token)).status_code == 200
    revoked = httpx.post(
        f"{b.origin}/auth/revoke", data={"token": token["access_token"], "client_id": "demo-app"}
    )
    assert revoked.status_code == 200
    for server in (a, b):
        refused = httpx.get(server.origin + read, headers=bearer(token))
        assert refused.status_code == 401, refused.text


def test_the_per_user_limit_counts_requests_on_both_processes_together(pair: Any) -> None:
    settings, (a, b), _ = pair
    if time.time() % 60 > 50:  # the limit's window is a UTC minute: stay inside one
        time.sleep(60 - time.time() % 60 + 0.1)
    person = {
        "given": "Ada",
        "family": "Limit",
        "birthDate": "1990-01-02",
        "email": "ada.limit@example.org",
        "username": "ada-limit",
        "password": "a-long-password-1",
    }
    made = httpx.post(f"{a.origin}/auth/register", json=person)  # a user of its own
    assert made.status_code == 201, made.text
    with httpx.Client(base_url=b.origin, follow_redirects=False, timeout=30) as http:
        scope = "launch/patient patient/*.rs"
        token = bearer(
            patient_token(http, settings.base_url, scope, "ada-limit", person["password"])
        )
    read = "/fhir/" + made.json()["patient"]
    with httpx.Client(timeout=30) as http:
        statuses = [
            http.get((a, b)[n % 2].origin + read, headers=token).status_code for n in range(100)
        ]
        assert statuses == [200] * 100  # 100 a minute per user, 50 on each process
        for server in (a, b):
            refused = http.get(server.origin + read, headers=token)
            assert refused.status_code == 429 and "retry-after" in refused.headers


def _hold(server: Serve, admin: dict[str, str], day: int) -> str:
    """Hold a time for the demo patient through `server`; the held Appointment's id."""
    body = parameters(appointment("demo-patient-munoz", day, 16))
    held = httpx.post(f"{server.origin}/fhir/Appointment/$hold", json=body, headers=admin)
    assert held.status_code == 200, held.text
    (entry,) = held.json()["entry"]  # a searchset with the held Appointment
    assert entry["resource"]["status"] == "pending"
    return str(entry["resource"]["id"])


def _swept(server: Serve, admin: dict[str, str], id: str, within: float) -> float:
    """Seconds until Appointment/id is cancelled (asserting it happens within `within`)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < within:
        status = httpx.get(f"{server.origin}/fhir/Appointment/{id}", headers=admin).json()
        if status.get("status") == "cancelled":
            return time.monotonic() - t0
        time.sleep(0.1)
    raise AssertionError(f"Appointment/{id} was not swept within {within} s")


def test_the_sweeper_runs_in_one_process_and_is_taken_over_after_kill_9(pair: Any) -> None:
    _, servers, admin = pair
    deadline = time.monotonic() + 10
    while sum(s.said(SWEEPER_TOOK) for s in servers) == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [s.said(SWEEPER_TOOK) for s in servers] in ([1, 0], [0, 1])
    holder, other = servers if servers[0].said(SWEEPER_TOOK) else servers[::-1]
    first = _hold(other, admin, 4)
    _swept(other, admin, first, within=15)
    history = httpx.get(f"{other.origin}/fhir/Appointment/{first}/_history", headers=admin)
    assert history.json()["total"] == 2  # pending, then cancelled once
    assert other.said(SWEEPER_TOOK) == 0  # the other process never swept

    holder.process.send_signal(signal.SIGKILL)
    holder.process.wait(timeout=10)
    killed = time.monotonic()
    while other.said(SWEEPER_TOOK) == 0:
        assert time.monotonic() - killed < 10, other.log.read_text()
        time.sleep(0.05)
    took_over = time.monotonic() - killed
    second = _hold(other, admin, 4)
    _swept(other, admin, second, within=15)
    print(f"sweeper taken over {took_over:.1f} s after SIGKILL")
