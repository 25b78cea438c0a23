"""Reminder benchmark: 10,000 reminders due in the same minute, sent by email.

Usage: `.venv/bin/python bench/reminders.py [--count 10000]`.
Builds a fresh SQLite store with `--count` Patients (each with an email) and one booked
Appointment each, all starting within the same minute; runs the reminder planner (offset
PT30M) over the event log; then, with the clock set to the end of that minute (the latest a
job checking every 60 s can first see a reminder due at its start), runs the sender against
a real SMTP server (aiosmtpd on 127.0.0.1, in this process's threads).

The bookings' confirmations (notices, due at once) are sent first and counted apart.
Prints planning time, send rate (messages/s), lateness (receipt - trigger time) p50/p99/max
against the 30-minute guarantee, peak RSS, and a baseline: the same number of bare
`aiosmtplib` sends of a fixed message to the same server (the floor of the SMTP exchange).
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiosmtplib
import httpx
from aiosmtpd.controller import Controller

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fhir_server.app import build_repositories
from fhir_server.config import Settings
from fhir_server.storage.sqlite import SQLiteStore
from operations.reminders.planner import ReminderPlanner
from operations.reminders.sender import ReminderSender
from resources.fhir_dates import format_instant, now_us

US = 1_000_000


class Sink:
    def __init__(self) -> None:
        self.received: list[float] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd)
        self.received.append(time.time())
        return "250 OK"


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] if ordered else float("nan")


async def run(count: int, port: int, sink: Sink) -> dict[str, float]:
    tmp = Path(tempfile.mkdtemp(prefix="fhir-reminders-"))
    store = SQLiteStore(str(tmp / "bench.db"))
    await store.start()
    settings = Settings(
        database_url=f"sqlite:///{tmp / 'bench.db'}",
        base_url="http://127.0.0.1:8080/fhir",
        auth=False,
        reminder_offsets="PT30M",
        smtp_url=f"smtp://127.0.0.1:{port}",
    )
    factory = build_repositories(store, settings)
    writer = factory.for_job("bench")
    shift = 0

    def clock() -> int:
        return now_us() + shift

    planner = ReminderPlanner(factory.for_job("reminders"), clock)
    await planner.start()
    minute = (now_us() // (60 * US) + 120) * 60 * US  # a minute two hours from now
    t0 = time.perf_counter()
    for i in range(count):
        patient = {
            "resourceType": "Patient",
            "id": f"p{i}",
            "telecom": [{"system": "email", "value": f"p{i}@example.org"}],
        }
        await writer.update("Patient", f"p{i}", patient)
        start = minute + 30 * 60 * US + (i * 60 * US) // count  # due within one minute
        await writer.create(
            {
                "resourceType": "Appointment",
                "status": "booked",
                "start": format_instant(start),
                "end": format_instant(start + 15 * 60 * US),
                "participant": [{"actor": {"reference": f"Patient/p{i}"}, "status": "accepted"}],
            }
        )
    loaded = time.perf_counter() - t0
    t0 = time.perf_counter()
    while await planner.round():
        pass
    planned = time.perf_counter() - t0
    triggers = [minute + (i * 60 * US) // count for i in range(count)]
    async with httpx.AsyncClient() as client:
        sender = ReminderSender(factory.for_job("reminders"), client, clock)
        t0 = time.perf_counter()
        notices = await sender.round()  # the bookings' confirmations, due at once
        noticing = time.perf_counter() - t0
        sink.received.clear()
        shift = minute + 60 * US - now_us()  # the clock reads the end of the due minute
        begin_real, begin_fake = time.time(), clock()
        t0 = time.perf_counter()
        sent = await sender.round()
        sending = time.perf_counter() - t0
    # receipt time on the shifted clock: fake "now" at the start plus real time elapsed since
    receipts = [begin_fake + (r - begin_real) * US for r in sink.received]
    lateness = [(r - t) / US for r, t in zip(sorted(receipts), sorted(triggers), strict=False)]
    await store.close()
    sink.received.clear()
    t0 = time.perf_counter()
    for _ in range(min(count, 2000)):
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = "a@x.org", "b@x.org", "floor"
        message.set_content("floor")
        await aiosmtplib.send(message, hostname="127.0.0.1", port=port)
    floor = min(count, 2000) / (time.perf_counter() - t0)
    return {
        "count": count,
        "loaded_s": loaded,
        "planned_s": planned,
        "sent": sent,
        "notices": notices,
        "notice_rate": notices / noticing if noticing else float("nan"),
        "rate": sent / sending,
        "floor_rate": floor,
        "late_p50": pct(lateness, 0.5),
        "late_p99": pct(lateness, 0.99),
        "late_max": max(lateness, default=float("nan")),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--count", type=int, default=10_000)
    args = parser.parse_args()
    sink = Sink()
    from rest import free_port

    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        out = asyncio.run(run(args.count, port, sink))
    finally:
        controller.stop()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"{out['count']} reminders due in one minute: loaded in {out['loaded_s']:.1f} s, planned in {out['planned_s']:.1f} s"
    )
    print(
        f"sent {out['sent']} in one round: {out['rate']:.0f} messages/s "
        f"(bare aiosmtplib sends to the same server: {out['floor_rate']:.0f}/s, ratio {out['rate'] / out['floor_rate']:.2f})"
    )
    print(
        f"lateness (receipt - trigger, first look at the end of the minute): p50 {out['late_p50']:.0f} s, "
        f"p99 {out['late_p99']:.0f} s, max {out['late_max']:.0f} s (guarantee: 1800 s)"
    )
    print(f"before that, {out['notices']} booking confirmations at {out['notice_rate']:.0f}/s")
    print(f"peak RSS {rss:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    raise SystemExit(main())
