"""SMART scopes v1 and v2: parsing, coverage and the access they grant.

SMART App Launch 2.2 `scopes-and-launch-context.html`:

* v2 resource scopes `(patient|user|system)/(Type|*).[c][r][u][d][s][?param=value&...]`
  (`patient/Appointment.rs`, `system/Slot.cruds`, `patient/Observation.rs?category=laboratory`);
* v1 resource scopes `(patient|user|system)/(Type|*).(read|write|*)`, read = `rs`,
  write = `cud`, `*` = `cruds` (§ "Scopes for requesting clinical data", v1 equivalence);
* every other scope (`openid`, `fhirUser`, `launch`, `launch/patient`, `offline_access`, ...)
  is kept as text (`ScopeSet.others`).

Permissions: `c` create, `r` read/vread, `u` update/patch, `d` delete, `s` search and history.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qsl

Context = Literal["patient", "user", "system"]
CONTEXTS: tuple[Context, ...] = ("patient", "user", "system")
Permission = Literal["c", "r", "u", "d", "s"]
PERMISSION_ORDER = "cruds"
V1_PERMISSIONS = {"read": "rs", "write": "cud", "*": "cruds"}
KNOWN_SCOPES = (  # the non-resource scopes, in the order discovery lists them
    "openid",
    "fhirUser",
    "profile",
    "launch",
    "launch/patient",
    "launch/encounter",
    "offline_access",
    "online_access",
)

_RESOURCE_SCOPE = re.compile(
    r"^(?P<context>patient|user|system)/(?P<type>\*|[A-Z][A-Za-z]+)\."
    r"(?P<perms>read|write|\*|c?r?u?d?s?)(?:\?(?P<query>.+))?$"
)


@dataclass(frozen=True, slots=True)
class ResourceScope:
    """One resource scope.

    Attributes:
        text: the scope as written.
        context: `patient`, `user` or `system`.
        resource_type: a resource type, or `*` for all.
        permissions: the granted subset of `cruds`, in that order (`rs`).
        query: granular parameters (`?category=laboratory`), in order; empty when none.
        v1: written in v1 syntax (`read`/`write`/`*`).
    """

    text: str
    context: Context
    resource_type: str
    permissions: str
    query: tuple[tuple[str, str], ...] = ()
    v1: bool = False

    def grants(self, resource_type: str, permission: Permission) -> bool:
        """Whether this scope grants `permission` on `resource_type`."""
        return permission in self.permissions and self.resource_type in ("*", resource_type)

    def covers(self, other: ResourceScope) -> bool:
        """Whether everything `other` grants is granted by this scope (same context, this
        type `*` or equal, a superset of permissions, and no query or the same query)."""
        return (
            self.context == other.context
            and self.resource_type in ("*", other.resource_type)
            and set(other.permissions) <= set(self.permissions)
            and (not self.query or self.query == other.query)
        )


def parse_resource_scope(text: str) -> ResourceScope | None:
    """Parse one resource scope; None if `text` is not one (e.g. `openid`, or malformed:
    `patient/Appointment.sr` has its permissions out of order and is not a scope)."""
    match = _RESOURCE_SCOPE.match(text)
    if match is None:
        return None
    raw = match["perms"]
    if not raw:
        return None
    v1 = raw in V1_PERMISSIONS
    query = tuple(parse_qsl(match["query"], keep_blank_values=False)) if match["query"] else ()
    if match["query"] and (v1 or not query):
        return None
    return ResourceScope(
        text=text,
        context=match["context"],  # type: ignore[arg-type]
        resource_type=match["type"],
        permissions=V1_PERMISSIONS[raw] if v1 else raw,
        query=query,
        v1=v1,
    )


@dataclass(frozen=True, slots=True)
class ScopeSet:
    """A parsed scope string.

    Attributes:
        resources: the resource scopes, in the order given.
        others: every other known scope (`openid`, `launch/patient`, ...), in order.
        unknown: scopes neither resource scopes nor known ones (dropped from grants).
    """

    resources: tuple[ResourceScope, ...]
    others: tuple[str, ...]
    unknown: tuple[str, ...] = ()

    @classmethod
    def parse(cls, scope: str | None) -> ScopeSet:
        """Split a space-separated scope string (duplicates dropped, order kept)."""
        resources: list[ResourceScope] = []
        others: list[str] = []
        unknown: list[str] = []
        seen: set[str] = set()
        for text in (scope or "").split():
            if text in seen:
                continue
            seen.add(text)
            parsed = parse_resource_scope(text)
            if parsed is not None:
                resources.append(parsed)
            elif text in KNOWN_SCOPES:
                others.append(text)
            else:
                unknown.append(text)
        return cls(tuple(resources), tuple(others), tuple(unknown))

    def __str__(self) -> str:
        """The granted scopes as a space-separated string (unknown ones left out)."""
        return " ".join([*self.others, *(r.text for r in self.resources)])

    def has(self, scope: str) -> bool:
        """Whether the non-resource scope `scope` (`openid`, `launch/patient`, ...) is here."""
        return scope in self.others

    def matching(self, resource_type: str, permission: Permission) -> list[ResourceScope]:
        """The resource scopes granting `permission` on `resource_type`."""
        return [s for s in self.resources if s.grants(resource_type, permission)]

    def contexts(self) -> set[Context]:
        """The contexts (`patient`, `user`, `system`) of the resource scopes."""
        return {s.context for s in self.resources}

    def within(self, ceiling: ScopeSet) -> ScopeSet:
        """The scopes of this set that `ceiling` allows: a resource scope when some ceiling
        scope covers it, another scope when the ceiling lists it. Used for a client's scope
        ceiling and for a narrower scope on refresh (never a wider one)."""
        return ScopeSet(
            tuple(r for r in self.resources if any(c.covers(r) for c in ceiling.resources)),
            tuple(o for o in self.others if o in ceiling.others),
        )

    def only_contexts(self, allowed: set[Context]) -> ScopeSet:
        """This set without resource scopes of other contexts (e.g. `system/` scopes are
        not granted through an authorization code)."""
        return ScopeSet(
            tuple(r for r in self.resources if r.context in allowed), self.others, self.unknown
        )
