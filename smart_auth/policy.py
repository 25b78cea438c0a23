"""Scope enforcement: the AccessPolicy of one SMART access token (SMART.md "Rules that matter").

Deny by default. An interaction needs a scope granting its permission on its type
(`fhir_server.access`). Which scopes grant it decides the reach:

* a `user/` or `system/` scope: every resource of the type (user scopes act for the token's
  `fhirUser`, who is recorded as the agent of what the server audits);
* only `patient/` scopes: the patient in context — a type of the R4 Patient compartment is
  narrowed to `Patient/{id}`'s compartment (the Patient itself included); types outside that
  compartment (Practitioner, Schedule, Slot, Location, ...) carry no patient and are not
  narrowed, so a patient app can find and book free time;
* granular v2 scopes (`patient/Observation.rs?category=laboratory`): only resources matching
  the scope's parameters; several granular scopes of one type are ORed;
* `patient/` scopes on an owned type (`fhir_server.access.OWNED_TYPES`: Subscription): only
  the resources this client wrote for this patient.

The policy only decides; the request-scoped repository (`fhir_server.repository`) enforces
the reach on every read, search, include and write (REST, bundles and operations alike): a
patient-confined token cannot read, book, hold or cancel for another patient.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fhir_server.access import OWNED_TYPES, Permission, Reach, denied, owner_key
from resources.search_parameters import in_patient_compartment
from smart_auth.scopes import ResourceScope, ScopeSet

__all__ = ["ScopePolicy", "denied"]


@dataclass(slots=True)
class ScopePolicy:
    """The AccessPolicy (`fhir_server.access.AccessPolicy`) of one token.

    Args:
        scopes: the granted scopes.
        patient: the patient id in context (`patient` of the token response), or None.
        fhir_user: the user's FHIR reference (`Practitioner/1`), or None.
        client_id: the client the token was issued to.
        grant: the grant the token belongs to (`grant` claim), "" if none.
    """

    scopes: ScopeSet
    patient: str | None = None
    fhir_user: str | None = None
    client_id: str = ""
    grant: str = ""
    _reach: dict[tuple[str, str], Reach | None] = field(default_factory=dict)

    def requestor(self) -> str:
        """The user's FHIR reference, else `client:{client_id}` (audit `agent.who`)."""
        return self.fhir_user or f"client:{self.client_id}"

    def credentials(self) -> dict[str, Any]:
        """`{"grant", "scope", "patient", "fhir_user", "client_id"}`: restored by
        `AuthServer.restore_policy` while the grant holds."""
        return {
            "grant": self.grant,
            "scope": str(self.scopes),
            "patient": self.patient,
            "fhir_user": self.fhir_user,
            "client_id": self.client_id,
        }

    # -- decisions --------------------------------------------------------------------------

    def reach(self, resource_type: str, permission: Permission) -> Reach | None:
        """The reach of `permission` on `resource_type`, or None if no scope grants it."""
        key = (resource_type, permission)
        if key not in self._reach:
            self._reach[key] = self._decide(resource_type, permission)
        return self._reach[key]

    def _decide(self, resource_type: str, permission: Permission) -> Reach | None:
        matching = self.scopes.matching(resource_type, permission)
        if not matching:
            return None
        wide = [s for s in matching if s.context != "patient"]
        group: list[ResourceScope] = wide or matching
        patient = None
        if not wide and (resource_type == "*" or in_patient_compartment(resource_type)):
            # `*` (system history) spans compartment types too: patient/ scopes confine it
            if self.patient is None:
                return None  # patient/ scopes without a patient in context grant nothing
            patient = self.patient
        filters = () if any(not s.query for s in group) else tuple(s.query for s in group)
        owner = None
        if not wide and resource_type in OWNED_TYPES:
            if self.patient is None:
                return None
            owner = owner_key(self.client_id, self.patient)
        return Reach(patient, filters, owner)

    def require(self, resource_type: str, permission: Permission, interaction: str) -> None:
        """Raise Forbidden (403) unless a scope grants `permission` on `resource_type`."""
        if self.reach(resource_type, permission) is not None:
            return
        what = "every type" if resource_type == "*" else resource_type
        hint = f"{{patient|user|system}}/{resource_type}.{permission}"
        if resource_type != "*" and self.scopes.matching(resource_type, permission):
            hint = "a patient in context for its patient/ scopes"
        raise denied(
            f"The access token does not allow {interaction} on {what}: it needs {hint} "
            f"(granted: {self.scopes or 'no scopes'})"
        )
