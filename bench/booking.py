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
import json
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

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


async def free_times(client: httpx.AsyncClient, monday: dt.date) -> list[dict[str, Any]]:
    """The free rule-derived Slots of schedules 1..98 over weeks 2-6 ($find-slots), shuffled
    (so concurrent bookers rarely want the same practitioner's minute)."""
    start = f"{monday + dt.timedelta(days=7)}T00:00:00Z"
    end = f"{monday + dt.timedelta(days=38)}T00:00:00Z"
    queue: list[dict[str, Any]] = []
    for i in range(1, 99):
        r = await client.get(
            f"/Schedule/sched-{i}/$find-slots", params={"start": start, "end": end, "_count": 1000}
        )
        for entry in r.json().get("entry", []):
            if entry["search"]["mode"] == "match":
                queue.append(entry["resource"])
    random.Random(7).shuffle(queue)
    return queue


def book_bodies(slots: list[dict[str, Any]], tag: str) -> str:
    """One `$book` Parameters body per line, a new patient for each (never double-booked)."""
    lines = []
    for n, slot in enumerate(slots):
        schedule = slot["schedule"]["reference"].split("/")[1]
        appointment = {
            "resourceType": "Appointment",
            "status": "proposed",
            "start": slot["start"],
            "end": slot["end"],
            "slot": [{"reference": f"Slot/{slot['id']}"}],
            "participant": [
                {"actor": {"reference": f"Patient/{tag}-{n}"}, "status": "accepted"},
                {
                    "actor": {"reference": f"PractitionerRole/role-{schedule.split('-')[1]}"},
                    "status": "accepted",
                },
            ],
        }
        lines.append(json.dumps(parameters(appointment)))
    return "\n".join(lines) + "\n"


def wrk_book(
    base: str,
    bodies: str,
    token: str,
    seconds: float,
    connections: int,
    tmp: Path,
    delay_ms: int | None = None,
) -> dict[str, float]:
    """Run bench/book.lua with wrk (2 threads): closed loop, or paced by `delay_ms`."""
    path = tmp / f"bodies-{connections}-{delay_ms}.ndjson"
    path.write_text(bodies)
    command = ["wrk", "-t2", f"-c{connections}", f"-d{int(seconds)}s", "--timeout", "30s"]
    command += ["-s", str(ROOT / "bench" / "book.lua"), base, "--", str(path), "2", token]
    if delay_ms is not None:
        command.append(str(delay_ms))
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    result["rps"] = result["ok"] / (result["duration_us"] / 1e6)
    return result


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


