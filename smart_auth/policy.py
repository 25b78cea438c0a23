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
  the scope's parameters; several granular scopes of one type are ORed.

Writes made on behalf of a patient-confined token (REST, bundles and the scheduling
operations alike) must keep every resource of the Patient compartment, before and after, inside
that patient's compartment: a patient cannot book, hold or cancel for another patient.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import orjson

from fhir_server.access import Permission
from fhir_server.search.parse import SearchContext, parse_condition
from fhir_server.search.query import (
    CompartmentCondition,
    Condition,
    StoreQuery,
    TokenCondition,
    TokenValue,
)
from fhir_server.storage.base import ResourceStore, StoredResource, WriteOp
from resources.errors import Forbidden, Invalid
from resources.indexing import compartments_of
from resources.search_parameters import compartment_params
from smart_auth.scopes import ResourceScope, ScopeSet


def denied(diagnostics: str) -> Forbidden:
    """403 `forbidden` with `WWW-Authenticate: Bearer error="insufficient_scope"` (RFC 6750
    §3.1): the token is valid but does not reach this request."""
    return Forbidden(diagnostics, headers={"WWW-Authenticate": 'Bearer error="insufficient_scope"'})


UNNARROWED_WRITES = frozenset({"AuditEvent"})  # written by the server itself about the request


@dataclass(frozen=True, slots=True)
class Reach:
    """How far a permission on a type reaches.

    Attributes:
        patient: the patient id whose compartment bounds it, or None.
        filters: granular scope parameters, ORed (each a tuple of ANDed `(name, value)`);
            empty when unfiltered.
    """

    patient: str | None = None
    filters: tuple[tuple[tuple[str, str], ...], ...] = ()


def in_patient_compartment(resource_type: str) -> bool:
    """Whether R4's Patient CompartmentDefinition includes `resource_type` (or it is Patient)."""
    return resource_type == "Patient" or bool(compartment_params("Patient", resource_type))


