"""The booking rules of every Appointment write, whatever the path (SCHEDULING.md "Never
double-book" and "Booking rules on every path").

`BookingRules` is registered at start-up as the Appointment write rules of the repository
(`fhir_server.repository.WriteRules`), so REST POST/PUT/PATCH/DELETE, transaction and batch
entries, `$hold`, `$book` (and reschedule) and the sweepers all go through it:

1. **Taken time** — never skipped. The Appointment's complete claim set, committed atomically
   with it; the store's unique claim keys make a second booking of the same time fail:
   * `Schedule/{id}#{minute}`: every minute (µs // 60e6) of [start, end) of each active
     Schedule whose actor is a participant (Practitioner, PractitionerRole, Location,
     HealthcareService, Device; declined participants excluded), and of the Schedule of each
     referenced stored Slot of capacity 1;
   * `Slot/{id}#{seat}`: a seat of a referenced stored Slot whose SMART Scheduling Links
     `slot-capacity` is above 1 (that Slot's Schedule then takes no minute claims for it);
   * `ScheduleDay/{id}/{local date}#{seat}`: one of the `max-bookings-per-day` seats;
   * `Patient/{id}#{minute}`: every minute of each Patient participant — rule 3, **patient
     overlap**: one patient is never in two overlapping booked or held appointments.
   Seats are chosen among the free ones (spread by owner); a seat lost to a concurrent
   booker is chosen again by the repository (`RulesPlan.seat_scopes`).
2. **Waitlist entries** (`operations.scheduling.waitlist`): a write of one with status
   `waitlist` keeps its rules (a patient, what it waits for, requested periods; `priority`
   only from writers not confined to a patient); it takes no time. Only the server and
   staff mark an Appointment as a waitlist offer (`waitlist-offer`).
3. **Availability** (`operations.scheduling.availability`) — for writes that take new time
   (a new booking or hold, a move, an added actor): every actor that has a Schedule must offer
   the time. Enforced (409 `outside-availability`, nothing written) for `$hold`, `$book` and
   callers confined to a patient; an EHR's own writes with `user/` or `system/` scopes (and the
   server's jobs) may book outside it, and each such booking is recorded as an AuditEvent
   (an availability override) in the same atomic write.

References are read with `resources.references` against this server's bases: a relative,
absolute, versioned or (in a Bundle) `urn:uuid` spelling of one actor is one actor.
"""

from __future__ import annotations

import hashlib
from typing import Any

from fhir_server.model import ClaimKey, ClaimSet, sorted_keys
from fhir_server.repository import (
    PlannedWrite,
    Repository,
    RulesPlan,
    load_json,
)
from fhir_server.search.query import ReferenceCondition, ReferenceValue, StoreQuery
from operations.scheduling.appointments import Participants
from operations.scheduling.audit import override_event
from operations.scheduling.availability import describe, unavailable_actors
from operations.scheduling.claims import (
    HOLDING_STATUSES,
    MAX_MINUTES,
    MINUTE_US,
    hold_expiry,
    key_taken,
    minute_keys,
    time_taken,
)
from operations.scheduling.extensions import (
    HOLD_EXPIRES,
    ExtensionError,
    extension_url,
    max_bookings_per_day,
    slot_capacity,
)
from operations.scheduling.service import SchedulingService
from operations.scheduling.timezones import local_date, zone
from operations.scheduling.waitlist import check_entry, check_offer_mark
from resources.errors import Conflict, Invalid
from resources.fhir_dates import parse_instant

__all__ = ["BookingRules"]


def _time(appointment: dict[str, Any]) -> tuple[int, int] | None:
    """`(start, end)` µs UTC of an Appointment that holds time, else None.

    Raises:
        Invalid: (400) unreadable start/end, or longer than 24 hours.
    """
    if appointment.get("status") not in HOLDING_STATUSES:
        return None
    start_text, end_text = appointment.get("start"), appointment.get("end")
    if not isinstance(start_text, str) or not isinstance(end_text, str):
        return None
    try:
        start, end = parse_instant(start_text), parse_instant(end_text)
    except ValueError as exc:
        raise Invalid(f"Appointment start/end: {exc}", expression=["Appointment.start"]) from exc
    if end - start > MAX_MINUTES * MINUTE_US:
        raise Invalid(
            "An Appointment that books time may last at most 24 hours",
            expression=["Appointment.end"],
        )
    return start, end


