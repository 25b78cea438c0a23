"""Notification benchmark: latency from a `$book` commit to the rest-hook receiving it.

Usage: `.venv/bin/python bench/notifications.py [--seconds 20] [--rate 50]`.
Starts `fhir-server serve` (one uvicorn worker) on a fresh SQLite file with the booking
benchmark's clinic (100 PractitionerRoles and Schedules, bench/booking.py), a rest-hook
receiver (uvicorn on 127.0.0.1 in this process) and an R4 Subscription
`Appointment?status=booked` with an `application/fhir+json` payload. Then it books at an
offered `--rate` per second (open loop) for `--seconds`, and for every booked Appointment
takes `receipt time - meta.lastUpdated` (the server stamps `lastUpdated` just before the
commit; both clocks are this machine's).

Prints p50/p95/p99/max notification latency, how many arrived (expect all, none twice), the
booking latency at that rate, server RSS, and a baseline: the same receiver's round trip for
a direct PUT from this process (the floor of any delivery), with the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from booking_common import parameters, pct, serve, server_env, setup_bundle
from rest import admin_token, free_port, rss_mib, wait_up

RECEIVED: dict[str, float] = {}
DUPLICATES: list[str] = []


async def receiver_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A bare ASGI rest-hook receiver: notes when each Appointment id first arrives."""
    if scope["type"] != "http":
        return
    now = time.time()
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    appointment_id = scope["path"].rsplit("/", 1)[-1]
    if scope["method"] == "PUT" and scope["path"].startswith("/hook/Appointment/"):
        if appointment_id in RECEIVED:
            DUPLICATES.append(appointment_id)
        else:
            RECEIVED[appointment_id] = now
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def start_receiver(port: int) -> uvicorn.Server:
    config = uvicorn.Config(receiver_app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.02)
    return server


async def free_slots(client: httpx.AsyncClient, monday: dt.date) -> list[dict[str, Any]]:
    start = f"{monday + dt.timedelta(days=7)}T00:00:00Z"
    end = f"{monday + dt.timedelta(days=38)}T00:00:00Z"
    slots: list[dict[str, Any]] = []
    for i in range(1, 100):
        r = await client.get(
            f"/Schedule/sched-{i}/$find-slots", params={"start": start, "end": end, "_count": 1000}
        )
        slots += [
            e["resource"] for e in r.json().get("entry", []) if e["search"]["mode"] == "match"
        ]
    return slots


def booking(slot: dict[str, Any], n: int) -> dict[str, Any]:
    role = slot["schedule"]["reference"].split("-")[-1]
    return parameters(
        {
            "resourceType": "Appointment",
            "status": "proposed",
            "start": slot["start"],
            "end": slot["end"],
            "slot": [{"reference": f"Slot/{slot['id']}"}],
            "participant": [
                {"actor": {"reference": f"Patient/notify-{n}"}, "status": "accepted"},
                {"actor": {"reference": f"PractitionerRole/role-{role}"}, "status": "accepted"},
            ],
        }
    )


async def run(base: str, token: str, hook: str, seconds: float, rate: float) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=200)
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=30) as c:
        setup = await c.post(
            "",
            json=setup_bundle(dt.date.today() + dt.timedelta(days=7 - dt.date.today().weekday())),
        )
        assert setup.status_code == 200, setup.text[:300]
        monday = dt.date.today() + dt.timedelta(days=7 - dt.date.today().weekday())
        slots = await free_slots(c, monday)
        sub = {
            "resourceType": "Subscription",
            "status": "requested",
            "reason": "bench",
            "criteria": "Appointment?status=booked",
            "channel": {"type": "rest-hook", "endpoint": hook, "payload": "application/fhir+json"},
        }
        created = await c.post("/Subscription", json=sub)
        assert created.status_code == 201, created.text
        await asyncio.sleep(1.0)
        committed: dict[str, float] = {}
        book_ms: list[float] = []

        async def one(n: int) -> None:
            t = time.perf_counter()
            r = await c.post("/Appointment/$book", json=booking(slots[n], n))
            book_ms.append((time.perf_counter() - t) * 1000)
            if r.status_code == 200:
                appt = r.json()["entry"][0]["resource"]
                stamp = dt.datetime.fromisoformat(
                    appt["meta"]["lastUpdated"].replace("Z", "+00:00")
                )
                committed[appt["id"]] = stamp.timestamp()

        tasks = []
        t0 = time.perf_counter()
        total = min(int(seconds * rate), len(slots))
        for n in range(total):
            delay = t0 + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(n)))
        await asyncio.gather(*tasks)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not set(committed) <= set(RECEIVED):  # noqa: ASYNC110 (filled by the receiver thread)
            await asyncio.sleep(0.05)
        latencies = [(RECEIVED[i] - at) * 1000 for i, at in committed.items() if i in RECEIVED]
    async with httpx.AsyncClient() as direct:
        floor: list[float] = []
        for n in range(200):
            t = time.perf_counter()
            await direct.put(f"{hook}/Baseline/{n}", content=b"{}")
            floor.append((time.perf_counter() - t) * 1000)
    return {
        "booked": len(committed),
        "received": sum(1 for i in committed if i in RECEIVED),
        "duplicates": len(DUPLICATES),
        "p50": pct(latencies, 0.5),
        "p95": pct(latencies, 0.95),
        "p99": pct(latencies, 0.99),
        "max": max(latencies, default=float("nan")),
        "book_p50": pct(book_ms, 0.5),
        "book_p99": pct(book_ms, 0.99),
        "floor_p50": pct(floor, 0.5),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=50.0)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="fhir-notify-"))
    port, hook_port = free_port(), free_port()
    env = server_env(f"sqlite:///{tmp / 'bench.db'}", port, tmp)
    proc = serve(env, port, 1)  # one uvicorn worker
    receiver = start_receiver(hook_port)
    try:
        base = f"http://127.0.0.1:{port}/fhir"
        wait_up(f"{base}/metadata", proc)
        token = admin_token(env)
        hook = f"http://127.0.0.1:{hook_port}/hook"
        out = asyncio.run(run(base, token, hook, args.seconds, args.rate))
        print(
            f"offered {args.rate:.0f} bookings/s for {args.seconds:.0f} s: booked {out['booked']}, "
            f"notified {out['received']}, duplicates {out['duplicates']}"
        )
        print(
            f"notification latency (commit -> rest-hook receipt): p50 {out['p50']:.1f} ms, "
            f"p95 {out['p95']:.1f} ms, p99 {out['p99']:.1f} ms, max {out['max']:.1f} ms"
        )
        print(
            f"$book latency at that rate: p50 {out['book_p50']:.1f} ms, p99 {out['book_p99']:.1f} ms"
        )
        print(
            f"baseline: direct PUT to the receiver p50 {out['floor_p50']:.2f} ms "
            f"(notification p50 = {out['p50'] / out['floor_p50']:.0f}x the floor)"
        )
        print(f"server RSS {rss_mib(proc.pid):.0f} MiB")
        print(
            orjson.dumps(
                {k: round(v, 2) if isinstance(v, float) else v for k, v in out.items()}
            ).decode()
        )
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        receiver.should_exit = True
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
