"""Confirmations and change notices (seed: "sends confirmation to both parties"): when an
Appointment becomes `booked`, moves while booked, or is cancelled (or deleted) after being
booked, a CommunicationRequest of category `notification` is planned for each Patient
participant (by its best channel the server can send on, as reminders) and each practitioner
with an email (when the server sends email) (a
Practitioner participant, or a PractitionerRole participant's practitioner), due at once,
sent by the reminder sender. Ids are deterministic per Appointment version and recipient, so
planning an event again changes nothing.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from fhir_server.model import StoredResource
from fhir_server.repository import Repository
from operations.reminders.requests import MEDIUM_SYSTEM, channels_of, medium_for
from operations.reminders.text import appointment_zone, describe_time, who_and_where
from operations.scheduling.appointments import Participants
from operations.scheduling.changes import content_of, previous_version
from operations.scheduling.waitlist import WAITLIST_SYSTEM
from resources.fhir_dates import format_instant

__all__ = ["NOTIFICATION", "OFFER", "is_offer", "notice_request", "plan_notices", "transition"]

NOTIFICATION = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/communication-category",
            "code": "notification",
        }
    ]
}

OFFER = {"coding": [{"system": WAITLIST_SYSTEM, "code": "offer"}]}
"""The second category of a waitlist offer's message (`operations.waitlist`): sent only while
the offer is held."""


def is_offer(request: dict[str, Any]) -> bool:
    """Whether a CommunicationRequest is a waitlist offer's message."""
    return OFFER in (request.get("category") or [])


def notice_request(
    id: str,
    recipient: str,
    medium: str,
    appointment_id: str,
    text: str,
    due_us: int,
    *,
    offer: bool = False,
) -> dict[str, Any]:
    """A notice (category `notification`; with `offer`, a waitlist offer's message) to
    `recipient` (`Patient/x` or `Practitioner/y`) by `medium` about the Appointment, due at
    `due_us` (µs UTC)."""
    at = format_instant(due_us)
    notice: dict[str, Any] = {
        "resourceType": "CommunicationRequest",
        "id": id,
        "status": "active",
        "category": [NOTIFICATION, OFFER] if offer else [NOTIFICATION],
        "priority": "urgent" if offer else "routine",
        "medium": [{"coding": [{"system": MEDIUM_SYSTEM, "code": medium}]}],
        "recipient": [{"reference": recipient}],
        "basedOn": [{"reference": f"Appointment/{appointment_id}"}],
        "payload": [{"contentString": text}],
        "occurrenceDateTime": at,
        "authoredOn": at,
    }
    if recipient.startswith("Patient/"):
        notice["subject"] = {"reference": recipient}
    return notice


WORDS = {"booked": "is confirmed", "moved": "has moved to this time", "cancelled": "is cancelled"}
"""How a notice says what happened."""


def transition(before: dict[str, Any] | None, after: dict[str, Any] | None) -> str | None:
    """`booked`, `moved` or `cancelled` for a change worth telling, else None."""
    was = (before or {}).get("status") == "booked"
    now = (after or {}).get("status") == "booked"
    if now and not was:
        return "booked"
    if now and was and (before or {}).get("start") != (after or {}).get("start"):
        return "moved"
    if was and not now and (after is None or after.get("status") == "cancelled"):
        return "cancelled"
    return None


async def _recipients(
    repository: Repository, appointment: dict[str, Any], now_iso: str
) -> list[tuple[str, str]]:
    """`(reference, medium)` of who is told: patients by their best channel, practitioners
    with an email by email."""
    base = repository.settings.extension_base
    channels = channels_of(repository.settings)
    out: list[tuple[str, str]] = []
    participants = Participants(appointment, repository)
    found = await repository.lookup.read_json([("Patient", p) for p in participants.patients])
    for patient_id in participants.patients:
        patient = found.get(("Patient", patient_id))
        medium = medium_for(patient, base, now_iso, channels) if patient else None
        if medium is not None:
            out.append((f"Patient/{patient_id}", medium))
    practitioners: list[str] = []
    for rtype, rid in participants.actors:
        if rtype == "Practitioner":
            practitioners.append(rid)
        elif rtype == "PractitionerRole":
            role = (await repository.lookup.read_json([(rtype, rid)])).get((rtype, rid)) or {}
            pair = repository.reference(str((role.get("practitioner") or {}).get("reference"))).pair
            if pair is not None and pair[0] == "Practitioner":
                practitioners.append(pair[1])
    people = await repository.lookup.read_json([("Practitioner", p) for p in practitioners])
    for practitioner_id in dict.fromkeys(practitioners):
        person = people.get(("Practitioner", practitioner_id)) or {}
        if medium_for(person, base, now_iso, channels & {"email"}) is not None:
            out.append((f"Practitioner/{practitioner_id}", "EMAILWRIT"))
    return out


async def plan_notices(repository: Repository, version: StoredResource, now: int) -> int:
    """Plan the notices one Appointment event (`version`) calls for, due at `now` (µs UTC);
    return how many."""
    after = orjson.loads(version.content) if version.content else None
    before = content_of(await previous_version(repository, version)) or None
    kind = transition(before, after)
    shown = after or before
    if kind is None or shown is None or not shown.get("start"):
        return 0
    zone = await appointment_zone(repository, shown)
    practitioner, place = await who_and_where(repository, shown)
    when = describe_time(str(shown["start"]), zone)
    text = f"Your appointment on {when}"
    text += f" with {practitioner}" if practitioner else ""
    text += f" at {place}" if place else ""
    text += f" {WORDS[kind]}."
    at = format_instant(now)
    planned = 0
    for recipient, medium in await _recipients(repository, shown, at):
        key = f"{version.id}|{version.version_id}|{recipient}|{kind}"
        rid = f"notice-{hashlib.sha256(key.encode()).hexdigest()[:40]}"
        if await repository.lookup.read("CommunicationRequest", rid) is not None:
            continue
        notice = notice_request(rid, recipient, medium, version.id, text, now)
        await repository.update("CommunicationRequest", rid, notice)
        planned += 1
    return planned
