"""Acting on a waitlist offer: what its links show, accept, decline; and the waitlist's own
closing of entries and withdrawing of offers.

- `accept`: books the held offer through `$book` (`appointment_book.run_book`, availability
  enforced), which closes the entry and cancels the Appointment it replaces in the same
  write; an offer already booked answers as booked (a second click changes nothing).
- `decline`: cancels the held offer through `$book` (cancel mode, `cancelationReason`
  "Declined from the waitlist offer"); the time is free again at once and the matcher
  offers it to the next entry. An offer already declined answers as declined.

Both act on the version read (`If-Match`), so an accept racing a decline (or a second
process) changes the offer once; the loser is told what happened. Neither acts on an offer
that is no longer held (expired, cancelled, booked): `OfferEnded`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

from fhir_server.repository import Repository, load_json
from operations.appointment_book import run_book
from operations.reminders.text import appointment_zone, describe_time, who_and_where
from operations.scheduling.appointments import SchedulingConfig
from operations.scheduling.booking import BookInput
from operations.scheduling.claims import hold_expiry
from operations.scheduling.waitlist import booked_entry, offer_entry_id
from resources.errors import FhirError, PreconditionFailed
from resources.fhir_dates import format_instant

__all__ = [
    "BOOKED",
    "OfferEnded",
    "OfferView",
    "accept",
    "close_booked_entry",
    "decline",
    "view_offer",
    "withdraw_offer",
]

BOOKED: Final = frozenset({"booked", "arrived", "checked-in", "fulfilled", "noshow"})
"""Statuses of an offer that was booked."""
DECLINED: Final = "Declined from the waitlist offer"

State = Literal["held", "booked", "declined", "ended"]


class OfferEnded(Exception):
    """The offer is not held any more (or was never an offer): nothing was done. The
    message says what happened, in words for the patient."""


@dataclass(frozen=True, slots=True)
class OfferView:
    """What a link's page shows: the offer's `state`, its time and people in words
    (`summary`), and until when it is held (`until`, in the appointment's zone)."""

    offer_id: str
    state: State
    summary: str
    until: str


async def _read(repository: Repository, offer_id: str) -> tuple[str, dict[str, Any]]:
    """`(version, content)` of the offer. Raises OfferEnded if it is not an offer."""
    stored = await repository.lookup.read("Appointment", offer_id)
    content = load_json(stored.content) if stored is not None and stored.content else None
    if stored is None or content is None or offer_entry_id(repository, content) is None:
        raise OfferEnded("This offer does not exist any more.")
    return str(stored.version_id), content


async def view_offer(repository: Repository, offer_id: str, now: int) -> OfferView:
    """The offer as its page shows it.

    Raises:
        OfferEnded: not an offer of this server.
    """
    _, content = await _read(repository, offer_id)
    return await _view(repository, offer_id, content, now)


async def _view(
    repository: Repository, offer_id: str, content: dict[str, Any], now: int
) -> OfferView:
    zone = await appointment_zone(repository, content)
    practitioner, place = await who_and_where(repository, content)
    summary = describe_time(str(content.get("start")), zone)
    summary += f" with {practitioner}" if practitioner else ""
    summary += f" at {place}" if place else ""
    expires = hold_expiry(content, SchedulingConfig.of(repository).hold_url)
    status = content.get("status")
    state: State = "ended"
    if status in BOOKED:
        state = "booked"
    elif status == "pending" and expires is not None and expires > now:
        state = "held"
    elif status == "cancelled" and (content.get("cancelationReason") or {}).get("text") == DECLINED:
        state = "declined"
    until = describe_time(format_instant(expires), zone) if expires is not None else ""
    return OfferView(offer_id, state, summary, until)


async def accept(repository: Repository, offer_id: str, now: int) -> OfferView:
    """Book the held offer (module docstring); its view afterwards.

    Raises:
        OfferEnded: expired, declined or withdrawn, or the booking was refused (the
            message says why, e.g. the patient has another appointment then).
    """
    version, view = await _held(repository, offer_id, now, "booked")
    if version is None:
        return view
    inputs = BookInput([], [], None, None, if_match=version)
    try:
        await run_book(repository.strict(), offer_id, None, inputs)
    except PreconditionFailed:
        return await _after_race(repository, offer_id, now)
    except FhirError as exc:
        raise OfferEnded(f"The booking could not be made: {exc.diagnostics}") from exc
    return await view_offer(repository, offer_id, now)


async def decline(repository: Repository, offer_id: str, now: int) -> OfferView:
    """Give the held offer back (module docstring); its view afterwards.

    Raises:
        OfferEnded: booked already, expired or withdrawn.
    """
    version, view = await _held(repository, offer_id, now, "declined")
    if version is None:
        return view
    try:
        await _cancel(repository, offer_id, DECLINED, version)
    except PreconditionFailed:
        return await _after_race(repository, offer_id, now)
    return await view_offer(repository, offer_id, now)


async def _held(
    repository: Repository, offer_id: str, now: int, done: State
) -> tuple[str | None, OfferView]:
    """`(version, view)` of an offer still held; `(None, view)` when it is `done` already
    (the action was taken before: a second click).

    Raises:
        OfferEnded: it is neither held nor `done`.
    """
    version, content = await _read(repository, offer_id)
    view = await _view(repository, offer_id, content, now)
    if view.state == done:
        return None, view
    if view.state != "held":
        raise OfferEnded(_ended(view))
    return version, view


async def _after_race(repository: Repository, offer_id: str, now: int) -> OfferView:
    """The offer changed between reading and acting: report what it is now."""
    view = await view_offer(repository, offer_id, now)
    if view.state in ("booked", "declined"):
        return view
    raise OfferEnded(_ended(view))


def _ended(view: OfferView) -> str:
    if view.state == "booked":
        return "This offer was booked already. To change it, cancel the appointment."
    if view.state == "declined":
        return "This offer was declined."
    return "This offer has ended: it was not taken in time, or was withdrawn."


async def _cancel(repository: Repository, offer_id: str, reason: str, version: str) -> None:
    resource = {
        "resourceType": "Appointment",
        "id": offer_id,
        "status": "cancelled",
        "cancelationReason": {"text": reason},
    }
    await run_book(repository, None, resource, BookInput([], [], None, None, if_match=version))


async def withdraw_offer(repository: Repository, offer_id: str, reason: str) -> None:
    """Cancel an offer still held (its entry stopped waiting); nothing if it is not."""
    stored = await repository.lookup.read("Appointment", offer_id)
    content = load_json(stored.content) if stored is not None and stored.content else None
    if stored is None or content is None or content.get("status") != "pending":
        return
    try:
        await _cancel(repository, offer_id, reason, str(stored.version_id))
    except FhirError:
        return  # booked, expired or changed meanwhile: settled at its event


async def close_booked_entry(repository: Repository, entry_id: str, offer_id: str) -> None:
    """Close a still-waiting entry whose offer was booked by a path that did not close it
    (e.g. a REST update of the held Appointment)."""
    stored = await repository.lookup.read("Appointment", entry_id)
    entry = load_json(stored.content) if stored is not None and stored.content else None
    if stored is None or entry is None or entry.get("status") != "waitlist":
        return
    try:
        prepared = await repository.prepare_update(
            "Appointment", entry_id, booked_entry(entry, offer_id), if_match=str(stored.version_id)
        )
        if prepared.op is not None:
            await repository.apply([prepared])
    except FhirError:
        return  # changed meanwhile: settled at its event
