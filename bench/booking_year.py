"""The year phase of bench/booking.py: one schedule's 31 days of free time on an empty
calendar, and on one holding 100,000 bookings spread over a year (goal: < 15 ms p50 and
within 1.5 x of the empty calendar)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import random
import subprocess
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
from booking_common import BIN, ZONE, Goals, find_latency, serve, server_env, setup_bundle
from rest import admin_token, free_port, wait_up


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
