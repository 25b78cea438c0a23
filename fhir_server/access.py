"""The access policy seam: what the current request's token allows, asked by the core.

The HTTP edge verifies the bearer token and sets `current_access` for the request; the
interaction dispatcher, bundles, the repository's writes and operations consult it. With no
policy set (authorization off, the loader, the hold sweeper, tests of the core) everything is
allowed. The policy itself (SMART scopes, patient compartment) lives in `smart_auth.policy`;
this module only fixes the contract, so the core does not depend on the authorization server.

Interactions map to SMART v2 permissions (SMART App Launch 2.2 `scopes-and-launch-context`):
`r` read/vread, `s` search and history, `c` create, `u` update/patch, `d` delete.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Literal, Protocol

from resources.errors import Forbidden

if TYPE_CHECKING:
    from fhir_server.search.parse import SearchContext
    from fhir_server.search.query import Condition
    from fhir_server.storage.base import ResourceStore, StoredResource, WriteOp

Permission = Literal["c", "r", "u", "d", "s"]


class AccessPolicy(Protocol):
    """What one request may do. Every method raises `resources.errors.Forbidden` (403) when
    the request may not; none of them ever widens what the data layer would return."""

    def requestor(self) -> str:
        """Who is asking, for audit records: the user's FHIR reference, else the client id."""

    def require(self, resource_type: str, permission: Permission, interaction: str) -> None:
        """Demand `permission` on `resource_type` (`*` for every type, e.g. system history);
        `interaction` names what is attempted for the message (`read`, `search-type`, ...)."""

    def confined(self, resource_type: str, permission: Permission) -> bool:
        """Whether resources of this type are narrowed for this permission (to a patient's
        compartment or by granular scope parameters), i.e. not every resource is visible."""

    def search_conditions(
        self, resource_type: str, context: SearchContext
    ) -> tuple[Condition, ...]:
        """Conditions ANDed to a search of `resource_type` so it returns only what the
        policy allows (after `require(..., "s", ...)`)."""

    async def admit(
        self, store: ResourceStore, resources: Sequence[StoredResource]
    ) -> list[StoredResource]:
        """The resources (e.g. `_include`d ones) this request may see, in order; the others
        are dropped silently (a filtered 200, never an error)."""

    async def check_read(self, store: ResourceStore, resource: StoredResource) -> None:
        """Raise Forbidden unless this request may see `resource`."""

    async def check_writes(self, store: ResourceStore, ops: Sequence[WriteOp]) -> None:
        """Raise Forbidden unless every write of `ops` (new content and the version it
        replaces) stays inside what the policy confines the request to."""


current_access: ContextVar[AccessPolicy | None] = ContextVar("current_access", default=None)
"""The policy of the request being served; None means no restriction."""


def access() -> AccessPolicy | None:
    """The current request's policy, or None when nothing restricts it."""
    return current_access.get()


def require(resource_type: str, permission: Permission, interaction: str) -> None:
    """Demand `permission` of the current policy, if any.

    Raises:
        Forbidden: (403) no scope grants it.
    """
    policy = current_access.get()
    if policy is not None:
        policy.require(resource_type, permission, interaction)


def require_unconfined(resource_type: str, interaction: str, permission: Permission = "s") -> None:
    """Demand `permission` on every resource of the type. History across resources and
    conditional writes (REST or bundle entries) cannot be narrowed to a patient's compartment
    or to granular scopes, so a confined token is refused rather than shown or let touch what
    it may not.

    Raises:
        Forbidden: (403) no scope grants it, or the scopes that do are confined.
    """
    policy = current_access.get()
    if policy is None:
        return
    policy.require(resource_type, permission, interaction)
    if policy.confined(resource_type, permission):
        raise Forbidden(
            f"{interaction} on {resource_type} is not available to an access token confined "
            "to one patient or to granular scopes"
        )
