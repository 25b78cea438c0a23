"""Holds that expire, and proposals that lapse: the sweep, and the background task running it.

SCHEDULING.md "Operations": "`$hold` marks the time busy-tentative for FHIR_SERVER_HOLD_SECONDS.
An expired hold frees the time at once (checked on read, swept in the background) and its
Appointment becomes `cancelled`." The time is free at once because a hold's claims carry its
expiry and the store treats expired claims as free (`ResourceStore.claims_in`, `apply`); this
sweep then

1. deletes the expired claim rows (`ResourceStore.release_expired`),
2. cancels, through the Repository, each `pending` Appointment whose `hold-expires` has passed
   (those owning expired claims, and any other pending one whose hold has passed, e.g. one whose
   claims another booking already took over), auditing each as an AuditEvent (ITI-116), and
3. purges lapsed records: `$find` proposals past their `proposal-expires` (records that never
   held time) and the authorization server's expired codes and grants, and
4. settles the atomic writes a crashed process left unfinished (`RECOVER_SECONDS`; on MongoDB
   without transactions: undone or completed from the journal, `ResourceStore.recover`).

A cancel that loses a race (the hold was booked meanwhile) is skipped: its version changed. The
sweep is safe to run in several processes at once; `run_sweeper` runs it in the one holding
its lease. It runs with a job repository
(`RepositoryFactory.for_job(SWEEPER)`); `sweep_expired_holds(repository, now)` is callable
directly (tests pass a future `now`).
"""

from __future__ import annotations

import logging
from typing import Any

from fhir_server.metrics import HOLDS_EXPIRED
from fhir_server.repository import Repository, load_json
from fhir_server.search.query import StoreQuery, TokenCondition, TokenValue
from operations.leased import Holding, run_leased
from operations.scheduling.appointments import (
    SchedulingConfig,
    clear_marks,
    patient_ids,
    scheduling,
)
from operations.scheduling.audit import audit_event
from operations.scheduling.claims import hold_expiry
from resources.errors import PreconditionFailed, StoreConflict
from resources.fhir_dates import now_us

log = logging.getLogger(__name__)

SWEEPER = "hold-expiry sweeper"
"""Who the AuditEvent of an expired hold names as requestor (the sweeper's job name)."""
PURGE_SECONDS = 60
"""How often lapsed records are deleted (s)."""
RECOVER_SECONDS = 10
"""How often interrupted writes are settled (s): a third of the store's 30 s write lease, so
a crashed write is settled within about 40 s."""


def sweep_interval(hold_seconds: int) -> float:
    """Seconds between sweeps: a quarter of the hold time, between 0.25 and 5 seconds."""
    return min(5.0, max(0.25, hold_seconds / 4))


async def sweep_expired_holds(repository: Repository, now: int | None = None) -> list[str]:
    """Release expired claims and cancel the Appointments whose hold expired before `now`.

    Args:
        repository: a job repository of the server (`SystemPolicy`; its base URL and name go
            into the AuditEvents).
        now: µs UTC (default: the current time).

    Returns:
        The ids of the Appointments cancelled, sorted.
    """
    _, config = scheduling(repository)
    now = now_us() if now is None else now
    owners = await repository.release_expired_claims(now)
    ids = {owner.split("/", 1)[1] for owner in owners if owner.startswith("Appointment/")}
    pending = StoreQuery("Appointment", (TokenCondition("status", (TokenValue("*", "pending"),)),))
    for appointment in await repository.lookup.search_all(pending):
        if _expired(appointment, config, now):
            ids.add(str(appointment.get("id")))
    cancelled = []
    for id in sorted(ids):
        if await _cancel(repository, id, now, config):
            cancelled.append(id)
            HOLDS_EXPIRED.inc()
    return cancelled


def _expired(appointment: dict[str, Any], config: SchedulingConfig, now: int) -> bool:
    if appointment.get("status") != "pending":
        return False
    try:
        expires = hold_expiry(appointment, config.hold_url)
    except ValueError:
        return False
    return expires is not None and expires < now


async def _cancel(repository: Repository, id: str, now: int, config: SchedulingConfig) -> bool:
    """Cancel Appointment `id` if it is still a hold that expired before `now`."""
    stored = await repository.lookup.read("Appointment", id)
    if stored is None or stored.deleted:
        return False
    appointment = load_json(stored.content)
    if not _expired(appointment, config, now):
        return False  # booked, cancelled or renewed meanwhile
    content = {
        **clear_marks(appointment, config),
        "status": "cancelled",
        "cancelationReason": {"text": "The hold expired"},
    }
    audit = audit_event(
        transaction="ITI-116",
        action="U",
        appointment_id=id,
        patients=patient_ids(content, repository),
        base_url=repository.base_url,
        requestor=repository.policy.requestor(),
    )
    try:
        prepared = await repository.prepare_update(
            "Appointment", id, content, if_match=str(stored.version_id)
        )
        if prepared.op is None:
            return False
        await repository.apply([prepared, await repository.prepare_audit(audit)])
    except (StoreConflict, PreconditionFailed):
        return False
    return True


SWEEPER_LEASE = "holds:sweeper"
"""The sweeper's lease: one process of those sharing the store sweeps at a time."""
SWEEPER_LEASE_US = 5_000_000
"""Its time to live (µs): another process takes the sweep over within 5 s of the holder dying."""


async def run_sweeper(repository: Repository, interval: float) -> None:
    """Sweep expired holds every `interval` seconds, settle interrupted writes every
    `RECOVER_SECONDS`, and lapsed records (proposals, authorization codes and grants: they
    count as absent once expired, their deletion is housekeeping) every `PURGE_SECONDS`, until
    cancelled (the app's lifespan task, with a job repository), in the one process holding
    the lease SWEEPER_LEASE (`operations.leased`; the sweep is safe twice over, the lease
    saves the other workers the work). A failing round is logged and retried at the next
    tick; it never stops."""
    last = {"purged": now_us(), "recovered": now_us()}

    async def round_(holding: Holding) -> None:
        now = now_us()
        if now - last["recovered"] >= RECOVER_SECONDS * 1_000_000:
            last["recovered"] = now
            await repository.recover_interrupted_writes(now)
        await sweep_expired_holds(repository)
        if now - last["purged"] >= PURGE_SECONDS * 1_000_000:
            last["purged"] = now
            await repository.records.purge_records(now)

    await run_leased(
        repository, SWEEPER_LEASE, SWEEPER_LEASE_US, lambda: interval, round_, "Hold sweeper"
    )
