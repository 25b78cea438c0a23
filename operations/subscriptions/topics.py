"""The two SubscriptionTopics of this server (Subscriptions R5 Backport IG STU 1.1, topics as
R4B-style `SubscriptionTopic` resources) and what each event of the log means for them.

* `appointment-change`: an Appointment is created, changed or deleted. Focus: the
  Appointment. Filters (`canFilterBy`): the Appointment search parameters `patient`, `actor`
  and `status` (`Appointment?patient=Patient/1&status=booked`).
* `schedule-availability`: the free time of a Schedule changed: an Appointment taking or
  giving back time of an actor that has the Schedule (booked, cancelled, moved, a hold made or
  expired, an actor added or removed), a Slot of the Schedule written, or the Schedule itself
  (its hours, horizon, active flag) written. Focus: the Schedule. Filter: `schedule`
  (`schedule=Schedule/7`, also spelled `Schedule?_id=7`).

Instants are µs since the epoch, UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import orjson

from fhir_server.model import StoredResource
from fhir_server.repository import Repository
from fhir_server.search.query import (
    Condition,
    ReferenceCondition,
    ReferenceValue,
    StoreQuery,
    TokenCondition,
    TokenValue,
)
from operations.subscriptions.criteria import parse_criteria
from resources.errors import Invalid

__all__ = ["TOPICS", "Topic", "judged_version", "topic_resources"]

APPOINTMENT_CHANGE = "appointment-change"
SCHEDULE_AVAILABILITY = "schedule-availability"


@dataclass(frozen=True, slots=True)
class Topic:
    """One topic.

    Attributes:
        id: `appointment-change` or `schedule-availability` (its canonical is
            `{canonical root}/SubscriptionTopic/{id}`).
        focus_type: the type of the resources its notifications are about.
        filters: the filter keys a Subscription may use.
        triggers: the types whose changes may fire it.
        title, description: for the SubscriptionTopic resource.
    """

    id: str
    focus_type: str
    filters: frozenset[str]
    triggers: frozenset[str]
    title: str
    description: str

    def url(self, root: str) -> str:
        """The topic's canonical URL under the canonical root `root`."""
        return f"{root}/SubscriptionTopic/{self.id}"

    def parse_filters(self, texts: list[str], repository: Repository) -> tuple[Condition, ...]:
        """The conditions of `backport-filter-criteria` values (ANDed).

        Raises:
            Invalid: (400) a filter key this topic does not offer, or a malformed value.
        """
        conditions: list[Condition] = []
        for text in texts:
            prefix, sep, query = text.partition("?")
            if not sep:
                prefix, query = self.focus_type, text
            if prefix != self.focus_type:
                raise _bad(f"Filter {text!r}: topic {self.id} filters {self.focus_type}")
            params = parse_qsl(query, keep_blank_values=True)
            for name, value in params:
                if name == "schedule" and self.id == SCHEDULE_AVAILABILITY:
                    ref = repository.reference(value)
                    if ref.pair is None or ref.pair[0] != "Schedule":
                        raise _bad(f"Filter schedule={value!r} is not a Schedule reference")
                    conditions.append(TokenCondition("_id", (TokenValue("*", ref.pair[1]),)))
                elif name.partition(":")[0] in self.filters:
                    crit = parse_criteria(f"{self.focus_type}?{name}={value}", repository.context)
                    conditions.extend(crit.conditions)
                else:
                    offered = ", ".join(sorted(self.filters))
                    raise _bad(f"Filter {name!r} is not offered by topic {self.id} ({offered})")
        return tuple(conditions)

    async def focuses(
        self, repository: Repository, version: StoredResource
    ) -> list[StoredResource]:
        """The focus versions one event (the committed `version`) fires this topic for:
        the judged Appointment for `appointment-change` (`judged_version`), the current
        Schedules whose free time it changed for `schedule-availability`; none otherwise."""
        if version.resource_type not in self.triggers:
            return []
        if self.id == APPOINTMENT_CHANGE:
            judged = await judged_version(repository, version)
            return [judged] if judged is not None else []
        return await _schedules_changed(repository, version)

    def resource(self, root: str) -> dict[str, Any]:
        """The topic as an R4B-style SubscriptionTopic resource."""
        return {
            "resourceType": "SubscriptionTopic",
            "id": self.id,
            "url": self.url(root),
            "version": "1.0.0",
            "title": self.title,
            "status": "active",
            "description": self.description,
            "resourceTrigger": [
                {
                    "description": f"A {rtype} is created, updated or deleted",
                    "resource": f"http://hl7.org/fhir/StructureDefinition/{rtype}",
                    "supportedInteraction": ["create", "update", "delete"],
                }
                for rtype in sorted(self.triggers)
            ],
            "canFilterBy": [
                {"resource": self.focus_type, "filterParameter": key}
                for key in sorted(self.filters)
            ],
            "notificationShape": [{"resource": self.focus_type}],
        }


