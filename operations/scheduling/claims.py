"""Plan the time claims of an Appointment write: the database-backed guarantee that no two
non-cancelled bookings or holds share a minute of one Schedule (SCHEDULING.md "Never
double-book").

Every write path of an Appointment (REST create/update/patch/delete, transaction bundles, and
the scheduling operations) goes through `Repository`, which asks `AppointmentClaims` for the
owner's complete ClaimSet and commits it atomically with the Appointment version; the store's
unique claim keys make a second booking of the same time fail with 409 on either engine.

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
"""

from __future__ import annotations

from typing import Any

import orjson

from fhir_server.repository import time_taken
from fhir_server.search.query import ReferenceCondition, ReferenceValue, StoreQuery
from fhir_server.storage.base import ClaimKey, ClaimSet, ResourceStore, StoredResource
from operations.scheduling.extensions import (
    DEFAULT_BASE,
    HOLD_EXPIRES,
    ExtensionError,
    extension_url,
    max_bookings_per_day,
    slot_capacity,
)
from operations.scheduling.timezones import (
    local_date,
    location_references,
    schedule_timezone,
    zone,
)
from resources.errors import Conflict, Invalid
from resources.fhir_dates import parse_instant

MINUTE_US = 60_000_000
HOLDING_STATUSES = frozenset({"pending", "booked", "arrived", "checked-in", "fulfilled"})
SCHEDULED_ACTOR_TYPES = frozenset(
    {"Practitioner", "PractitionerRole", "Location", "HealthcareService", "Device"}
)
"""The id of our extension carrying a `pending` Appointment's hold expiry (valueInstant)."""
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


