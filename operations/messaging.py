"""The messaging job of a server process, in one process at a time (`operations.leased`,
lease LEASE, taken over within LEASE_US when its holder dies). Every TICK_S second it

1. plans reminders and notices from the event log (`reminders.planner.ReminderPlanner`),
2. offers freed time to the waitlist from the event log (`waitlist.matcher.WaitlistMatcher`),
3. sends what is due (`reminders.sender.ReminderSender`): at once when steps 1 or 2 found work (a
   confirmation or an offer goes out within seconds), else every `dispatch_seconds` (at
   most 60).

Every step is idempotent, so a restart or a takeover resumes where the work stopped."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from fhir_server.repository import Repository
from operations.leased import Holding, run_leased
from operations.reminders.planner import ReminderPlanner
from operations.reminders.sender import ReminderSender
from operations.waitlist.matcher import WaitlistMatcher
from resources.fhir_dates import now_us

__all__ = ["JOB", "LEASE", "run_messaging"]

JOB = "messaging"
"""The job's name (the requestor of the AuditEvents of the holds it makes for offers)."""
LEASE = "reminders:job"
LEASE_US = 5_000_000
"""The lease's time to live (µs): another process takes over within 5 s of the holder dying."""
MAX_INTERVAL_S = 60.0
TICK_S = 1.0
"""How often the event log is looked at (s)."""


async def run_messaging(repository: Repository, *, clock: Callable[[], int] = now_us) -> None:
    """Run the job until cancelled (module docstring)."""
    interval_us = int(min(repository.settings.dispatch_seconds, MAX_INTERVAL_S) * 1_000_000)
    planner = ReminderPlanner(repository, clock)
    waitlist = WaitlistMatcher(repository, clock)
    next_send = 0
    async with httpx.AsyncClient(follow_redirects=False) as client:
        sender = ReminderSender(repository, client, clock)

        async def round_(holding: Holding) -> None:
            nonlocal next_send
            planned = await planner.round()
            offered = await waitlist.round()
            now = clock()
            if planned or offered or now >= next_send:
                next_send = now + interval_us
                await sender.round(holding)

        tick = min(TICK_S, interval_us / 1_000_000)
        await run_leased(repository, LEASE, LEASE_US, lambda: tick, round_, "Messaging job")
