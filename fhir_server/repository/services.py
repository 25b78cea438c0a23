"""What every repository of one server shares: the store, the settings, and the per-type hooks
the features register at start-up (write rules, computed resources).

`Services` is built once by `RepositoryFactory` and never handed out: the store it holds is
reached only through a `Repository` (ARCHITECTURE.md "One way in").
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from fhir_server.config import Settings
from fhir_server.model import ClaimSet, StoredResource
from fhir_server.repository.lookup import Lookup, Records
from fhir_server.storage.base import ResourceStore
from resources.errors import Conflict

if TYPE_CHECKING:
    from fhir_server.repository import Repository

__all__ = ["OwnerReader", "PlannedWrite", "RulesPlan", "Services", "VirtualReader", "WriteRules"]


@dataclass(frozen=True, slots=True)
class PlannedWrite:
    """One write a type's rules are asked about.

    Attributes:
        resource_type, id: the identity written.
        content: the new version as FHIR JSON, or None for a deletion.
        current: the version it replaces (possibly a deletion marker), or None.
    """

    resource_type: str
    id: str
    content: dict[str, Any] | None
    current: StoredResource | None


@dataclass(frozen=True, slots=True)
class RulesPlan:
    """What a type's rules decided for one write.

    Attributes:
        claims: the owner's complete claim set after the write (SCHEDULING.md "Never
            double-book"), or None to leave its claims alone.
        audits: AuditEvents (FHIR JSON, without id) the server writes with it, atomically
            (e.g. a booking an EHR made outside the actor's availability).
        seat_scopes: claim scopes whose key was chosen among free seats (a shared Slot, a
            day's bookings): losing one of those keys to a concurrent writer re-plans the
            write instead of failing it.
        records: small records `(kind, key, doc)` to put once the write has committed (e.g.
            a Subscription's owner credentials); none if it fails or is refused.
    """

    claims: ClaimSet | None = None
    audits: tuple[dict[str, Any], ...] = ()
    seat_scopes: frozenset[str] = frozenset()
    records: tuple[tuple[str, str, dict[str, Any]], ...] = ()


class WriteRules(Protocol):
    """The rules every write of one resource type goes through (Appointment: the booking
    rules of SCHEDULING.md), whatever the path: REST, bundle entries, operations, jobs.

    Attributes:
        depends_on: the resource types whose writes in the same atomic write change the plan
            (Appointment: Schedule, Slot); the repository plans again with them in view.
    """

    depends_on: frozenset[str]

    async def plan(self, repository: Repository, write: PlannedWrite) -> RulesPlan:
        """Decide the write's claims and companion audits.

        Raises:
            FhirError: the write breaks a rule (e.g. Conflict 409 `outside-availability`);
                nothing is written.
        """

    async def explain(self, repository: Repository, key: str, claims: ClaimSet) -> Conflict:
        """The 409 to answer when another owner holds `key` (`{scope}#{quantum}`), one of the
        write's `claims`: what is taken, in the words of the rules, never naming the other
        owner."""


VirtualReader = Callable[["Repository", str], Awaitable[dict[str, Any] | None]]
"""Serves `read` of ids that are not stored but computed (rule-derived Slots, `$find`
proposals): `(repository, id) -> the resource (with id and meta), or None if there is no such
resource now`."""


OwnerReader = Callable[["Repository", str], Awaitable[str | None]]
"""Tells who owns a resource of an owned type (`fhir_server.access.OWNED_TYPES`): `(repository,
id) -> its owner_key, or None when unknown (then only the server's own work reaches it)`."""


@dataclass(slots=True)
class Services:
    """The shared parts of every repository of one server.

    Attributes:
        store: the started store (private to the repository package).
        settings: the server settings.
        rules: write rules by resource type.
        virtual: computed-resource readers by resource type.
        owners: owner readers of the owned types by resource type.
        new_id: the generator of server-assigned ids (uuid4).
        lookup, records: the unchecked reads and the records over `store` (stateless, shared
            by every repository).
    """

    store: ResourceStore
    settings: Settings
    rules: dict[str, WriteRules] = field(default_factory=dict)
    virtual: dict[str, VirtualReader] = field(default_factory=dict)
    owners: dict[str, OwnerReader] = field(default_factory=dict)
    new_id: Callable[[], str] = field(default=lambda: str(uuid.uuid4()))
    lookup: Lookup = field(init=False)
    records: Records = field(init=False)

    def __post_init__(self) -> None:
        self.lookup = Lookup(self.store)
        self.records = Records(self.store)