@dataclass(slots=True)
class ScopePolicy:
    """The AccessPolicy (`fhir_server.access.AccessPolicy`) of one token.

    Args:
        scopes: the granted scopes.
        patient: the patient id in context (`patient` of the token response), or None.
        fhir_user: the user's FHIR reference (`Practitioner/1`), or None.
        client_id: the client the token was issued to.
    """

    scopes: ScopeSet
    patient: str | None = None
    fhir_user: str | None = None
    client_id: str = ""
    default_tz: str = "UTC"
    _reach: dict[tuple[str, str], Reach | None] = field(default_factory=dict)

    def requestor(self) -> str:
        """The user's FHIR reference, else `client:{client_id}` (audit `agent.who`)."""
        return self.fhir_user or f"client:{self.client_id}"

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
        if not wide and in_patient_compartment(resource_type):
            if self.patient is None:
                return None  # patient/ scopes without a patient in context grant nothing
            patient = self.patient
        filters = () if any(not s.query for s in group) else tuple(s.query for s in group)
        return Reach(patient, filters)

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

    def confined(self, resource_type: str, permission: Permission) -> bool:
        """Whether this permission reaches only part of the type's resources."""
        reach = self.reach(resource_type, permission)
        return reach is not None and (reach.patient is not None or bool(reach.filters))

    # -- search -----------------------------------------------------------------------------

    def search_conditions(
        self, resource_type: str, context: SearchContext
    ) -> tuple[Condition, ...]:
        """The conditions confining a search of `resource_type` (compartment, granular)."""
        reach = self.reach(resource_type, "s")
        if reach is None:
            self.require(resource_type, "s", "search")
            return ()
        out: list[Condition] = []
        if reach.patient is not None:
            out.append(CompartmentCondition(f"Patient/{reach.patient}"))
        out.extend(_filter_conditions(resource_type, reach.filters, context))
        return tuple(out)

    # -- resources --------------------------------------------------------------------------

    async def admit(
        self, store: ResourceStore, resources: Sequence[StoredResource]
    ) -> list[StoredResource]:
        """The resources this token may see (read or search permission, patient compartment,
        granular parameters), in order."""
        kept: list[StoredResource] = []
        filtered: dict[str, list[StoredResource]] = {}
        for resource in resources:
            reach = self._sight(resource.resource_type)
            if reach is None or resource.content is None:
                continue
            if reach.patient is not None and not self._in_compartment(resource, reach.patient):
                continue
            if reach.filters:
                filtered.setdefault(resource.resource_type, []).append(resource)
            kept.append(resource)
        for rtype, group in filtered.items():
            reach = self._sight(rtype)
            assert reach is not None
            ids = TokenCondition("_id", tuple(TokenValue("*", r.id) for r in group))
            context = SearchContext(default_tz=self.default_tz)
            conditions = _filter_conditions(rtype, reach.filters, context)
            page = await store.search(StoreQuery(rtype, (ids, *conditions), count=len(group)))
            drop = {r.id for r in group} - {r.id for r in page.resources}
            kept = [r for r in kept if not (r.resource_type == rtype and r.id in drop)]
        return kept

    def _sight(self, resource_type: str) -> Reach | None:
        """How far a token sees a type: through its read scopes, else its search scopes."""
        return self.reach(resource_type, "r") or self.reach(resource_type, "s")

    async def check_read(self, store: ResourceStore, resource: StoredResource) -> None:
        """Raise Forbidden unless the token may see `resource`."""
        if not await self.admit(store, [resource]):
            raise denied(
                f"{resource.resource_type}/{resource.id} is outside what the access token "
                f"allows (granted: {self.scopes}"
                + (f"; patient in context: {self.patient})" if self.patient else ")")
            )

    def _in_compartment(self, resource: StoredResource, patient: str) -> bool:
        if resource.resource_type == "Patient":
            return resource.id == patient
        if resource.content is None:
            return False
        return f"Patient/{patient}" in compartments_of(
            orjson.loads(resource.content), self.default_tz
        )

    # -- writes -----------------------------------------------------------------------------

    async def check_writes(self, store: ResourceStore, ops: Sequence[WriteOp]) -> None:
        """Raise Forbidden if a write would put, or take, a Patient-compartment resource
        outside the patient in context (for a patient-confined token)."""
        if self.patient is None:
            return
        confined = [
            op
            for op in ops
            if op.version.resource_type not in UNNARROWED_WRITES
            and in_patient_compartment(op.version.resource_type)
            and not self._writes_widely(op.version.resource_type)
        ]
        if not confined:
            return
        befores = await store.read_many(
            [(op.version.resource_type, op.version.id) for op in confined if op.expected_version]
        )
        for version in [*befores, *(op.version for op in confined if not op.version.deleted)]:
            if not self._in_compartment(version, self.patient):
                raise denied(
                    f"The access token is confined to Patient/{self.patient}: writing "
                    f"{version.resource_type}/{version.id} would reach outside that patient's "
                    "compartment; nothing was written"
                )

    def _writes_widely(self, resource_type: str) -> bool:
        """Whether a user/ or system/ scope lets this token write the type anywhere."""
        return any(
            s.context != "patient" and s.resource_type in ("*", resource_type)
            for s in self.scopes.resources
            if set(s.permissions) & {"c", "u", "d"}
        )


def _filter_conditions(
    resource_type: str,
    filters: tuple[tuple[tuple[str, str], ...], ...],
    context: SearchContext,
) -> list[Condition]:
    """Granular scope parameters as search conditions. One filter: its parameters ANDed.
    Several: ORed, which one condition expresses when every filter is one same parameter
    (`category=a`, `category=b` -> `category=a,b`)."""
    if not filters:
        return []
    try:
        if len(filters) == 1:
            return [parse_condition(resource_type, k, v, context) for k, v in filters[0]]
        names = {name for f in filters for name, _ in f}
        if len(names) == 1 and all(len(f) == 1 for f in filters):
            (name,) = names
            values = ",".join(f[0][1] for f in filters)
            return [parse_condition(resource_type, name, values, context)]
    except Invalid as exc:
        raise denied(f"A granular scope on {resource_type} cannot be applied: {exc}") from exc
    raise denied(
        f"Granular scopes on {resource_type} combine different parameters, which this server "
        "cannot search as one; ask for one granular parameter per type"
    )
