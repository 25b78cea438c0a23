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
3. deletes `$find` proposals past their `proposal-expires` (they never held time).

A cancel that loses a race (the hold was booked meanwhile) is skipped: its version changed. The
sweep is safe to run in several processes at once. `sweep_expired_holds(repository, now)` is
callable directly (tests pass a future `now`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fhir_server.repository import Repository, load_json
from fhir_server.search.query import (
    DateCondition,
    RangeValue,
    StoreQuery,
    TokenCondition,
    TokenValue,
)
from operations.scheduling.appointments import (
    PROPOSAL_TAG,
    SchedulingConfig,
    clear_marks,
    is_proposal,
    patient_ids,
    proposal_expiry,
    scheduling,
)
from operations.scheduling.audit import audit_event
from operations.scheduling.claims import hold_expiry
from operations.scheduling.context import search_all
from resources.errors import Conflict, PreconditionFailed, StoreConflict
from resources.fhir_dates import now_us

log = logging.getLogger(__name__)

SWEEPER = "hold-expiry sweeper"
"""Who the AuditEvent of an expired hold names as requestor."""


def sweep_interval(hold_seconds: int) -> float:
    """Seconds between sweeps: a quarter of the hold time, between 0.25 and 5 seconds."""
    return min(5.0, max(0.25, hold_seconds / 4))


async def sweep_expired_holds(
    repository: Repository, now: int | None = None, *, base_url: str = ""
) -> list[str]:
    """Release expired claims and cancel the Appointments whose hold expired before `now`.

    Args:
        repository: the FHIR repository (its SchedulingService gives the extension base).
        now: µs UTC (default: the current time).
        base_url: this server's FHIR base, for the AuditEvents.

    Returns:
        The ids of the Appointments cancelled, sorted.
    """
    _, config = scheduling(repository)
    now = now_us() if now is None else now
    owners = await repository.store.release_expired(now)
    ids = {owner.split("/", 1)[1] for owner in owners if owner.startswith("Appointment/")}
    pending = StoreQuery("Appointment", (TokenCondition("status", (TokenValue("*", "pending"),)),))
    for appointment in await search_all(repository.store, pending):
        if _expired(appointment, config, now):
            ids.add(str(appointment.get("id")))
    cancelled = []
    for id in sorted(ids):
        if await _cancel(repository, id, now, config, base_url):
            cancelled.append(id)
    return cancelled


async def sweep_expired_proposals(repository: Repository, now: int | None = None) -> int:
    """Delete the `$find` proposals whose `proposal-expires` is before `now` (µs UTC).

    Returns:
        How many were deleted.
    """
    _, config = scheduling(repository)
    now = now_us() if now is None else now
    tag = TokenValue(PROPOSAL_TAG["system"], PROPOSAL_TAG["code"])
    written = _written_before(now - config.proposal_seconds * 1_000_000)
    query = StoreQuery("Appointment", (TokenCondition("_tag", (tag,)), written))
    deleted = 0
    for appointment in await search_all(repository.store, query):
        expires = proposal_expiry(appointment, config)
        if is_proposal(appointment) and expires is not None and expires < now:
            version = (appointment.get("meta") or {}).get("versionId")
            try:
                await repository.delete("Appointment", str(appointment["id"]), if_match=version)
            except (Conflict, PreconditionFailed):
                continue  # held or booked meanwhile: no longer a proposal
            deleted += 1
    return deleted


def _written_before(instant: int) -> DateCondition:
    """`_lastUpdated` before `instant` (µs UTC). `$find` writes a proposal once, expiring its
    lifetime later, so the proposal sweep reads only proposals old enough to have expired,
    not every live proposal on every pass (the expiry itself is still checked; a lapsed
    proposal is refused on use at once, its deletion is only housekeeping). Holds are not
    filtered so: a client may write any `hold-expires`, and cancelling must not wait."""
    return DateCondition("_lastUpdated", (RangeValue("lt", instant, instant),))


def _expired(appointment: dict[str, Any], config: SchedulingConfig, now: int) -> bool:
    if appointment.get("status") != "pending":
        return False
    try:
        expires = hold_expiry(appointment, config.hold_url)
    except ValueError:
        return False
    return expires is not None and expires < now


async def _cancel(
    repository: Repository, id: str, now: int, config: SchedulingConfig, base_url: str
) -> bool:
    """Cancel Appointment `id` if it is still a hold that expired before `now`."""
    stored = await repository.store.read("Appointment", id)
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
        patients=patient_ids(content, base_url),
        base_url=base_url,
        requestor=SWEEPER,
    )
    try:
        op, _ = await repository.prepare_update(
            "Appointment", id, content, if_match=str(stored.version_id)
        )
        if op is None:
            return False
        await repository.apply([op, await repository.prepare_create(audit, validated=True)])
    except (StoreConflict, PreconditionFailed):
        return False
    return True


async def run_sweeper(repository: Repository, interval: float, base_url: str = "") -> None:
    """Sweep every `interval` seconds until cancelled (the app's lifespan task). A failing
    sweep is logged and retried at the next tick; it never stops the loop."""
    while True:
        await asyncio.sleep(interval)
        try:
            await sweep_expired_holds(repository, base_url=base_url)
            await sweep_expired_proposals(repository)
        except Exception:
            log.exception("The hold and proposal sweep failed; retrying in %.2f s", interval)
