"""Access policies: what a request or a background job may reach, as the repository asks it.

The HTTP edge turns a bearer token into an `AccessPolicy` (`smart_auth.policy.ScopePolicy`) and
builds the request's repository with it; background jobs, the loader and the CLI use a
`SystemPolicy`. A policy only *decides* (which permission on which type, and how far it
reaches); the request-scoped repository (`fhir_server.repository`) *enforces* it on every read,
search, include and write (ARCHITECTURE.md "One way in"), so no path can forget a check.

Interactions map to SMART v2 permissions (SMART App Launch 2.2 `scopes-and-launch-context`):
`r` read/vread, `s` search and history, `c` create, `u` update/patch, `d` delete.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

from resources.errors import Forbidden

__all__ = [
    "OWNED_TYPES",
    "AccessPolicy",
    "Permission",
    "Reach",
    "SystemPolicy",
    "denied",
    "owner_key",
]

OWNED_TYPES = frozenset({"Subscription"})
"""Types outside every patient compartment whose resources belong to whoever wrote them:
a caller with only `patient/` scopes reaches only its own (a patient app sees and changes its
own Subscriptions, never another app's or patient's endpoints and header secrets)."""


def owner_key(client_id: str, patient: str | None) -> str:
    """The identity that owns what a patient-confined caller writes: its client and patient."""
    return f"{client_id}|Patient/{patient}"


Permission = Literal["c", "r", "u", "d", "s"]


@dataclass(frozen=True, slots=True)
class Reach:
    """How far a permission on a type reaches.

    Attributes:
        patient: the id of the patient whose compartment bounds it (R4 Patient
            CompartmentDefinition), or None for every resource of the type.
        filters: granular scope parameters (SMART v2 `?param=value`), ORed, each a tuple of
            ANDed `(name, value)`; empty when unfiltered.
        owner: for OWNED_TYPES, the `owner_key` whose resources alone it reaches, or None.
    """

    patient: str | None = None
    filters: tuple[tuple[tuple[str, str], ...], ...] = ()
    owner: str | None = None

    @property
    def confined(self) -> bool:
        """Whether it reaches only part of the type (a compartment, granular filters, or an
        owner's resources)."""
        return self.patient is not None or bool(self.filters) or self.owner is not None


UNCONFINED = Reach()


class AccessPolicy(Protocol):
    """What one caller may do. Decisions only: no I/O, no store."""

    def requestor(self) -> str:
        """Who is asking, for audit records: the user's FHIR reference, else the client id
        (`client:{id}`), or the job's name for a system policy."""

    def reach(self, resource_type: str, permission: Permission) -> Reach | None:
        """How far `permission` on `resource_type` reaches, or None if nothing grants it."""

    def credentials(self) -> dict[str, Any]:
        """What a later job needs to act for this caller again (a Subscription's deliveries
        are read with its creator's grant): a JSON object the composition root's restorer
        turns back into a policy, or into none once the grant is revoked."""

    def require(self, resource_type: str, permission: Permission, interaction: str) -> None:
        """Demand `permission` on `resource_type` (`*`: every type, e.g. system history);
        `interaction` names what is attempted, for the message (`read`, `search-type`, ...).

        Raises:
            Forbidden: (403) nothing grants it.
        """


@dataclass(frozen=True, slots=True)
class SystemPolicy:
    """The policy of the server's own work (sweepers, the loader, the CLI, the authorization
    server's records, start-up publishing), and of every request when authorization is off:
    everything, unconfined.

    Args:
        name: who acts, for audit records (`anonymous` for requests without authorization).
    """

    name: str = "anonymous"

    def requestor(self) -> str:
        """The job's name."""
        return self.name

    def credentials(self) -> dict[str, Any]:
        """`{"system": name}`: the server itself (or anyone, with authorization off)."""
        return {"system": self.name}

    def reach(self, resource_type: str, permission: Permission) -> Reach | None:
        """Every type, unconfined."""
        return UNCONFINED

    def require(self, resource_type: str, permission: Permission, interaction: str) -> None:
        """Nothing is refused."""


def denied(diagnostics: str) -> Forbidden:
    """403 `forbidden` with `WWW-Authenticate: Bearer error="insufficient_scope"` (RFC 6750
    §3.1): the caller's token is valid but does not reach this request."""
    return Forbidden(diagnostics, headers={"WWW-Authenticate": 'Bearer error="insufficient_scope"'})
