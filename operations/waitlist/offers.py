"""One waitlist offer: the earliest free time that suits an entry, held for its patient, and
the message with the accept and decline links.

The time offered (`make_offer`): a free slot (`SchedulingService.free_slots`, so exactly
what `$find-slots` would show) of a Schedule matching the entry (`ScheduleMatcher`, as
`$find`: its actors, specialties, service types), lying wholly inside one of its requested
periods, starting no sooner than the offer lasts (`waitlist_offer_seconds` from now), ending
by the start of the Appointment the entry replaces (if any), and never a time the entry
already turned down or let lapse (its state's `refused`). It is held with `$hold`'s own
function (`appointment_hold.place_hold`, availability enforced) as a new Appointment
`pending` until now + `waitlist_offer_seconds`, carrying `waitlist-offer` -> the entry; its
id is deterministic per entry and offer number (`offer_id`), so two offerers (or a retry
after a crash) can never hold two times for one offer: the second create of that id fails.

The message (`plan_message`): a CommunicationRequest (category `notification` + `offer`,
`notices.notice_request`) to the patient by their best channel, with the time in the
appointment's zone and the two links (`links.offer_url`), sent by the reminder sender while
the offer is held. A patient with no usable channel gets no message; the held Appointment is
still theirs to book from their app.

Times are µs UTC.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Final

from fhir_server.repository import Repository
from operations.appointment_hold import place_hold
from operations.reminders.notices import notice_request
from operations.reminders.requests import channels_of, medium_for
from operations.reminders.text import appointment_zone, describe_time, who_and_where
from operations.scheduling.appointments import SchedulingConfig
from operations.scheduling.claims import hold_expiry
from operations.scheduling.extensions import WAITLIST_OFFER, extension_url
from operations.scheduling.matching import ScheduleMatcher
from operations.scheduling.service import SchedulingService
from operations.scheduling.slots import CandidateSlot
from operations.scheduling.waitlist import WaitlistEntry
from operations.waitlist.links import link_key, offer_url
from resources.errors import FhirError
from resources.fhir_dates import US, format_instant, parse_instant

__all__ = ["STATE", "EntryState", "make_offer", "offer_id", "schedules_for"]

STATE: Final = "waitlist-entry"
"""Record kind, keyed by entry id: the entry's `EntryState`."""
DAY_US: Final = 86_400 * US
CHUNK_US: Final = 14 * DAY_US
"""Free time is looked for 14 days at a time (overlapping by a day), earliest first."""
MAX_TRIES: Final = 5
"""Holds tried per entry and round (a time taken meanwhile, the patient busy then)."""
_COPIED: Final = ("serviceCategory", "serviceType", "specialty", "reasonCode", "minutesDuration")


@dataclass(slots=True)
class EntryState:
    """What the waitlist keeps about one entry (record STATE).

    Attributes:
        since: when it started waiting (µs UTC): the order among equal priorities.
        offers: how many offers were made (the next offer's number is `offers + 1`).
        offer: the Appointment id of the offer now held, or None.
        slot: the id of the Slot that offer holds (stored or rule-derived).
        expires: when that offer's hold ends (µs UTC).
        refused: the Slot ids of every offer declined or let lapse.
    """

    since: int
    offers: int = 0
    offer: str | None = None
    slot: str | None = None
    expires: int | None = None
    refused: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, doc: dict[str, Any]) -> EntryState:
        return cls(
            since=int(doc["since"]),
            offers=int(doc.get("offers", 0)),
            offer=doc.get("offer"),
            slot=doc.get("slot"),
            expires=doc.get("expires"),
            refused=list(doc.get("refused") or []),
        )

    def doc(self) -> dict[str, Any]:
        return {
            "since": self.since,
            "offers": self.offers,
            "offer": self.offer,
            "slot": self.slot,
            "expires": self.expires,
            "refused": self.refused,
        }

    def refuse(self) -> None:
        """The held offer ended unbooked: its time is never offered to this entry again."""
        if self.slot is not None and self.slot not in self.refused:
            self.refused.append(self.slot)
        self.offer = self.slot = self.expires = None


def offer_id(entry_id: str, number: int) -> str:
    """The Appointment id of offer `number` (1, 2, ...) to entry `entry_id`."""
    digest = hashlib.sha256(f"{entry_id}|{number}".encode()).hexdigest()
    return f"wl-offer-{digest[:40]}"


async def schedules_for(repository: Repository, entry: WaitlistEntry) -> list[dict[str, Any]]:
    """The active Schedules an entry may be offered time of (as `$find` would match them)."""
    matcher = ScheduleMatcher(repository.lookup)
    return await matcher.schedules(
        actors=entry.actors, specialties=entry.specialties, service_types=entry.service_types
    )


async def _replaced_start(repository: Repository, entry: WaitlistEntry) -> int | None:
    """The start of the booked Appointment the entry replaces (an offer must end by it)."""
    if entry.replaces is None:
        return None
    found = await repository.lookup.read_json([("Appointment", entry.replaces)])
    replaced = found.get(("Appointment", entry.replaces))
    if replaced is None or replaced.get("status") != "booked" or not replaced.get("start"):
        return None
    return parse_instant(str(replaced["start"]))


