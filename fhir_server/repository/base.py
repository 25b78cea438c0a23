"""The request-scoped repository's state and its access enforcement (ARCHITECTURE.md "One way
in"; SMART.md "Rules that matter").

A repository is built per request (or per background job) from the shared `Services`, the
caller's `AccessPolicy` and the request's base URL. Every read, search, include and write of
`Repository` asks the methods here, so a feature cannot skip a check: a permission per
interaction (`require`), a patient's compartment and granular scope filters on what is shown
(`admit`, `check_read`, `search_conditions`) and on what is written (`patient_confined`;
`commit.CommitWrites.check_writes`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Self

import orjson

from fhir_server.access import AccessPolicy, Permission, Reach, SystemPolicy, denied
from fhir_server.model import StoredResource
from fhir_server.repository.lookup import Lookup, Records
from fhir_server.repository.services import Services
from fhir_server.search.parse import SearchContext, parse_condition
from fhir_server.search.query import CompartmentCondition, Condition, StoreQuery, TokenCondition
from fhir_server.search.query import TokenValue as Token
from resources.errors import Invalid
from resources.indexing import compartments_of
from resources.references import Reference, parse_reference

if TYPE_CHECKING:
    from fhir_server.config import Settings

__all__ = ["RepositoryBase"]


class RepositoryBase:
    """State and access checks of one request's repository.

    Args:
        services: what the server's repositories share (store, settings, hooks).
        policy: what the caller may do (`fhir_server.access`).
        base_url: the FHIR base URL the request came in on (links, audit); with the
            configured `settings.base_url`, the bases on which absolute references are local.
        strict_availability: apply the availability rule to every Appointment write
            (`$hold`, `$book`), not only to patient-confined callers (SCHEDULING.md
            "Booking rules on every path").

    Attributes:
        policy, settings, base_url, bases, context: as described above; `context` parses
            searches (paging limits, default zone, the public base).
        lookup: unchecked reads for the server's own rules (`lookup.Lookup`).
        records: small records (`lookup.Records`).
        unit: while the write rules plan the writes of one atomic write again, every resource
            of it by `(type, id)` (new content), so a rule sees what is written beside
            (`Repository.apply`); empty otherwise.
    """

    def __init__(
        self,
        services: Services,
        policy: AccessPolicy,
        base_url: str = "",
        *,
        strict_availability: bool = False,
    ) -> None:
        self._services = services
        self._store = services.store
        self.policy = policy
        settings = services.settings
        self.settings: Settings = settings
        configured = settings.base_url.rstrip("/")
        self.base_url = base_url.rstrip("/") or configured
        self.bases: tuple[str, ...] = tuple(
            dict.fromkeys(b for b in (configured, self.base_url) if b)
        )
        self.context = SearchContext(
            default_count=settings.default_count,
            max_count=settings.max_count,
            default_tz=settings.default_timezone,
            base_url=configured or self.base_url,
        )
        self.strict_availability = strict_availability
        self.unit: dict[tuple[str, str], dict[str, Any]] = {}
        self.lookup: Lookup = services.lookup
        self.records: Records = services.records

    # -- siblings ---------------------------------------------------------------------------

    def for_job(self, name: str) -> Self:
        """A repository of the same server and base acting as the server itself (a
        `SystemPolicy` named `name`), e.g. for the audit records a request causes."""
        return type(self)(self._services, SystemPolicy(name), self.base_url)

    def acting_for(self, policy: AccessPolicy) -> Self:
        """A repository of the same server and base acting for `policy` (a job doing work
        in a caller's name, e.g. a Subscription's deliveries read with its creator's grant)."""
        return type(self)(self._services, policy, self.base_url)

    def strict(self) -> Self:
        """This repository with `strict_availability` on (`$hold`, `$book`)."""
        return type(self)(self._services, self.policy, self.base_url, strict_availability=True)

    def new_id(self) -> str:
        """A fresh server-assigned id (uuid4 by default)."""
        return self._services.new_id()

    @property
    def is_system(self) -> bool:
        """Whether this repository acts as the server itself (no token confines it)."""
        return isinstance(self.policy, SystemPolicy)

    # -- the server's own housekeeping ------------------------------------------------------

    async def release_expired_claims(self, now: int) -> list[str]:
        """Delete every claim with `expires < now` (µs UTC); the owners that had any, sorted
        (the hold sweeper; `ResourceStore.release_expired`).

        Raises:
            Forbidden: (403) not a job of the server's own (`SystemPolicy`).
        """
        if not self.is_system:
            raise denied("Only the server's own jobs release expired claims")
        return await self._store.release_expired(now)

    async def recover_interrupted_writes(self, now: int) -> int:
        """Settle the atomic writes a crashed process left unfinished whose lease lapsed before
        `now` (µs UTC): each is undone or completed, so no claim outlives its Appointment and
        no half-written transaction stays (`ResourceStore.recover`). Returns how many.

        Raises:
            Forbidden: (403) not a job of the server's own (`SystemPolicy`).
        """
        if not self.is_system:
            raise denied("Only the server's own jobs recover interrupted writes")
        return await self._store.recover(now)

    # -- references -------------------------------------------------------------------------

    def reference(self, text: str) -> Reference:
        """`text` parsed against this server's bases (`resources.references`)."""
        return parse_reference(text, self.bases)

    # -- permissions ------------------------------------------------------------------------

    def require(self, resource_type: str, permission: Permission, interaction: str) -> None:
        """Demand `permission` on `resource_type`. Raises Forbidden (403) if not granted."""
        self.policy.require(resource_type, permission, interaction)

    def require_unconfined(
        self, resource_type: str, interaction: str, permission: Permission = "s"
    ) -> None:
        """Demand `permission` on every resource of the type: history across resources and
        conditional writes cannot be narrowed to a compartment or granular scopes, so a
        confined caller is refused rather than shown or let touch what it may not.

        Raises:
            Forbidden: (403) not granted, or granted only in part.
        """
        self.require(resource_type, permission, interaction)
        reach = self.policy.reach(resource_type, permission)
        if reach is not None and reach.confined:
            raise denied(
                f"{interaction} on {resource_type} is not available to an access token "
                "confined to one patient or to granular scopes"
            )

    def patient_confined(self, resource_type: str, permission: Permission) -> str | None:
        """The patient id a permission is confined to, or None (reaches the whole type, or is
        not granted at all: `require` answers that)."""
        reach = self.policy.reach(resource_type, permission)
        return None if reach is None else reach.patient

    def write_confinement(self, resource_type: str, deleting: bool) -> str | None:
        """The patient a write of `resource_type` must stay with: the patient of any of the
        write permissions (`d` for a deletion, else `c` and `u`: an update may create) that is
        confined, or None when the caller writes the type anywhere.

        Raises:
            Forbidden: (403) no write permission on the type at all.
        """
        permissions: tuple[Permission, ...] = ("d",) if deleting else ("c", "u")
        reaches = [r for r in (self.policy.reach(resource_type, p) for p in permissions) if r]
        if not reaches:
            self.require(resource_type, permissions[0], "write")
        return next((r.patient for r in reaches if r.patient is not None), None)

    # -- what may be shown ------------------------------------------------------------------

    def search_conditions(self, resource_type: str) -> tuple[Condition, ...]:
        """Conditions confining a search of `resource_type` to what the caller may see.

        Raises:
            Forbidden: (403) no scope grants search on the type.
        """
        reach = self.policy.reach(resource_type, "s")
        if reach is None:
            self.require(resource_type, "s", "search")
            return ()
        out: list[Condition] = []
        if reach.patient is not None:
            out.append(CompartmentCondition(f"Patient/{reach.patient}"))
        out.extend(self._filter_conditions(resource_type, reach))
        return tuple(out)

    def sees(self, resource_type: str) -> bool:
        """Whether the caller may see any resource of the type (read or search permission);
        what an operation adds to its answer from `lookup` asks this or `admit` first."""
        return self._sight(resource_type) is not None

    def _sight(self, resource_type: str) -> Reach | None:
        """How far the caller sees a type: through its read scopes, else its search scopes."""
        return self.policy.reach(resource_type, "r") or self.policy.reach(resource_type, "s")

    async def admit(self, resources: Sequence[StoredResource]) -> list[StoredResource]:
        """The resources the caller may see (read or search permission, compartment, granular
        filters), in order; the others are dropped (a filtered 200, never an error)."""
        if self.is_system:
            return [r for r in resources if r.content is not None]
        kept: list[StoredResource] = []
        filtered: dict[str, list[StoredResource]] = {}
        for resource in resources:
            reach = self._sight(resource.resource_type)
            if reach is None or resource.content is None:
                continue
            if reach.patient is not None and not self.in_compartment(resource, reach.patient):
                continue
            if reach.owner is not None and not await self.owned_by(resource, reach.owner):
                continue
            if reach.filters:
                filtered.setdefault(resource.resource_type, []).append(resource)
            kept.append(resource)
        for rtype, group in filtered.items():
            reach = self._sight(rtype)
            assert reach is not None
            ids = TokenCondition("_id", tuple(Token("*", r.id) for r in group))
            conditions = self._filter_conditions(rtype, reach)
            query = StoreQuery(rtype, (ids, *conditions), count=len(group))
            visible = {r.id for r in (await self._store.search(query)).resources}
            kept = [r for r in kept if r.resource_type != rtype or r.id in visible]
        return kept

    async def check_read(self, stored: StoredResource) -> None:
        """Raise Forbidden (403) unless the caller may see `stored`; a deletion marker is
        judged by the latest version that had content."""
        if self.is_system:
            return
        if stored.content is not None and not stored.deleted:
            reach = self._sight(stored.resource_type)
            if reach is not None and not reach.confined:
                return  # the whole type is seen: what `admit` would answer, without its work
        if stored.deleted:
            versions = await self.lookup.history(
                "instance", stored.resource_type, stored.id, count=2
            )
            stored = next((v for v in versions if not v.deleted), stored)
        if not await self.admit([stored]):
            raise denied(
                f"{stored.resource_type}/{stored.id} is outside what the access token allows"
            )

    async def owned_by(self, resource: StoredResource, owner: str) -> bool:
        """Whether `resource` of an owned type (`access.OWNED_TYPES`) belongs to `owner` (an
        `access.owner_key`), as the type's registered owner reader tells; a type without a
        reader, or a resource without a known owner, belongs to no caller."""
        reader = self._services.owners.get(resource.resource_type)
        return reader is not None and await reader(self, resource.id) == owner  # type: ignore[arg-type]

    def in_compartment(self, resource: StoredResource, patient: str) -> bool:
        """Whether `resource` is in `Patient/{patient}`'s compartment (any reference spelling
        on this server's bases counts)."""
        if resource.resource_type == "Patient":
            return resource.id == patient
        if resource.content is None:
            return False
        content = orjson.loads(resource.content)
        return f"Patient/{patient}" in compartments_of(content, self.context.default_tz, self.bases)

    def _filter_conditions(self, resource_type: str, reach: Reach) -> list[Condition]:
        """Granular scope parameters as search conditions. One filter: its parameters ANDed.
        Several: ORed, which one condition expresses when every filter is one same parameter
        (`category=a`, `category=b` -> `category=a,b`).

        Raises:
            Forbidden: (403) filters this server cannot search as one.
        """
        filters = reach.filters
        if not filters:
            return []
        context = self.context
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
            f"Granular scopes on {resource_type} combine different parameters, which this "
            "server cannot search as one; ask for one granular parameter per type"
        )
