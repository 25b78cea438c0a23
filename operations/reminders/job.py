"""The reminder job of a server process: plan from the event log, then send what is due,
every `dispatch_seconds` (at most 60), in one process at a time (`operations.leased`, lease
LEASE, taken over within LEASE_US when its holder dies). Both steps are idempotent, so a
restart or a takeover resumes where the work stopped."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from fhir_server.repository import Repository
from operations.leased import Holding, run_leased
from operations.reminders.planner import ReminderPlanner
from operations.reminders.sender import ReminderSender
from resources.fhir_dates import now_us

__all__ = ["JOB", "LEASE", "run_reminders"]

JOB = "reminders"
LEASE = "reminders:job"
LEASE_US = 30_000_000
MAX_INTERVAL_S = 60.0


async def run_reminders(repository: Repository, *, clock: Callable[[], int] = now_us) -> None:
    """Run the job until cancelled (module docstring)."""
    interval = min(repository.settings.dispatch_seconds, MAX_INTERVAL_S)
    planner = ReminderPlanner(repository, clock)
    async with httpx.AsyncClient(follow_redirects=False) as client:
        sender = ReminderSender(repository, client, clock)

        async def round_(holding: Holding) -> None:
            await planner.round()
            await sender.round(holding)

        await run_leased(repository, LEASE, LEASE_US, lambda: interval, round_, "Reminder job")
