"""What bench/booking.py and bench/booking_year.py share: the clinic they set up (100
PractitionerRoles open Mon-Fri 09:00-17:00 New York with their Schedules, 200 Patients, 50
stored free Slots), `$book` bodies, the server they start, latency figures and the goals
printed with PASS/FAIL."""

from __future__ import annotations

import datetime as dt
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]
ZONE = "America/New_York"
TZ_EXT = {"url": "http://hl7.org/fhir/StructureDefinition/timezone", "valueCode": ZONE}
SPECIALTY = {"coding": [{"system": "http://nucc.org/provider-taxonomy", "code": "207Q00000X"}]}


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] if ordered else float("nan")


def parameters(appointment: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Parameters",
        "parameter": [{"name": "appointment-resource", "resource": appointment}],
    }


def appointment(start: str, end: str, slot: str, patient: str, role: str) -> dict[str, Any]:
    """A proposed Appointment of Patient/`patient` with PractitionerRole/`role` on Slot/`slot`."""
    return {
        "resourceType": "Appointment",
        "status": "proposed",
        "start": start,
        "end": end,
        "slot": [{"reference": f"Slot/{slot}"}],
        "participant": [
            {"actor": {"reference": f"Patient/{patient}"}, "status": "accepted"},
            {"actor": {"reference": f"PractitionerRole/{role}"}, "status": "accepted"},
        ],
    }


def setup_bundle(monday: dt.date) -> dict[str, Any]:
    entries: list[dict[str, Any]] = []

    def put(resource: dict[str, Any]) -> None:
        url = f"{resource['resourceType']}/{resource['id']}"
        entries.append({"resource": resource, "request": {"method": "PUT", "url": url}})

    for i in range(100):
        put(
            {
                "resourceType": "PractitionerRole",
                "id": f"role-{i}",
                "active": True,
                "specialty": [SPECIALTY],
                "extension": [TZ_EXT],
                "availableTime": [
                    {
                        "daysOfWeek": ["mon", "tue", "wed", "thu", "fri"],
                        "availableStartTime": "09:00:00",
                        "availableEndTime": "17:00:00",
                    }
                ],
            }
        )
        put(
            {
                "resourceType": "Schedule",
                "id": f"sched-{i}",
                "active": True,
                "extension": [TZ_EXT],
                "specialty": [SPECIALTY],
                "actor": [{"reference": f"PractitionerRole/role-{i}"}],
            }
        )
    for i in range(200):
        put({"resourceType": "Patient", "id": f"pat-{i}", "name": [{"family": f"Bench{i}"}]})
    base = dt.datetime.combine(monday, dt.time(14, 0), tzinfo=dt.UTC)
    for i in range(50):
        start = base + dt.timedelta(minutes=30 * i)
        put(
            {
                "resourceType": "Slot",
                "id": f"race-{i}",
                "status": "free",
                "schedule": {"reference": "Schedule/sched-0"},
                "start": start.isoformat().replace("+00:00", "Z"),
                "end": (start + dt.timedelta(minutes=15)).isoformat().replace("+00:00", "Z"),
            }
        )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


async def find_latency(
    client: httpx.AsyncClient, path: str, params: dict[str, Any], n: int
) -> dict[str, float]:
    for _ in range(5):
        await client.get(path, params=params)
    latencies = []
    sizes = []
    for _ in range(n):
        t = time.perf_counter()
        r = await client.get(path, params=params)
        latencies.append((time.perf_counter() - t) * 1000)
        assert r.status_code == 200, r.text[:300]
        sizes.append(r.json().get("total", 0))
    return {"p50": statistics.median(latencies), "p99": pct(latencies, 0.99), "total": sizes[-1]}


class Goals:
    """The issue's goals, each printed with its figure and pass/fail at the end."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, bool]] = []

    def check(self, goal: str, figure: str, passed: bool) -> None:
        self.rows.append((goal, figure, passed))

    def print(self) -> None:
        print("goals:")
        for goal, figure, passed in self.rows:
            print(f"  [{'PASS' if passed else 'FAIL'}] {goal}: {figure}")


def server_env(url: str, port: int, tmp: Path) -> dict[str, str]:
    """The environment of the benchmarked server (and of `fhir-server token` for it)."""
    return {
        **os.environ,
        "FHIR_SERVER_DATABASE_URL": url,
        "FHIR_SERVER_BASE_URL": f"http://127.0.0.1:{port}/fhir",
        "FHIR_SERVER_SIGNING_KEYS": str(tmp / "signing-keys.json"),
    }


def serve(
    env: dict[str, str], port: int, workers: int, log: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start `fhir-server serve` with `workers` processes; its stderr (warnings, and the
    faulthandler's report of a worker that crashed) goes to `log` if given."""
    command = [str(BIN / "fhir-server"), "serve", "--port", str(port), "--log-level", "warning"]
    errors = log.open("ab") if log is not None else subprocess.DEVNULL
    try:
        return subprocess.Popen(
            [*command, "--workers", str(workers)],
            env={**env, "PYTHONFAULTHANDLER": "1"},
            stdout=subprocess.DEVNULL,
            stderr=errors,
        )
    finally:
        if log is not None:
            errors.close()  # type: ignore[union-attr]


def crashes(log: Path) -> list[str]:
    """The first lines of each worker crash (`Fatal Python error`) or traceback in `log`."""
    if not log.exists():
        return []
    lines = log.read_text(errors="replace").splitlines()
    found = []
    for n, line in enumerate(lines):
        if line.startswith(("Fatal Python error", "Traceback")):
            found.append("\n".join(lines[n : n + 12]))
    return found


def family(pid: int) -> list[int]:
    """`pid` and its child processes (uvicorn's workers)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    return [pid, *(int(c) for c in children)]
