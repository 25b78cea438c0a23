"""Booking benchmark: races, sustained `$book` throughput and `$find-slots` latency.

Usage: `make bench` (runs bench/rest.py, then this) or `.venv/bin/python bench/booking.py`.
Starts `fhir-server serve` (one uvicorn worker) on a fresh SQLite file, sets up 100
PractitionerRoles with weekly hours (Mon-Fri 09:00-17:00 America/New_York), their Schedules,
200 Patients and 50 stored free Slots, then drives it with httpx from this process:

  race        200 concurrent clients `$book` the same 50 Slots (4 contenders each): expect
              exactly 50 x 201/200 and 150 x 409; afterwards the database file is read directly
              to count booked Appointments per Slot and overlapping claims (expect none)
  book        50 concurrent clients `$book` distinct rule-derived slots for N seconds:
              throughput and p50/p99 latency
  find-1      `Schedule/{id}/$find-slots` over 31 days for one schedule, sequential
  find-100    `Slot/$find-slots` over 31 days across all 100 schedules (`_count=100`)
  ceiling     the same GET on a bare Starlette endpoint (bench/ceiling_app.py) for scale

MongoDB: runs the same against `FHIR_SERVER_BENCH_MONGODB_URL` when set (a database named by
the URL is dropped first!); otherwise says it was skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import itertools

from rest import admin_token, free_port, rss_mib, wait_up

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


async def race(client: httpx.AsyncClient) -> dict[str, Any]:
    slots = {}
    for i in range(50):
        slots[i] = (await client.get(f"/Slot/race-{i}")).json()

    async def one(n: int) -> int:
        slot = slots[n % 50]
        appointment = {
            "resourceType": "Appointment",
            "status": "proposed",
            "start": slot["start"],
            "end": slot["end"],
            "slot": [{"reference": f"Slot/race-{n % 50}"}],
            "participant": [
                {"actor": {"reference": f"Patient/pat-{n}"}, "status": "accepted"},
                {"actor": {"reference": "PractitionerRole/role-0"}, "status": "accepted"},
            ],
        }
        r = await client.post("/Appointment/$book", json=parameters(appointment))
        return r.status_code

    t0 = time.perf_counter()
    statuses = await asyncio.gather(*[one(n) for n in range(200)])
    return {"seconds": time.perf_counter() - t0, "statuses": sorted(statuses)}


def double_bookings(db: Path) -> tuple[int, int, int]:
    """(booked Appointments on the race Slots, Slots booked more than once, overlapping
    minute claims owned by different Appointments) read straight from the SQLite file."""
    conn = sqlite3.connect(db)
    booked = conn.execute(
        "SELECT json_extract(content, '$.slot[0].reference') AS s, count(*) FROM resources "
        "WHERE res_type = 'Appointment' AND deleted = 0 AND "
        "json_extract(content, '$.status') = 'booked' AND s LIKE 'Slot/race-%' GROUP BY s"
    ).fetchall()
    twice = sum(1 for _, n in booked if n > 1)
    # claims are unique per (scope, quantum) by the primary key; check the Appointments too:
    # no two booked/held Appointments of one practitioner role may overlap
    rows = conn.execute(
        "SELECT res_id, json_extract(content, '$.start'), json_extract(content, '$.end'), "
        "json_extract(content, '$.participant[1].actor.reference') "
        "FROM resources WHERE res_type = 'Appointment' AND deleted = 0 AND "
        "json_extract(content, '$.status') IN ('booked', 'pending')"
    ).fetchall()
    conn.close()
    by_role: dict[str, list[tuple[dt.datetime, dt.datetime]]] = {}
    for _, start, end, role in rows:
        by_role.setdefault(role, []).append(
            (dt.datetime.fromisoformat(start), dt.datetime.fromisoformat(end))
        )
    overlaps = 0
    for spans in by_role.values():
        spans.sort()
        overlaps += sum(1 for a, b in itertools.pairwise(spans) if b[0] < a[1])
    return sum(n for _, n in booked), twice, overlaps


async def sustained(client: httpx.AsyncClient, monday: dt.date, seconds: float) -> dict[str, Any]:
    start = f"{monday + dt.timedelta(days=7)}T00:00:00Z"
    end = f"{monday + dt.timedelta(days=38)}T00:00:00Z"
    queue: list[dict[str, Any]] = []
    for i in range(1, 100):
        r = await client.get(
            f"/Schedule/sched-{i}/$find-slots", params={"start": start, "end": end, "_count": 1000}
        )
        for entry in r.json().get("entry", []):
            if entry["search"]["mode"] == "match":
                queue.append(entry["resource"])
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    deadline = time.perf_counter() + seconds

    async def worker(w: int) -> None:
        n = 0
        while time.perf_counter() < deadline and queue:
            slot = queue.pop()
            schedule = slot["schedule"]["reference"].split("/")[1]
            appointment = {
                "resourceType": "Appointment",
                "status": "proposed",
                "start": slot["start"],
                "end": slot["end"],
                "slot": [{"reference": f"Slot/{slot['id']}"}],
                "participant": [
                    {  # one patient per booking: a patient is never booked twice at once
                        "actor": {"reference": f"Patient/sustained-{w}-{n}"},
                        "status": "accepted",
                    },
                    {
                        "actor": {"reference": f"PractitionerRole/role-{schedule.split('-')[1]}"},
                        "status": "accepted",
                    },
                ],
            }
            t = time.perf_counter()
            r = await client.post("/Appointment/$book", json=parameters(appointment))
            latencies.append((time.perf_counter() - t) * 1000)
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
            n += 1

    t0 = time.perf_counter()
    await asyncio.gather(*[worker(w) for w in range(50)])
    elapsed = time.perf_counter() - t0
    return {
        "rps": len(latencies) / elapsed,
        "p50": pct(latencies, 0.5),
        "p99": pct(latencies, 0.99),
        "statuses": statuses,
        "offered": len(queue) + len(latencies),
    }


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


async def run(
    base: str, db: Path | None, monday: dt.date, seconds: float, pid: int, token: str
) -> None:
    # idle connections are dropped well before uvicorn's 5 s keep-alive closes them: with
    # httpx's default of 5 s too, a request could go out on a connection the server was closing
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256, keepalive_expiry=2.0)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(
        base_url=base, timeout=60, limits=limits, headers=headers
    ) as client:
        r = await client.post("", json=setup_bundle(monday))
        assert r.status_code == 200, r.text[:500]
        result = await race(client)
        counts = {s: result["statuses"].count(s) for s in set(result["statuses"])}
        print(f"race: 200 clients on 50 slots in {result['seconds']:.2f} s -> {counts}")
        if db is not None:
            booked, twice, overlaps = double_bookings(db)
            print(
                f"  from the database: {booked} booked on the race slots, {twice} slots booked twice, "
                f"{overlaps} overlapping bookings of one practitioner"
            )
        s = await sustained(client, monday, seconds)
        if db is not None:
            _, twice, overlaps = double_bookings(db)
            print(f"  after sustained booking: {twice} slots booked twice, {overlaps} overlapping")
        print(
            f"book: 50 clients, {s['rps']:.0f} bookings/s, p50 {s['p50']:.1f} ms, p99 {s['p99']:.1f} ms, "
            f"statuses {s['statuses']} ({s['offered']} free slots offered)"
        )
        window = {
            "start": f"{monday}T00:00:00Z",
            "end": f"{monday + dt.timedelta(days=31)}T00:00:00Z",
        }
        one = await find_latency(client, "/Schedule/sched-50/$find-slots", window, 200)
        print(
            f"find-1: one schedule, 31 days: p50 {one['p50']:.1f} ms, p99 {one['p99']:.1f} ms "
            f"({one['total']} free slots)"
        )
        many = await find_latency(
            client,
            "/Slot/$find-slots",
            {**window, "specialty": "http://nucc.org/provider-taxonomy|207Q00000X", "_count": 100},
            30,
        )
        print(
            f"find-100: 100 schedules, 31 days: p50 {many['p50']:.1f} ms, p99 {many['p99']:.1f} ms "
            f"({many['total']} free slots)"
        )
        print(f"server RSS {rss_mib(pid):.0f} MiB")


def server_env(url: str, port: int, tmp: Path) -> dict[str, str]:
    """The environment of the benchmarked server (and of `fhir-server token` for it)."""
    return {
        **os.environ,
        "FHIR_SERVER_DATABASE_URL": url,
        "FHIR_SERVER_BASE_URL": f"http://127.0.0.1:{port}/fhir",
        "FHIR_SERVER_SIGNING_KEYS": str(tmp / "signing-keys.json"),
    }


def serve(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(BIN / "fhir-server"), "serve", "--port", str(port), "--log-level", "warning"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    today = dt.date.today()
    monday = today + dt.timedelta(days=7 - today.weekday())
    engines: list[tuple[str, str, Path | None]] = []
    tmp = Path(tempfile.mkdtemp(prefix="fhir-booking-"))
    engines.append(("sqlite", f"sqlite:///{tmp / 'bench.db'}", tmp / "bench.db"))
    mongo = os.environ.get("FHIR_SERVER_BENCH_MONGODB_URL")
    if mongo:
        engines.append(("mongodb", mongo, None))
    for name, url, db in engines:
        print(f"== {name} ({url}), week of {monday}")
        port = free_port()
        env = server_env(url, port, tmp)
        proc = serve(env, port)
        try:
            wait_up(f"http://127.0.0.1:{port}/fhir/metadata", proc)
            token = admin_token(env)
            asyncio.run(
                run(f"http://127.0.0.1:{port}/fhir", db, monday, args.seconds, proc.pid, token)
            )
        finally:
            proc.terminate()
            proc.wait(timeout=20)
    if not mongo:
        print("== mongodb: skipped (set FHIR_SERVER_BENCH_MONGODB_URL to a MongoDB to run it)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