class BookingRules:
    """The Appointment `WriteRules` (module docstring)."""

    depends_on = frozenset({"Schedule", "Slot"})
    """A Schedule or Slot written in the same transaction guards the Appointment too."""

    async def plan(self, repository: Repository, write: PlannedWrite) -> RulesPlan:
        """The claims (and override audits) of writing `write.content` as Appointment/`id`.

        Raises:
            Conflict: (409) deleting a booked or held Appointment (`business-rule`: cancel it
                first); time outside an actor's availability where enforced
                (`outside-availability`); a shared Slot with no seat left
                (`slot-unavailable`).
            Invalid: (400) start/end unreadable, longer than 24 hours, or a malformed hold
                expiry.
            Unprocessable, Forbidden: (422, 403) a waitlist entry breaking its rules
                (`waitlist.check_entry`).
        """
        owner = f"Appointment/{write.id}"
        before = load_json(write.current.content) if write.current is not None else {}
        if write.content is None:
            if before.get("status") in HOLDING_STATUSES:
                raise Conflict(
                    f"{owner} is {before.get('status')}: cancel it (status=cancelled via PUT, "
                    "PATCH or $book) to release its time before deleting it",
                    code="business-rule",
                )
            return RulesPlan(ClaimSet(owner, ()))
        check_offer_mark(repository, write.content, before)
        if write.content.get("status") == "waitlist":
            await check_entry(repository, write.id, write.content, before)
        time = _time(write.content)
        if time is None:
            return RulesPlan(ClaimSet(owner, ()))
        start, end = time
        service = SchedulingService(repository)
        expires = self._expiry(write.content, service)
        people = Participants(write.content, repository)
        planner = _ClaimPlanner(service, owner, start, end)
        await planner.add_slots(write.content)
        await planner.add_actors(people.actors)
        await planner.add_day_seats()
        for patient in people.patients:
            planner.keys.update(minute_keys(f"Patient/{patient}", start, end))
        audits = await self._availability(
            repository, service, write, people, before, time, planner.actor_schedules
        )
        claims = ClaimSet(owner, sorted_keys(planner.keys), expires)
        return RulesPlan(claims, audits, frozenset(planner.seat_scopes))

    async def explain(self, repository: Repository, key: str, claims: ClaimSet) -> Conflict:
        """The 409 for a claim of `claims` another booking holds (SCHEDULING.md "Errors"):
        `slot-unavailable` for a Schedule's time, a Slot's or a day's seat; `patient-conflict`
        for the patient's own time, unless a Schedule or Slot time of the same booking is taken
        too (then that, the more useful answer, is named)."""
        if not key.startswith("Patient/"):
            return key_taken(key)
        by_scope: dict[str, set[int]] = {}
        for claim_key in claims.keys:
            if not claim_key.scope.startswith("Patient/"):
                by_scope.setdefault(claim_key.scope, set()).add(claim_key.quantum)
        for scope, quanta in by_scope.items():
            for held in await repository.lookup.claims_in(scope, min(quanta), max(quanta) + 1):
                if held.owner != claims.owner and held.key.quantum in quanta:
                    return key_taken(str(held.key))
        return key_taken(key)

    def _expiry(self, content: dict[str, Any], service: SchedulingService) -> int | None:
        if content.get("status") != "pending":
            return None
        try:
            return hold_expiry(content, extension_url(HOLD_EXPIRES, service.extension_base))
        except ValueError as exc:
            raise Invalid(
                f"Appointment hold expiry: {exc}", expression=["Appointment.extension"]
            ) from exc

    async def _availability(
        self,
        repository: Repository,
        service: SchedulingService,
        write: PlannedWrite,
        people: Participants,
        before: dict[str, Any],
        time: tuple[int, int],
        schedules: list[dict[str, Any]],
    ) -> tuple[dict[str, Any], ...]:
        """Check the actors that take new time; raise or audit (module docstring, rule 2)."""
        actors = people.actors
        held = _time(before) if write.current is not None and not write.current.deleted else None
        if held == time:
            old = set(Participants(before, repository).actors)
            actors = [a for a in actors if a not in old]
        unavailable = await unavailable_actors(service, actors, *time, schedules)
        if not unavailable:
            return ()
        message = describe(unavailable, *time)
        confined = any(
            repository.patient_confined("Appointment", p) is not None for p in ("c", "u")
        )
        if repository.strict_availability or confined:
            raise Conflict(message, details_code="outside-availability")
        event = override_event(
            appointment_id=write.id,
            patients=people.patients,
            base_url=repository.base_url,
            requestor=repository.policy.requestor(),
            description=message,
        )
        return (event,)


