"""Which Schedules' free time one committed change touched (SCHEDULING.md "Resources and where
availability comes from"), read from the event log: the `schedule-availability` topic and the
waitlist (`operations.waitlist`) both ask it.

A Schedule's free time changes when
- the Schedule itself is written (hours, horizon, `active`);
- a Slot of it is written (free, blocking, capacity);
- a source of its weekly hours is written: a PractitionerRole (`availableTime`,
  `notAvailable`), HealthcareService or Location actor of it;
- an Appointment takes or gives back time of an actor it schedules, or of one of its stored
  Slots: a change of status, start, end, (non-declined) actors or slots; other edits (a
  comment) change nothing.
"""

from __future__ import annotations

from typing import Any

import orjson

from fhir_server.model import StoredResource
from fhir_server.repository import Repository
from fhir_server.search.query import ReferenceCondition, ReferenceValue, StoreQuery
from operations.scheduling.claims import HOLDING_STATUSES

__all__ = ["HOURS_SOURCES", "content_of", "previous_version", "schedules_changed"]

HOURS_SOURCES = frozenset({"PractitionerRole", "HealthcareService", "Location"})
"""Actor types whose own resource can carry a Schedule's weekly hours."""
_MAX_SCHEDULES = 1000


async def previous_version(
    repository: Repository, version: StoredResource
) -> StoredResource | None:
    """The version before `version` (None for a first version)."""
    if version.version_id <= 1:
        return None
    history = await repository.lookup.history(
        "instance", version.resource_type, version.id, count=50
    )
    earlier = [v for v in history if v.version_id < version.version_id]
    return earlier[0] if earlier else None


def content_of(version: StoredResource | None) -> dict[str, Any]:
    """A version's FHIR JSON; `{}` for none or a deletion."""
    if version is None or version.content is None:
        return {}
    loaded: dict[str, Any] = orjson.loads(version.content)
    return loaded


def time_taken(appointment: dict[str, Any]) -> tuple[Any, ...]:
    """What of an Appointment bears on free time: status, start, end, actors, slots."""
    actors = sorted(
        str((p.get("actor") or {}).get("reference"))
        for p in appointment.get("participant") or []
        if p.get("status") != "declined"
    )
    slots = sorted(str(s.get("reference")) for s in appointment.get("slot") or [])
    return (
        appointment.get("status"),
        appointment.get("start"),
        appointment.get("end"),
        actors,
        slots,
    )


async def _schedules_of_slots(repository: Repository, *appointments: dict[str, Any]) -> set[str]:
    """The ids of the Schedules of the stored Slots the appointments name."""
    pairs: set[tuple[str, str]] = set()
    for body in appointments:
        for slot in body.get("slot") or []:
            pair = repository.reference(str(slot.get("reference"))).pair
            if pair is not None and pair[0] == "Slot":
                pairs.add(pair)
    found = await repository.lookup.read_json(sorted(pairs))
    ids: set[str] = set()
    for slot in found.values():
        pair = repository.reference(str((slot.get("schedule") or {}).get("reference"))).pair
        if pair is not None and pair[0] == "Schedule":
            ids.add(pair[1])
    return ids


async def _schedules_of_actors(repository: Repository, actors: list[ReferenceValue]) -> set[str]:
    if not actors:
        return set()
    query = StoreQuery(
        "Schedule", (ReferenceCondition("actor", tuple(actors)),), count=_MAX_SCHEDULES
    )
    return {s.id for s in (await repository.lookup.search(query)).resources}


async def schedules_changed(
    repository: Repository, version: StoredResource, *, freed_only: bool = False
) -> list[StoredResource]:
    """The current Schedules whose free time the committed `version` changed (module
    docstring), by id. `freed_only`: leave out Appointment changes that only take time (a
    new booking or hold): only one that held time before can give some back."""
    rtype = version.resource_type
    ids: set[str] = set()
    if rtype == "Schedule":
        ids.add(version.id)
    elif rtype in HOURS_SOURCES:
        ids |= await _schedules_of_actors(repository, [ReferenceValue(rtype, version.id)])
    elif rtype in ("Slot", "Appointment"):
        before = content_of(await previous_version(repository, version))
        after = content_of(version)
        if rtype == "Slot":
            for body in (before, after):
                ref = repository.reference(str((body.get("schedule") or {}).get("reference")))
                if ref.pair is not None and ref.pair[0] == "Schedule":
                    ids.add(ref.pair[1])
        elif freed_only and before.get("status") not in HOLDING_STATUSES:
            pass
        elif time_taken(before) != time_taken(after):
            actors: list[ReferenceValue] = []
            for body in (before, after):
                for participant in body.get("participant") or []:
                    actor = str((participant.get("actor") or {}).get("reference"))
                    pair = repository.reference(actor).pair
                    if pair is not None:
                        actors.append(ReferenceValue(ref_type=pair[0], ref_id=pair[1]))
            ids |= await _schedules_of_actors(repository, actors)
            ids |= await _schedules_of_slots(repository, before, after)
    refs = [("Schedule", i) for i in sorted(ids)]
    return await repository.lookup.read_many(refs)
