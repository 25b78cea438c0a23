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

from fhir_server.model import StoredResource
from fhir_server.repository import Repository
from fhir_server.search.query import (
    Condition,
    TokenCondition,
    TokenValue,
)
from operations.scheduling.changes import HOURS_SOURCES, schedules_changed
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
        return await schedules_changed(repository, version)

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
        frozenset({"Appointment", "Slot", "Schedule", *HOURS_SOURCES}),
        "Schedule availability",
        "The free time of a Schedule changed: time booked, cancelled, moved, held or released, "
        "a Slot of it written, or its hours changed (on the Schedule or on the PractitionerRole, "
        "HealthcareService or Location it schedules).",
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