async def _candidates(
    repository: Repository,
    entry: WaitlistEntry,
    state: EntryState,
    schedules: list[dict[str, Any]],
    earliest: int,
) -> list[CandidateSlot]:
    """Up to MAX_TRIES free slots that suit the entry, earliest first."""
    service = SchedulingService(repository)
    refused = set(state.refused)
    latest = await _replaced_start(repository, entry)
    found: list[CandidateSlot] = []
    seen: set[str] = set()
    for window_start, window_end in entry.windows:
        start = max(window_start, earliest)
        high = window_end if latest is None else min(window_end, latest)
        while start < high and len(found) < MAX_TRIES:
            end = min(high, start + CHUNK_US)
            for slot in await service.free_slots(
                schedules, start, end, duration_us=entry.duration_us
            ):
                if slot.slot_id in seen or slot.slot_id in refused:
                    continue
                seen.add(slot.slot_id)
                found.append(slot)
            start = end if end >= high else end - DAY_US
    return sorted(found, key=lambda s: (s.start, s.schedule_id))[:MAX_TRIES]


async def make_offer(
    repository: Repository,
    entry: WaitlistEntry,
    content: dict[str, Any],
    state: EntryState,
    schedules: list[dict[str, Any]],
    now: int,
) -> bool:
    """Hold the earliest suitable free time for the entry and plan its message (module
    docstring); update `state` (the caller stores it). True when an offer is held."""
    seconds = repository.settings.waitlist_offer_seconds
    expires = now + seconds * US
    offer_url_ = extension_url(WAITLIST_OFFER, repository.settings.extension_base)
    for slot in await _candidates(repository, entry, state, schedules, now + seconds * US):
        number = state.offers + 1
        oid = offer_id(entry.id, number)
        resource: dict[str, Any] = {
            "resourceType": "Appointment",
            "status": "proposed",
            "description": "Offered from the waitlist",
            "slot": [{"reference": f"Slot/{slot.slot_id}"}],
            "participant": [
                {
                    "actor": {"reference": f"Patient/{entry.patient}"},
                    "required": "required",
                    "status": "needs-action",
                }
            ],
            "extension": [
                {"url": offer_url_, "valueReference": {"reference": f"Appointment/{entry.id}"}}
            ],
            **{k: content[k] for k in _COPIED if k in content},
        }
        try:
            held = await place_hold(repository.strict(), resource, None, expires, new_id=oid)
        except FhirError:
            if not await _adopt(repository, state, oid, number, now):
                continue  # taken meanwhile, or the patient is busy then: the next time
            return True
        state.offers, state.offer = number, oid
        state.slot, state.expires = slot.slot_id, expires
        assert held.content is not None
        await plan_message(repository, entry, oid, now)
        return True
    return False


async def _adopt(
    repository: Repository, state: EntryState, oid: str, number: int, now: int
) -> bool:
    """After a failed hold: if offer `oid` exists already (made before a crash), take it as
    this entry's offer `number`; True when it is still held."""
    found = await repository.lookup.read_json([("Appointment", oid)])
    offer = found.get(("Appointment", oid))
    if offer is None:
        return False
    state.offers = number
    expires = hold_expiry(offer, SchedulingConfig.of(repository).hold_url)
    slots = [repository.reference(str(s.get("reference"))).pair for s in offer.get("slot") or []]
    state.offer, state.expires = oid, expires
    state.slot = next((p[1] for p in slots if p is not None and p[0] == "Slot"), None)
    if offer.get("status") != "pending" or expires is None or expires <= now:
        state.refuse()
        return False
    return True


async def plan_message(repository: Repository, entry: WaitlistEntry, oid: str, now: int) -> None:
    """The offer's message to the patient (module docstring); planned once per offer."""
    rid = f"offer-message-{oid.removeprefix('wl-offer-')}"
    if await repository.lookup.read("CommunicationRequest", rid) is not None:
        return
    pairs = [("Patient", entry.patient), ("Appointment", oid)]
    found = await repository.lookup.read_json(pairs)
    patient, offer = found.get(pairs[0]), found.get(pairs[1])
    if patient is None or offer is None:
        return
    settings = repository.settings
    medium = medium_for(
        patient, settings.extension_base, format_instant(now), channels_of(settings)
    )
    if medium is None:
        return
    expires = hold_expiry(offer, SchedulingConfig.of(repository).hold_url) or now
    zone = await appointment_zone(repository, offer)
    practitioner, place = await who_and_where(repository, offer)
    text = f"A time you are waiting for has become free: {describe_time(offer['start'], zone)}"
    text += f" with {practitioner}" if practitioner else ""
    text += f" at {place}" if place else ""
    text += f". It is held for you until {describe_time(format_instant(expires), zone)}."
    if repository.base_url:
        key = await link_key(repository)
        accept = offer_url(repository.base_url, key, oid, "accept", expires)
        decline = offer_url(repository.base_url, key, oid, "decline", expires)
        text += f"\nConfirm booking: {accept}\nDecline: {decline}"
    else:
        text += " Book it in your patient app before then, or it goes to the next patient."
    body = notice_request(rid, f"Patient/{entry.patient}", medium, oid, text, now, offer=True)
    await repository.update("CommunicationRequest", rid, body)
