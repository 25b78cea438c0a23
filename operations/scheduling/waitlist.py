"""Waitlist entries: what a patient waits for, and the rules every write of one keeps.

An entry is an Appointment with `status` `waitlist` (R4 `appointment.html`; SCHEDULING.md "A
waitlist entry (`status` `waitlist`, `requestedPeriod`, `priority`) takes no time"):

- a Patient participant (exactly one: the one offered time);
- what it waits for: actor participants (Practitioner, PractitionerRole, Location,
  HealthcareService, Device; kinds AND, repeats OR, as `$find`), and/or `specialty` and
  `serviceType` codes: at least one of them;
- `requestedPeriod`: one or more acceptable windows, each with `start` and `end` (dateTime;
  without an offset read in the server's default zone);
- `priority` (R4: 1 highest .. 9 lowest; 0 or absent = undefined, after every defined one);
  only writers not confined to a patient (staff, EHRs) set or change it;
- `minutesDuration`: the visit length wanted (else the Schedule's);
- our extension `waitlist-replaces` (valueReference): a booked or held Appointment of the same
  patient that an offer must start earlier than, and that booking the offer cancels (move
  earlier).

Entries hold no time (no claims). Offers (`operations.waitlist`) are held Appointments carrying
our `waitlist-offer` extension, naming their entry; booking an offer closes its entry:
`cancelled`, with `cancelationReason` code `waitlist-booked` (WAITLIST_SYSTEM) and the booked
Appointment in the text, in the same atomic write as the booking (`closed_entry`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from fhir_server.repository import Repository
from fhir_server.search.query import TokenValue
from operations.scheduling.appointments import Participants
from operations.scheduling.extensions import WAITLIST_OFFER, WAITLIST_REPLACES, extension_url
from resources.errors import Forbidden, Unprocessable
from resources.fhir_dates import date_range

__all__ = [
    "BOOKED_CODE",
    "EXPIRED_CODE",
    "WAITLIST_SYSTEM",
    "WaitlistEntry",
    "booked_entry",
    "check_entry",
    "check_offer_mark",
    "closed_entry",
    "offer_entry_id",
    "parse_entry",
]

WAITLIST_SYSTEM: Final = "https://fhir-scheduling.example.org/CodeSystem/waitlist"
"""Our code system of waitlist outcomes (`cancelationReason` of closed entries)."""
BOOKED_CODE: Final = "waitlist-booked"
EXPIRED_CODE: Final = "waitlist-expired"
UNDEFINED_PRIORITY: Final = 10
"""The rank of an entry without a priority (R4: 0 = undefined): after priority 9."""
_ENTRY: Final = ("Appointment",)


def _bad(message: str, path: str) -> Unprocessable:
    return Unprocessable(message, code="business-rule", expression=[f"Appointment.{path}"])


def _tokens(concepts: Any) -> tuple[TokenValue, ...]:
    out: list[TokenValue] = []
    for concept in concepts or []:
        for coding in (concept or {}).get("coding") or []:
            if isinstance(coding, dict) and coding.get("code"):
                out.append(TokenValue(coding.get("system") or "*", str(coding["code"])))
    return tuple(out)


def _reference_extension(appointment: dict[str, Any], url: str) -> str | None:
    for extension in appointment.get("extension") or []:
        if isinstance(extension, dict) and extension.get("url") == url:
            ref = (extension.get("valueReference") or {}).get("reference")
            return ref if isinstance(ref, str) else None
    return None


@dataclass(frozen=True, slots=True)
class WaitlistEntry:
    """One waitlist entry, read (module docstring).

    Attributes:
        id: the Appointment id.
        patient: the Patient id.
        actors: wanted actors, `Type/id`.
        specialties, service_types: wanted codes (system "*" when the coding has none).
        windows: the requested periods `(start, end)`, µs UTC, half-open, by start.
        rank: the priority rank (1 highest; UNDEFINED_PRIORITY without one).
        duration_us: the wanted visit length, or None for the Schedule's.
        replaces: the id of the Appointment an offer would replace, or None.
    """

    id: str
    patient: str
    actors: tuple[str, ...]
    specialties: tuple[TokenValue, ...]
    service_types: tuple[TokenValue, ...]
    windows: tuple[tuple[int, int], ...]
    rank: int
    duration_us: int | None
    replaces: str | None


def parse_entry(repository: Repository, id: str, content: dict[str, Any]) -> WaitlistEntry:
    """Read a waitlist entry.

    Raises:
        Unprocessable: (422 `business-rule`) no or several Patients, nothing to wait for, no
            requested period, a period without start and end or ending before it starts, a
            minutesDuration that is not positive, a `waitlist-replaces` that is not a
            reference to an Appointment of this server.
    """
    people = Participants(content, repository)
    if len(people.patients) != 1:
        raise _bad("A waitlist entry names exactly one Patient participant", "participant")
    specialties = _tokens(content.get("specialty"))
    service_types = _tokens(content.get("serviceType"))
    actors = tuple(f"{t}/{i}" for t, i in people.actors)
    if not (actors or specialties or service_types):
        raise _bad(
            "A waitlist entry says what it waits for: an actor participant (Practitioner, "
            "PractitionerRole, Location, HealthcareService), a specialty or a serviceType",
            "participant",
        )
    zone = repository.settings.default_timezone
    windows: list[tuple[int, int]] = []
    for n, period in enumerate(content.get("requestedPeriod") or []):
        start, end = (period or {}).get("start"), (period or {}).get("end")
        if not isinstance(start, str) or not isinstance(end, str):
            raise _bad(
                "Each requestedPeriod of a waitlist entry has a start and an end",
                f"requestedPeriod[{n}]",
            )
        try:
            low, high = date_range(start, zone)[0], date_range(end, zone)[1]
        except ValueError as exc:
            raise _bad(f"requestedPeriod[{n}]: {exc}", f"requestedPeriod[{n}]") from exc
        if high <= low:
            raise _bad(f"requestedPeriod[{n}] ends before it starts", f"requestedPeriod[{n}]")
        windows.append((low, high))
    if not windows:
        raise _bad("A waitlist entry needs a requestedPeriod (when it may be)", "requestedPeriod")
    minutes = content.get("minutesDuration")
    if minutes is not None and (not isinstance(minutes, int) or minutes <= 0):
        raise _bad("minutesDuration must be a positive integer", "minutesDuration")
    priority = content.get("priority")
    rank = priority if isinstance(priority, int) and priority > 0 else UNDEFINED_PRIORITY
    replaces_text = _reference_extension(
        content, extension_url(WAITLIST_REPLACES, repository.settings.extension_base)
    )
    replaces: str | None = None
    if replaces_text is not None:
        pair = repository.reference(replaces_text).pair
        if pair is None or pair[0] != "Appointment":
            raise _bad("waitlist-replaces names an Appointment of this server", "extension")
        replaces = pair[1]
    return WaitlistEntry(
        id=id,
        patient=people.patients[0],
        actors=actors,
        specialties=specialties,
        service_types=service_types,
        windows=tuple(sorted(windows)),
        rank=rank,
        duration_us=minutes * 60_000_000 if isinstance(minutes, int) else None,
        replaces=replaces,
    )


async def check_entry(
    repository: Repository, id: str, content: dict[str, Any], before: dict[str, Any]
) -> WaitlistEntry:
    """The rules of writing a waitlist entry (module docstring), asked by the booking rules
    on every path.

    Raises:
        Unprocessable: (422) see `parse_entry`; `waitlist-replaces` not a booked or held
            Appointment of the entry's patient.
        Forbidden: (403) a writer confined to a patient sets or changes `priority`.
    """
    entry = parse_entry(repository, id, content)
    if content.get("priority") != before.get("priority") and any(
        repository.patient_confined("Appointment", p) for p in ("c", "u")
    ):
        raise Forbidden(
            "The priority of a waitlist entry is set by the clinic: a patient's app leaves "
            "it out (or as stored)",
            expression=["Appointment.priority"],
        )
    if entry.replaces is not None:
        found = await repository.lookup.read_json([("Appointment", entry.replaces)])
        replaced = found.get(("Appointment", entry.replaces))
        if (
            replaced is None
            or replaced.get("status") not in ("booked", "pending")
            or entry.patient not in Participants(replaced, repository).patients
        ):
            raise _bad(
                "waitlist-replaces must name a booked Appointment of the entry's patient",
                "extension",
            )
    return entry


def offer_entry_id(repository: Repository, appointment: dict[str, Any]) -> str | None:
    """The id of the waitlist entry an offer (`waitlist-offer` extension) was made for."""
    text = _reference_extension(
        appointment, extension_url(WAITLIST_OFFER, repository.settings.extension_base)
    )
    pair = repository.reference(text).pair if text else None
    return pair[1] if pair is not None and pair[0] == "Appointment" else None


def closed_entry(entry: dict[str, Any], code: str, text: str) -> dict[str, Any]:
    """The entry `cancelled` with our `cancelationReason` (`BOOKED_CODE` when an offer was
    booked, `EXPIRED_CODE` when every requested period passed)."""
    reason = {"coding": [{"system": WAITLIST_SYSTEM, "code": code}], "text": text}
    body = {k: v for k, v in entry.items() if k != "meta"}
    return {**body, "status": "cancelled", "cancelationReason": reason}


def booked_entry(entry: dict[str, Any], booked_id: str) -> dict[str, Any]:
    """The entry closed because its offer, Appointment `booked_id`, was booked."""
    return closed_entry(entry, BOOKED_CODE, f"Booked from the waitlist as Appointment/{booked_id}")


def check_offer_mark(
    repository: Repository, content: dict[str, Any], before: dict[str, Any]
) -> None:
    """Only the server (and staff) mark an Appointment as a waitlist offer.

    Raises:
        Forbidden: (403) a writer confined to a patient adds or changes `waitlist-offer`.
    """
    if offer_entry_id(repository, content) == offer_entry_id(repository, before):
        return
    if any(repository.patient_confined("Appointment", p) for p in ("c", "u")):
        raise Forbidden(
            "waitlist-offer is set by the server when it offers freed time",
            expression=["Appointment.extension"],
        )