def year_of_bookings(monday: dt.date, total: int, path: Path, tag: str) -> list[Path]:
    """`total` booked Appointments spread over the 52 weeks from week 8 (after the weeks the
    booking runs use), over all 100 schedules, weekdays 09:00-17:00 New York, 30 minutes
    each (~25% of the hours), written as two NDJSON files of disjoint schedules (loaded by
    two `fhir-server load` processes at once)."""
    zone = ZoneInfo(ZONE)
    rng = random.Random(11)
    taken: set[tuple[int, int, int]] = set()
    files = [path.with_name(f"{tag}-{k}.ndjson") for k in range(2)]
    outs = [f.open("w") for f in files]
    n = 0
    while n < total:
        role = rng.randrange(100)
        day = monday + dt.timedelta(weeks=8, days=rng.randrange(7 * 52))
        if day.weekday() >= 5:
            continue
        half_hour = rng.randrange(16)
        if (role, day.toordinal(), half_hour) in taken:
            continue
        taken.add((role, day.toordinal(), half_hour))
        start = dt.datetime.combine(day, dt.time(9 + half_hour // 2, 30 * (half_hour % 2)), zone)
        appointment = {
            "resourceType": "Appointment",
            "id": f"{tag}-{n}",
            "status": "booked",
            "start": start.isoformat(),
            "end": (start + dt.timedelta(minutes=30)).isoformat(),
            "participant": [
                {"actor": {"reference": f"Patient/{tag}-p{n}"}, "status": "accepted"},
                {"actor": {"reference": f"PractitionerRole/role-{role}"}, "status": "accepted"},
            ],
        }
        outs[role % 2].write(json.dumps(appointment) + "\n")
        n += 1
    for out in outs:
        out.close()
    return files


def load_parallel(env: dict[str, str], files: list[Path]) -> float:
    """Load `files` with one `fhir-server load` process each, at once; seconds taken."""
    t0 = time.perf_counter()
    procs = [
        subprocess.Popen(
            [str(BIN / "fhir-server"), "load", "--quiet", str(f)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for f in files
    ]
    for proc in procs:
        _, err = proc.communicate()
        assert proc.returncode == 0, err.decode()[-2000:]
    return time.perf_counter() - t0


async def find_one(base: str, token: str, window: dict[str, str]) -> dict[str, float]:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base, timeout=60, headers=headers) as client:
        return await find_latency(client, "/Schedule/sched-99/$find-slots", window, 300)


def year_phase(tmp: Path, monday: dt.date, workers: int, bookings: int, goals: Goals) -> None:
    """One schedule's 31 days of free time on an empty calendar, and on a calendar holding
    `bookings` appointments spread over a year on all 100 schedules: two database files with
    the same setup, the second also loaded with the bookings (`fhir-server load`, two
    processes) before its server first starts, so no background job replays them while the
    search is measured (the reminder planner starts at the end of the log)."""
    setup = tmp / "setup.json"
    setup.write_text(json.dumps(setup_bundle(monday)))
    middle = monday + dt.timedelta(weeks=30)
    window = {
        "start": f"{middle}T00:00:00Z",
        "end": f"{middle + dt.timedelta(days=31)}T00:00:00Z",
    }
    figures = []
    for phase in ("empty", "booked"):
        port = free_port()
        env = server_env(f"sqlite:///{tmp / f'year-{phase}.db'}", port, tmp)
        load_parallel(env, [setup])
        if phase == "booked":
            files = year_of_bookings(monday, bookings, tmp / "year.ndjson", "yr")
            seconds = load_parallel(env, files)
            print(f"loaded {bookings} booked appointments over a year in {seconds:.0f} s")
        proc = serve(env, port, workers)
        try:
            wait_up(f"http://127.0.0.1:{port}/fhir/metadata", proc)
            token = admin_token(env)
            one = asyncio.run(find_one(f"http://127.0.0.1:{port}/fhir", token, window))
        finally:
            proc.terminate()
            proc.wait(timeout=20)
        figures.append(one)
        print(
            f"find-1 ({phase}): one schedule, 31 days: p50 {one['p50']:.1f} ms, "
            f"p99 {one['p99']:.1f} ms ({one['total']} free slots)"
        )
    empty, booked = figures
    goals.check(
        f"one schedule, 31 days, {bookings} bookings in the year: p50 < 15 ms",
        f"p50 {booked['p50']:.1f} ms",
        booked["p50"] < 15,
    )
    ratio = booked["p50"] / empty["p50"]
    goals.check(
        "... and within 1.5 x of the same search on an empty calendar",
        f"{booked['p50']:.1f} / {empty['p50']:.1f} ms = {ratio:.2f} x",
        ratio <= 1.5,
    )


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


async def run(
    base: str,
    db: Path | None,
    monday: dt.date,
    seconds: float,
    pids: list[int],
    token: str,
    tmp: Path,
    goals: Goals,
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
        window = {
            "start": f"{monday + dt.timedelta(days=7)}T00:00:00Z",
            "end": f"{monday + dt.timedelta(days=38)}T00:00:00Z",
        }
        empty_one = await find_latency(client, "/Schedule/sched-99/$find-slots", window, 200)
        print(
            f"find-1: one schedule, 31 days, empty calendar: p50 {empty_one['p50']:.1f} ms, "
            f"p99 {empty_one['p99']:.1f} ms ({empty_one['total']} free slots)"
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
        goals.check(
            "Slot/$find-slots, 100 schedules x 31 days, p50 < 100 ms",
            f"p50 {many['p50']:.1f} ms",
            many["p50"] < 100,
        )
        slots = await free_times(client, monday)
    closed_n = int(min(len(slots) * 0.8, 2000 * seconds))
    closed = wrk_book(base, book_bodies(slots[:closed_n], "closed"), token, seconds, 50, tmp)
    print(
        f"book (wrk, closed loop, 50 connections): {closed['rps']:.0f} bookings/s, "
        f"p50 {closed['p50_us'] / 1000:.1f} ms, p90 {closed['p90_us'] / 1000:.1f} ms, "
        f"p99 {closed['p99_us'] / 1000:.1f} ms, max {closed['max_us'] / 1000:.0f} ms; "
        f"{closed['ok']:.0f} booked, {closed['conflict']:.0f} x 409, {closed['other']:.0f} other, "
        f"{closed['socket_errors']:.0f} socket errors"
    )
    goals.check(
        "$book closed loop, 50 clients: >= 600 bookings/s",
        f"{closed['rps']:.0f}/s",
        closed["rps"] >= 600,
    )
    ratio = closed["p99_us"] / max(closed["p50_us"], 1)
    goals.check("$book closed loop: p99 <= 3 x p50", f"p99/p50 = {ratio:.1f}", ratio <= 3)
    rest = slots[closed_n:]
    paced = wrk_book(base, book_bodies(rest, "paced"), token, seconds, 10, tmp, delay_ms=100)
    print(
        f"book (wrk, 10 connections x 10/s = 100/s offered): {paced['rps']:.0f} bookings/s, "
        f"p50 {paced['p50_us'] / 1000:.1f} ms, p99 {paced['p99_us'] / 1000:.1f} ms, "
        f"max {paced['max_us'] / 1000:.0f} ms; {paced['ok']:.0f} booked, {paced['other']:.0f} other"
    )
    goals.check(
        "$book at 100/s offered: p99 < 50 ms",
        f"p99 {paced['p99_us'] / 1000:.1f} ms",
        paced["p99_us"] < 50_000,
    )
    if db is not None:
        _, twice, overlaps = double_bookings(db)
        print(f"  after the booking runs: {twice} slots booked twice, {overlaps} overlapping")
    print(f"server RSS {sum(rss_mib(pid) for pid in pids):.0f} MiB ({len(pids)} processes)")


def server_env(url: str, port: int, tmp: Path) -> dict[str, str]:
    """The environment of the benchmarked server (and of `fhir-server token` for it)."""
    return {
        **os.environ,
        "FHIR_SERVER_DATABASE_URL": url,
        "FHIR_SERVER_BASE_URL": f"http://127.0.0.1:{port}/fhir",
        "FHIR_SERVER_SIGNING_KEYS": str(tmp / "signing-keys.json"),
    }


def serve(env: dict[str, str], port: int, workers: int) -> subprocess.Popen[bytes]:
    command = [str(BIN / "fhir-server"), "serve", "--port", str(port), "--log-level", "warning"]
    return subprocess.Popen(
        [*command, "--workers", str(workers)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def family(pid: int) -> list[int]:
    """`pid` and its child processes (uvicorn's workers)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    return [pid, *(int(c) for c in children)]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--bookings", type=int, default=100_000, help="booked appointments of the year phase"
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("needs wrk: apt-get install -y wrk", file=sys.stderr)
        return 2
    today = dt.date.today()
    monday = today + dt.timedelta(days=7 - today.weekday())
    engines: list[tuple[str, str, Path | None]] = []
    tmp = Path(tempfile.mkdtemp(prefix="fhir-booking-"))
    engines.append(("sqlite", f"sqlite:///{tmp / 'bench.db'}", tmp / "bench.db"))
    mongo = os.environ.get("FHIR_SERVER_BENCH_MONGODB_URL")
    if mongo:
        engines.append(("mongodb", mongo, None))
    for name, url, db in engines:
        print(f"== {name} ({url}), {args.workers} workers, week of {monday}")
        port = free_port()
        env = server_env(url, port, tmp)
        proc = serve(env, port, args.workers)
        goals = Goals()
        try:
            wait_up(f"http://127.0.0.1:{port}/fhir/metadata", proc)
            token = admin_token(env)
            base = f"http://127.0.0.1:{port}/fhir"
            asyncio.run(run(base, db, monday, args.seconds, family(proc.pid), token, tmp, goals))
        finally:
            proc.terminate()
            proc.wait(timeout=20)
        if name == "sqlite" and args.bookings:
            year_phase(tmp, monday, args.workers, args.bookings, goals)
        goals.print()
    if not mongo:
        print("== mongodb: skipped (set FHIR_SERVER_BENCH_MONGODB_URL to a MongoDB to run it)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
