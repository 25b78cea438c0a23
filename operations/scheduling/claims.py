"""Time claims of Appointments: which statuses hold time, minute keys, hold expiry — the
vocabulary of the database-backed guarantee that no two non-cancelled bookings or holds share a
minute of one Schedule (SCHEDULING.md "Never double-book"). The claims of one write are planned
by `operations.scheduling.booking_rules`.

Claim keys:
    * `Schedule/{id}#{minute}`: one per minute (µs // 60e6) of [start, end) for every active
      Schedule whose `actor` names a participant of the Appointment (Practitioner,
      PractitionerRole, Location, HealthcareService, Device; declined participants excluded),
      and for the Schedule of each referenced Slot of capacity 1.
    * `ScheduleDay/{id}/{local date}#{seat}`: one of the `max-bookings-per-day` seats of a
      Schedule that sets our extension (the cap is a database guarantee like the rest).
    * `Slot/{id}#{seat}`: one seat of a referenced stored Slot whose SMART Scheduling Links
      `slot-capacity` is above 1 (the Slot's time is then shared up to its capacity, and that
      Slot's Schedule takes no minute claims for this Appointment even when its actors are
      participants).
    * `Patient/{id}#{minute}`: one per minute of each Patient participant (a patient is never
      in two overlapping booked or held appointments).
"""

from __future__ import annotations

from typing import Any

from fhir_server.model import ClaimKey
from operations.scheduling.extensions import DEFAULT_BASE, HOLD_EXPIRES, extension_url
from resources.errors import Conflict
from resources.fhir_dates import format_instant, parse_instant

MINUTE_US = 60_000_000
"""One claim quantum of time: a minute, in µs."""
HOLDING_STATUSES = frozenset({"pending", "booked", "arrived", "checked-in", "fulfilled"})
"""Appointment statuses that hold their time (a hold is `pending`)."""
SCHEDULED_ACTOR_TYPES = frozenset(
    {"Practitioner", "PractitionerRole", "Location", "HealthcareService", "Device"}
)
"""The participant types a Schedule can name as its actor."""
HOLD_EXPIRES_URL = extension_url(HOLD_EXPIRES, DEFAULT_BASE)
"""Its URL under the default extension base (the server may be configured with another)."""
MAX_MINUTES = 24 * 60


def minute_keys(scope: str, start: int, end: int) -> list[ClaimKey]:
    """The minute claims of [start, end) µs UTC on `scope` (partial minutes included)."""
    first = start // MINUTE_US
    last = -(-end // MINUTE_US)
    return [ClaimKey(scope, q) for q in range(first, last)]


def hold_expiry(appointment: dict[str, Any], url: str = HOLD_EXPIRES_URL) -> int | None:
    """The hold expiry (µs UTC) from our `hold-expires` extension (valueInstant), or None.

    Args:
        appointment: an Appointment as FHIR JSON.
        url: the extension's URL (`extension_url(HOLD_EXPIRES, base)` of the configured base).

    Raises:
        ValueError: the valueInstant is not a FHIR instant.
    """
    for ext in appointment.get("extension") or []:
        if isinstance(ext, dict) and ext.get("url") == url:
            value = ext.get("valueInstant")
            if isinstance(value, str):
                return parse_instant(value)
    return None


def time_taken(scope: str, quantum: int | None = None, capacity: int | None = None) -> Conflict:
    """A client-facing 409 for a taken claim, without naming the other booking (SCHEDULING.md
    "Errors"): detail `patient-conflict` for a patient's own time, else `slot-unavailable`.

    Args:
        scope: the claim scope (`Schedule/{id}`, `Slot/{id}`, `ScheduleDay/{id}/{date}`,
            `Patient/{id}`).
        quantum: the minute (µs // 60e6) of a minute claim, when known.
        capacity: the seats of a Slot or day, when known.
    """
    when = f" at {format_instant(quantum * MINUTE_US)}" if quantum is not None else ""
    if scope.startswith("Patient/"):
        return Conflict(
            f"{scope} already has a booked or held appointment{when}",
            details_code="patient-conflict",
        )
    if scope.startswith("Schedule/") and quantum is not None:
        text = f"{scope} is already booked or held{when}"
    elif scope.startswith("ScheduleDay/"):
        _, schedule_id, day = scope.split("/", 2)
        per_day = f" ({capacity} per day)" if capacity else ""
        text = f"Schedule/{schedule_id} is fully booked on {day}{per_day}"
    elif scope.startswith("Slot/"):
        text = f"{scope} has no seat left"
    else:
        text = f"{scope} is taken" if scope else "it is taken"
    return Conflict(f"The time is no longer free: {text}", details_code="slot-unavailable")


def key_taken(key: str) -> Conflict:
    """`time_taken` for a claim key as a store reports it (`{scope}#{quantum}`)."""
    scope, _, quantum = key.rpartition("#")
    minute = quantum.lstrip("-").isdigit() and scope.startswith(("Schedule/", "Patient/"))
    return time_taken(scope, int(quantum) if minute else None)
