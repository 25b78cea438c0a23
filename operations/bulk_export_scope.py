"""Which resources a Bulk Data export covers beyond its search queries: the Patient
compartments at Patient level, the members' compartments at Group level (R4
CompartmentDefinition Patient; Bulk Data Access 2.0 export.md "Endpoint - All Patients",
"Endpoint - Group of Patients").

A Group-level export runs one pass per member (a compartment query each); a resource in the
compartments of several members is kept only in the pass of the first of them, so it is
written once. A Patient-level export keeps what is in some patient's compartment, unless the
caller's own policy already confines every search to one patient's.
"""

from __future__ import annotations

from collections.abc import Callable

import orjson

from fhir_server.model import StoredResource
from fhir_server.repository import Repository
from operations.bulk_export_request import Level
from resources.indexing import compartments_of

__all__ = ["Keep", "Scope"]

Keep = Callable[[StoredResource, int], bool]
"""Whether a resource found in the pass of member `i` (0 outside Group level) is written."""


class Scope:
    """The compartment checks of one export.

    Args:
        repository: the caller's repository (its zone and bases read references).
        level: the export's level.
        members: the Group's Patient ids in order (Group level), else empty.
    """

    def __init__(self, repository: Repository, level: Level, members: tuple[str, ...]) -> None:
        self.repository = repository
        self.level = level
        self.members = members
        self._index = {f"Patient/{m}": i for i, m in reversed(list(enumerate(members)))}

    def compartments(self, stored: StoredResource) -> tuple[str, ...]:
        """The compartments `stored` is in (`resources.indexing.compartments_of`)."""
        content = orjson.loads(stored.content or b"{}")
        context = self.repository.context
        return compartments_of(content, context.default_tz, self.repository.bases)

    def keep(self, resource_type: str) -> Keep | None:
        """The check the found resources of a type need, or None (every one is kept)."""
        if self.level == "system" or (self.level == "patient" and resource_type == "Patient"):
            return None
        if self.level == "patient":
            if self.repository.patient_confined(resource_type, "s") is not None:
                return None  # the policy's own compartment condition already holds
            return lambda stored, _: self._any_patient(self.compartments(stored))

        def first_member(stored: StoredResource, member: int) -> bool:
            if member == 0:
                return True
            found = [self._index[c] for c in self.compartments(stored) if c in self._index]
            return min(found, default=member) == member

        return first_member

    def covers(self, stored: StoredResource) -> bool:
        """Whether a resource (a deleted one's last content) was within the export's scope."""
        if self.level == "system":
            return True
        compartments = self.compartments(stored)
        if self.level == "patient":
            return stored.resource_type == "Patient" or self._any_patient(compartments)
        return any(c in self._index for c in compartments)

    @staticmethod
    def _any_patient(compartments: tuple[str, ...]) -> bool:
        return any(c.startswith("Patient/") for c in compartments)
