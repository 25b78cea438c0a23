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
from resources.fhir_dates import parse_instant

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