class AppointmentClaims:
    """The ClaimPlanner for Appointment (see `fhir_server.repository.ClaimPlanner`).

    Args:
        store: where Schedules, Slots and existing claims are read.
        extension_base: the canonical base of our extensions (settings `extension_base`); the
            hold expiry is read from `{extension_base}/hold-expires`.
    """

    def __init__(
        self, store: ResourceStore, extension_base: str = DEFAULT_BASE, default_tz: str = "UTC"
    ) -> None:
        self.store = store
        self.base = extension_base
        self.default_tz = default_tz
        self.hold_url = extension_url(HOLD_EXPIRES, extension_base)

    async def __call__(
        self, id: str, resource: dict[str, Any] | None, current: StoredResource | None
    ) -> ClaimSet | None:
        """Plan the claims of writing `resource` (None: deleting) as Appointment/`id`.

        Raises:
            Conflict: (409) deleting a booked or held Appointment: cancel it instead.
            Invalid: (400) start/end unreadable, or an Appointment longer than 24 hours
                that would claim time.
        """
        owner = f"Appointment/{id}"
        if resource is None:
            if current is not None and current.content is not None:
                status = orjson.loads(current.content).get("status")
                if status in HOLDING_STATUSES:
                    raise Conflict(
                        f"{owner} is {status}: cancel it (status=cancelled via PUT, PATCH or "
                        "$book) to release its time before deleting it",
                        code="business-rule",
                    )
            return ClaimSet(owner, ())
        if resource.get("status") not in HOLDING_STATUSES:
            return ClaimSet(owner, ())
        start_text, end_text = resource.get("start"), resource.get("end")
        if not isinstance(start_text, str) or not isinstance(end_text, str):
            return ClaimSet(owner, ())
        try:
            start, end = parse_instant(start_text), parse_instant(end_text)
        except ValueError as exc:
            raise Invalid(
                f"Appointment start/end: {exc}", expression=["Appointment.start"]
            ) from exc
        if end - start > MAX_MINUTES * MINUTE_US:
            raise Invalid(
                "An Appointment that books time may last at most 24 hours",
                expression=["Appointment.end"],
            )
        try:
            pending = resource.get("status") == "pending"
            expires = hold_expiry(resource, self.hold_url) if pending else None
        except ValueError as exc:
            raise Invalid(
                f"Appointment hold expiry: {exc}", expression=["Appointment.extension"]
            ) from exc
        keys: set[ClaimKey] = set()
        schedules: dict[str, dict[str, Any] | None] = {}  # reference -> content, once read
        seated: set[str] = set()  # Schedules whose time is shared through a seat of a Slot
        for slot in await self._slots(resource):
            capacity = slot_capacity(slot)
            schedule_ref = (slot.get("schedule") or {}).get("reference", "")
            if capacity > 1:
                keys.add(await self._seat(owner, f"Slot/{slot['id']}", capacity))
                seated.add(schedule_ref)
            elif schedule_ref.startswith("Schedule/"):
                schedules.setdefault(schedule_ref, None)
        for schedule in await self._schedules_of_actors(resource):
            ref = f"Schedule/{schedule['id']}"
            if ref not in seated:
                schedules[ref] = schedule
        for scope in schedules:
            keys.update(minute_keys(scope, start, end))
        keys.update(await self._day_seats(owner, await self._contents(schedules), start))
        return ClaimSet(owner, tuple(sorted(keys)), expires)

    async def _contents(self, schedules: dict[str, dict[str, Any] | None]) -> list[dict[str, Any]]:
        """The Schedules' content: those found by actor as they are, the others read once."""
        unread = [_pair(ref) for ref, content in schedules.items() if content is None]
        read = [_json(s) for s in await self.store.read_many(unread)] if unread else []
        return [c for c in schedules.values() if c is not None] + read

    async def _day_seats(
        self, owner: str, schedules: list[dict[str, Any]], start: int
    ) -> list[ClaimKey]:
        """One `ScheduleDay/{id}/{local date}#{seat}` claim per Schedule that sets our
        `max-bookings-per-day` extension: the cap is then a database guarantee too (a day
        with every seat taken answers 409), counted on the Schedule's local date of `start`."""
        out: list[ClaimKey] = []
        for schedule in schedules:
            try:
                cap = max_bookings_per_day(schedule, self.base)
            except ExtensionError:
                cap = None
            if cap is None:
                continue
            actor_refs = [
                _pair(str(a.get("reference", "")))
                for a in schedule.get("actor") or []
                if isinstance(a, dict) and str(a.get("reference", "")).count("/") == 1
            ]
            actors = [_json(a) for a in await self.store.read_many(actor_refs)]
            location_refs = [_pair(r) for r in location_references(actors)]
            locations = [_json(x) for x in await self.store.read_many(location_refs)]
            tz = schedule_timezone(schedule, actors, locations, self.default_tz)
            day = local_date(start, zone(tz)).isoformat()
            out.append(await self._seat(owner, f"ScheduleDay/{schedule['id']}/{day}", cap))
        return out

    async def _slots(self, resource: dict[str, Any]) -> list[dict[str, Any]]:
        refs = []
        for ref in resource.get("slot") or []:
            text = ref.get("reference", "") if isinstance(ref, dict) else ""
            if text.startswith("Slot/"):
                refs.append(("Slot", text.split("/", 1)[1]))
        stored = await self.store.read_many(refs) if refs else []
        return [orjson.loads(s.content) for s in stored if s.content is not None]

    async def _schedules_of_actors(self, resource: dict[str, Any]) -> list[dict[str, Any]]:
        values = []
        for participant in resource.get("participant") or []:
            if not isinstance(participant, dict) or participant.get("status") == "declined":
                continue
            ref = (participant.get("actor") or {}).get("reference", "")
            rtype, _, rid = ref.partition("/")
            if rtype in SCHEDULED_ACTOR_TYPES and rid and "/" not in rid:
                values.append(ReferenceValue(ref_type=rtype, ref_id=rid))
        if not values:
            return []
        query = StoreQuery("Schedule", (ReferenceCondition("actor", tuple(values)),), count=1000)
        page = await self.store.search(query)
        out = []
        for stored in page.resources:
            schedule = orjson.loads(stored.content or b"{}")
            if schedule.get("active", True) is not False:
                out.append(schedule)
        return out

    async def _seat(self, owner: str, scope: str, capacity: int) -> ClaimKey:
        """The owner's current seat of a shared Slot, else the lowest free seat (a race for the
        same seat ends in a 409 from the store, never in two owners on one seat)."""
        for claim in await self.store.claims_of(owner):
            if claim.key.scope == scope:
                return claim.key
        taken = {c.key.quantum for c in await self.store.claims_in(scope, 0, capacity)}
        for seat in range(capacity):
            if seat not in taken:
                return ClaimKey(scope, seat)
        raise time_taken(scope, capacity=capacity)


def _pair(reference: str) -> tuple[str, str]:
    rtype, _, rid = reference.partition("/")
    return rtype, rid


def _json(stored: StoredResource) -> dict[str, Any]:
    data = orjson.loads(stored.content or b"{}")
    return data if isinstance(data, dict) else {}
