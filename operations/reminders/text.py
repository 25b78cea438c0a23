"""The words of a reminder: when (in the appointment's own time zone), with whom, where, and
for a virtual visit the join link.

The zone is the Appointment's `timezone` extension, else the zone of the first scheduled
actor's Schedule (SCHEDULING.md "Time zone"), else the server default. The practitioner is a
Practitioner participant, or a PractitionerRole participant's practitioner; the place a
Location participant, or that PractitionerRole's first location. A virtual visit is an
Appointment whose `supportingInformation` names an `Endpoint`: its `address` is the join link.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from fhir_server.repository import Repository
from fhir_server.search.query import ReferenceCondition, ReferenceValue, StoreQuery
from operations.scheduling.appointments import Participants
from operations.scheduling.extensions import ExtensionError, timezone_code
from operations.scheduling.service import SchedulingService
from operations.scheduling.timezones import is_known_zone
from resources.fhir_dates import parse_instant

__all__ = [
    "appointment_zone",
    "describe",
    "describe_time",
    "human_name",
    "who_and_where",
]


def human_name(resource: dict[str, Any] | None) -> str | None:
    """`text`, else prefix, given and family names of the first HumanName, else `name` as a
    string (a Location's); None if there is none."""
    if not resource:
        return None
    name = resource.get("name")
    if isinstance(name, str):
        return name
    for entry in name or []:
        if not isinstance(entry, dict):
            continue
        if entry.get("text"):
            return str(entry["text"])
        parts = [*entry.get("prefix", []), *entry.get("given", []), entry.get("family")]
        words = " ".join(str(p) for p in parts if p)
        if words:
            return words
    return None


async def _read(repository: Repository, text: Any) -> dict[str, Any] | None:
    pair = repository.reference(str(text)).pair if text else None
    if pair is None:
        return None
    found = await repository.lookup.read_json([pair])
    return found.get(pair)


async def appointment_zone(repository: Repository, appointment: dict[str, Any]) -> str:
    """The IANA zone the appointment's time is told in (module docstring)."""
    try:
        code = timezone_code(appointment)
    except ExtensionError:
        code = None
    if code and is_known_zone(code):
        return code
    actors = Participants(appointment, repository).actors
    if actors:
        refs = tuple(ReferenceValue(ref_type=t, ref_id=i) for t, i in actors)
        query = StoreQuery("Schedule", (ReferenceCondition("actor", refs),), count=1)
        page = await repository.lookup.search(query)
        if page.resources and page.resources[0].content:
            schedule = orjson.loads(page.resources[0].content)
            context = await SchedulingService(repository).schedule_context(schedule)
            return context.tz
    return repository.settings.default_timezone


async def who_and_where(
    repository: Repository, appointment: dict[str, Any]
) -> tuple[str | None, str | None]:
    """The practitioner's and the place's names (module docstring)."""
    practitioner = place = None
    for participant in appointment.get("participant") or []:
        if not isinstance(participant, dict) or participant.get("status") == "declined":
            continue
        ref = str((participant.get("actor") or {}).get("reference") or "")
        pair = repository.reference(ref).pair
        actor = await _read(repository, ref) if pair is not None else None
        if pair is None or actor is None:
            continue
        if pair[0] == "Practitioner":
            practitioner = practitioner or human_name(actor)
        elif pair[0] == "PractitionerRole":
            person = await _read(repository, (actor.get("practitioner") or {}).get("reference"))
            practitioner = practitioner or human_name(person)
            for location in actor.get("location") or []:
                place = place or human_name(await _read(repository, location.get("reference")))
        elif pair[0] == "Location":
            place = place or human_name(actor)
    return practitioner, place


def describe_time(instant: str, zone: str) -> str:
    """`Sunday 1 November 2026 at 09:00 EST (America/New_York)`."""
    start = dt.datetime.fromtimestamp(parse_instant(instant) / 1e6, ZoneInfo(zone))
    return start.strftime("%A %-d %B %Y at %H:%M %Z") + f" ({zone})"


async def describe(repository: Repository, appointment: dict[str, Any]) -> str:
    """The reminder text of an Appointment (module docstring)."""
    zone = await appointment_zone(repository, appointment)
    when = describe_time(str(appointment["start"]), zone)
    practitioner, place = await who_and_where(repository, appointment)
    text = f"Reminder: your appointment is on {when}"
    if practitioner:
        text += f" with {practitioner}"
    if place:
        text += f" at {place}"
    text += "."
    for info in appointment.get("supportingInformation") or []:
        pair = repository.reference(str(info.get("reference") or "")).pair
        if pair is not None and pair[0] == "Endpoint":
            endpoint = await _read(repository, info.get("reference"))
            if endpoint and endpoint.get("address"):
                text += f" Join the video visit: {endpoint['address']}"
                break
    return text
