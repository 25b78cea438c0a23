"""What reminders a booked Appointment should have, as CommunicationRequests (R4
`communicationrequest.html`).

One per Patient participant and configured offset (`FHIR_SERVER_REMINDER_OFFSETS`, ISO 8601
durations): id `reminder_id(appointment, patient, offset)` (deterministic, so planning again
is idempotent), `status` active, `category` reminder, `occurrenceDateTime` = start - offset
(UTC), `basedOn` the Appointment, `subject`/`recipient` the Patient, `medium` EMAILWRIT or
SMSWRIT (v3 ParticipationMode) from the Patient's best-ranked usable `telecom` (an `email`, or
an `sms` / `mobile` `phone`; not one whose `period` ended, not a channel the Patient opted out
of with the extension OPT_OUT: `valueCode` `email` or `sms`, repeatable), the offset in
`identifier` (system OFFSET_SYSTEM) and a `payload` text written at planning time.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import TypeAdapter, ValidationError

from fhir_server.config import Settings
from operations.scheduling.extensions import REMINDER_OPT_OUT
from resources.fhir_dates import format_instant

__all__ = [
    "CATEGORY",
    "MEDIUM_SYSTEM",
    "OFFSET_SYSTEM",
    "OPT_OUT",
    "Offset",
    "address_for",
    "channels_of",
    "medium_for",
    "parse_offsets",
    "reminder_id",
    "reminder_request",
]

CATEGORY = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/communication-category",
            "code": "reminder",
        }
    ]
}
MEDIUM_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ParticipationMode"
OFFSET_SYSTEM = "urn:fhir-scheduling-server:reminder-offset"
OPT_OUT = REMINDER_OPT_OUT
"""The id of our Patient extension (under `extension_base`) naming a channel the Patient does
not want reminders on: `valueCode` `email` or `sms` (StructureDefinition published with the
others, `operations.scheduling.definitions`)."""
_DURATION = TypeAdapter(dt.timedelta)


@dataclass(frozen=True, slots=True)
class Offset:
    """One reminder offset: `text` as configured (`P1D`, `PT2H`, `P1DT2H`), its calendar
    `days` (weeks count 7) and the rest in `us` (µs)."""

    text: str
    days: int
    us: int

    def before(self, start_us: int, zone: str) -> int:
        """The instant this offset before `start_us` (µs UTC): the days on the calendar of
        `zone` (the same wall-clock time, across a daylight-saving change), then the rest."""
        at = start_us
        if self.days:
            tz = ZoneInfo(zone)
            local = dt.datetime.fromtimestamp(start_us / 1e6, tz).replace(tzinfo=None)
            earlier = (local - dt.timedelta(days=self.days)).replace(tzinfo=tz)
            at = int(earlier.timestamp() * 1_000_000) + start_us % 1_000_000
        return at - self.us


_DATE_PART = re.compile(r"^P(?:(\d+)W)?(?:(\d+)D)?(T.*)?$")


def parse_offsets(text: str) -> list[Offset]:
    """`P1D,PT2H` as Offsets, in the order given (duplicates dropped).

    Raises:
        ValueError: a part is not a positive ISO 8601 duration of weeks, days, hours,
            minutes and seconds (years and months are refused: their length varies).
    """
    out: list[Offset] = []
    for part in (p.strip().upper() for p in text.split(",")):
        if not part or part in {o.text for o in out}:
            continue
        match = _DATE_PART.match(part)
        if match is None:
            raise ValueError(f"not an ISO 8601 duration of weeks, days and time: {part!r}")
        days = 7 * int(match[1] or 0) + int(match[2] or 0)
        us = 0
        if match[3]:
            try:
                us = int(_DURATION.validate_python("P" + match[3]).total_seconds() * 1_000_000)
            except ValidationError as exc:
                raise ValueError(f"not an ISO 8601 duration: {part!r}") from exc
        if days <= 0 and us <= 0:
            raise ValueError(f"a reminder offset must be positive: {part!r}")
        out.append(Offset(part, days, us))
    return out


def reminder_id(appointment_id: str, patient_id: str, offset: str) -> str:
    """The CommunicationRequest id of one reminder (a FHIR id, 49 characters)."""
    digest = hashlib.sha256(f"{appointment_id}|{patient_id}|{offset}".encode()).hexdigest()
    return f"reminder-{digest[:40]}"


def _opted_out(patient: dict[str, Any], extension_base: str) -> set[str]:
    url = f"{extension_base.rstrip('/')}/{OPT_OUT}"
    return {
        str(e.get("valueCode"))
        for e in patient.get("extension") or []
        if isinstance(e, dict) and e.get("url") == url
    }


def _channel(point: dict[str, Any]) -> str | None:
    system = point.get("system")
    if system == "email":
        return "email"
    if system == "sms" or (system == "phone" and point.get("use") == "mobile"):
        return "sms"
    return None


def _rank(point: dict[str, Any]) -> int:
    rank = point.get("rank")
    return rank if isinstance(rank, int) else 1_000_000


def channels_of(settings: Settings) -> frozenset[str]:
    """The channels this server can send on: `email` with `smtp_url`, `sms` with `sms_url`."""
    return frozenset(
        name for name, url in (("email", settings.smtp_url), ("sms", settings.sms_url)) if url
    )


def medium_for(
    patient: dict[str, Any], extension_base: str, now_iso: str, channels: frozenset[str]
) -> str | None:
    """`EMAILWRIT` or `SMSWRIT` for the Patient's best usable telecom (lowest `rank`, then
    order) on one of the server's `channels`, or None when it has none (then no reminder is
    planned)."""
    out = _opted_out(patient, extension_base) | ({"email", "sms"} - channels)
    best: tuple[int, int, str] | None = None
    for i, point in enumerate(patient.get("telecom") or []):
        if not isinstance(point, dict) or not point.get("value"):
            continue
        channel = _channel(point)
        end = (point.get("period") or {}).get("end")
        if channel is None or channel in out or (end and str(end) < now_iso):
            continue
        if best is None or (_rank(point), i) < best[:2]:
            best = (_rank(point), i, channel)
    if best is None:
        return None
    return "EMAILWRIT" if best[2] == "email" else "SMSWRIT"


def address_for(patient: dict[str, Any], medium: str) -> str | None:
    """The Patient's best-ranked address for `medium` now (email address or phone number)."""
    wanted = "email" if medium == "EMAILWRIT" else "sms"
    points = [
        p
        for p in patient.get("telecom") or []
        if isinstance(p, dict) and _channel(p) == wanted and p.get("value")
    ]
    points.sort(key=_rank)
    return str(points[0]["value"]) if points else None


def reminder_request(
    *,
    id: str,
    appointment_id: str,
    patient_id: str,
    offset: str,
    occurrence_us: int,
    medium: str,
    text: str,
    authored_us: int,
) -> dict[str, Any]:
    """The CommunicationRequest of one reminder (module docstring)."""
    return {
        "resourceType": "CommunicationRequest",
        "id": id,
        "identifier": [{"system": OFFSET_SYSTEM, "value": offset}],
        "status": "active",
        "category": [CATEGORY],
        "priority": "routine",
        "medium": [{"coding": [{"system": MEDIUM_SYSTEM, "code": medium}]}],
        "subject": {"reference": f"Patient/{patient_id}"},
        "recipient": [{"reference": f"Patient/{patient_id}"}],
        "basedOn": [{"reference": f"Appointment/{appointment_id}"}],
        "payload": [{"contentString": text}],
        "occurrenceDateTime": format_instant(occurrence_us),
        "authoredOn": format_instant(authored_us),
    }