class _ClaimPlanner:
    """Collects the claim keys of one Appointment write (module docstring, rule 1)."""

    def __init__(self, service: SchedulingService, owner: str, start: int, end: int) -> None:
        self.service = service
        self.lookup = service.lookup
        self.owner = owner
        self.start, self.end = start, end
        self.keys: set[ClaimKey] = set()
        self.seat_scopes: set[str] = set()
        self.schedules: dict[str, dict[str, Any] | None] = {}  # reference -> content, once read
        self.seated: set[str] = set()  # Schedules whose time is shared through a Slot's seat
        self.unit = service.repository.unit  # resources written beside, by (type, id)
        self.actor_schedules: list[dict[str, Any]] = []  # every Schedule of the actors

    async def add_slots(self, appointment: dict[str, Any]) -> None:
        """Seats of shared stored Slots; the Schedules of the others (a Slot written in the
        same atomic write counts as stored: `Repository.unit`)."""
        refs = [self.service.pair(r) for r in appointment.get("slot") or []]
        wanted = [pair for pair in refs if pair is not None and pair[0] == "Slot"]
        found = {
            (s.resource_type, s.id): load_json(s.content)
            for s in await self.lookup.read_many(wanted)
        }
        found.update({pair: self.unit[pair] for pair in wanted if pair in self.unit})
        for (_, slot_id), slot in sorted(found.items()):
            capacity = slot_capacity(slot)
            schedule = self.service.pair(slot.get("schedule"))
            schedule_ref = f"{schedule[0]}/{schedule[1]}" if schedule else ""
            if capacity > 1:
                self.keys.add(await self._seat(f"Slot/{slot_id}", capacity))
                self.seated.add(schedule_ref)
            elif schedule_ref.startswith("Schedule/"):
                self.schedules.setdefault(schedule_ref, None)

    async def add_actors(self, actors: list[tuple[str, str]]) -> None:
        """Minute claims on every active Schedule of the actors (unless seated), the
        Schedules written in the same atomic write included (`Repository.unit`)."""
        if actors:
            values = tuple(ReferenceValue(t, i) for t, i in actors)
            query = StoreQuery("Schedule", (ReferenceCondition("actor", values),), count=1000)
            found = {
                s.id: load_json(s.content) for s in (await self.lookup.search(query)).resources
            }
            for (rtype, rid), content in self.unit.items():
                if rtype == "Schedule" and any(
                    self.service.pair(a) in actors for a in content.get("actor") or ()
                ):
                    found[rid] = content
            self.actor_schedules = [found[sid] for sid in sorted(found)]
            for sid, schedule in sorted(found.items()):
                ref = f"Schedule/{sid}"
                if schedule.get("active", True) is not False and ref not in self.seated:
                    self.schedules[ref] = schedule
        for scope in self.schedules:
            self.keys.update(minute_keys(scope, self.start, self.end))

    async def add_day_seats(self) -> None:
        """One `ScheduleDay/{id}/{local date}#{seat}` claim per Schedule with our
        `max-bookings-per-day` extension, on the Schedule's local date of the start."""
        unread = [("Schedule", ref.split("/", 1)[1]) for ref, c in self.schedules.items() if not c]
        contents = [c for c in self.schedules.values() if c]
        contents += [load_json(s.content) for s in await self.lookup.read_many(unread)]
        capped = []
        for schedule in contents:
            try:
                cap = max_bookings_per_day(schedule, self.service.extension_base)
            except ExtensionError:
                cap = None
            if cap is not None:
                capped.append((schedule, cap))
        if not capped:
            return
        contexts = await self.service.contexts([schedule for schedule, _ in capped])
        for context, (schedule, cap) in zip(contexts, capped, strict=True):
            day = local_date(self.start, zone(context.tz)).isoformat()
            self.keys.add(await self._seat(f"ScheduleDay/{schedule['id']}/{day}", cap))

    async def _seat(self, scope: str, capacity: int) -> ClaimKey:
        """The owner's current seat of `scope`, else a free one (spread by owner so that
        concurrent bookers rarely pick the same; a lost race is planned again).

        Raises:
            Conflict: (409 `slot-unavailable`) no seat is free.
        """
        self.seat_scopes.add(scope)
        for claim in await self.lookup.claims_of(self.owner):
            if claim.key.scope == scope:
                return claim.key
        taken = {c.key.quantum for c in await self.lookup.claims_in(scope, 0, capacity)}
        free = [seat for seat in range(capacity) if seat not in taken]
        if not free:
            raise time_taken(scope, capacity=capacity)
        spread = int.from_bytes(hashlib.sha256(self.owner.encode()).digest()[:4], "big")
        return ClaimKey(scope, free[spread % len(free)])