def _bad(message: str) -> Invalid:
    return Invalid(message, expression=("Subscription.criteria.extension",))


TOPICS: dict[str, Topic] = {
    APPOINTMENT_CHANGE: Topic(
        APPOINTMENT_CHANGE,
        "Appointment",
        frozenset({"patient", "actor", "status"}),
        frozenset({"Appointment"}),
        "Appointment change",
        "An Appointment was created, changed (booked, moved, cancelled, checked in, ...) or "
        "deleted.",
    ),
    SCHEDULE_AVAILABILITY: Topic(
        SCHEDULE_AVAILABILITY,
        "Schedule",
        frozenset({"schedule"}),
        frozenset({"Appointment", "Slot", "Schedule"}),
        "Schedule availability",
        "The free time of a Schedule changed: time booked, cancelled, moved, held or released, "
        "a Slot of it written, or its hours changed.",
    ),
}
"""The topics by id."""


def topic_resources(root: str) -> list[dict[str, Any]]:
    """Every topic as a SubscriptionTopic resource (published at start-up)."""
    return [topic.resource(root) for topic in TOPICS.values()]


async def judged_version(repository: Repository, version: StoredResource) -> StoredResource | None:
    """The version an event is judged by: itself, or for a deletion the last version that
    had content (None if there is none)."""
    if not version.deleted:
        return version
    history = await repository.lookup.history(
        "instance", version.resource_type, version.id, count=50
    )
    earlier = [v for v in history if v.version_id < version.version_id and not v.deleted]
    return earlier[0] if earlier else None


async def _previous(repository: Repository, version: StoredResource) -> StoredResource | None:
    if version.version_id <= 1:
        return None
    history = await repository.lookup.history(
        "instance", version.resource_type, version.id, count=50
    )
    earlier = [v for v in history if v.version_id < version.version_id]
    return earlier[0] if earlier else None


def _content(version: StoredResource | None) -> dict[str, Any]:
    if version is None or version.content is None:
        return {}
    loaded: dict[str, Any] = orjson.loads(version.content)
    return loaded


def _time_taken(appointment: dict[str, Any]) -> tuple[Any, ...]:
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


async def _schedules_changed(
    repository: Repository, version: StoredResource
) -> list[StoredResource]:
    """The current Schedules whose free time the event `version` changed."""
    before = _content(await _previous(repository, version))
    after = _content(version)
    ids: set[str] = set()
    if version.resource_type == "Schedule":
        ids.add(version.id)
    elif version.resource_type == "Slot":
        for body in (before, after):
            ref = repository.reference(str((body.get("schedule") or {}).get("reference")))
            if ref.pair is not None and ref.pair[0] == "Schedule":
                ids.add(ref.pair[1])
    elif _time_taken(before) != _time_taken(after):
        actors: list[ReferenceValue] = []
        for body in (before, after):
            for participant in body.get("participant") or []:
                ref = repository.reference(str((participant.get("actor") or {}).get("reference")))
                if ref.pair is not None:
                    actors.append(ReferenceValue(ref_type=ref.pair[0], ref_id=ref.pair[1]))
        if actors:
            query = StoreQuery(
                "Schedule", (ReferenceCondition("actor", tuple(actors)),), count=1000
            )
            ids.update(s.id for s in (await repository.lookup.search(query)).resources)
        ids.update(await _schedules_of_slots(repository, before, after))
    refs = [("Schedule", i) for i in sorted(ids)]
    return await repository.lookup.read_many(refs)
