"""The values of the repository's writes: a prepared write and its result, and the rules of
versions every write path shares (R4 http.html#update "no change, no new version", `If-Match`
#concurrency, #patch)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import jsonpatch

from fhir_server.model import StoredResource, WriteOp
from fhir_server.repository.reads import load_json
from resources.errors import Invalid, PreconditionFailed, Unprocessable

__all__ = [
    "Outcome",
    "Prepared",
    "WriteResult",
    "check_if_match",
    "patched",
    "strip_volatile",
    "unchanged",
]

Outcome = Literal["created", "updated", "unchanged", "deleted", "found"]


@dataclass(frozen=True, slots=True)
class WriteResult:
    """The result of one write.

    Attributes:
        stored: the version now current (for `found`/`unchanged`, the existing one).
        outcome: `created` (201), `updated` (200), `unchanged` (200, no new version),
            `deleted`, or `found` (conditional create matched an existing resource).
    """

    stored: StoredResource
    outcome: Outcome


@dataclass(slots=True)
class Prepared:
    """One prepared write: what to store and what the interaction answers.

    Attributes:
        result: the answer (None: nothing to delete).
        op: the version to store, with its claims; None when nothing is written
            (`unchanged`, `found`, nothing to delete).
        content: the new content (None for a deletion), kept to re-plan the claims.
        current: the version it replaces.
        extra: companion writes of the server (AuditEvents the write rules asked for).
        seat_scopes: claim scopes chosen among free seats (re-planned on a lost race).
        internal: a write the server makes itself (an AuditEvent): no compartment check.
        records: records to put once committed (`RulesPlan.records`).
    """

    result: WriteResult | None
    op: WriteOp | None = None
    content: dict[str, Any] | None = None
    current: StoredResource | None = None
    extra: tuple[WriteOp, ...] = ()
    seat_scopes: frozenset[str] = field(default_factory=frozenset)
    internal: bool = False
    records: tuple[tuple[str, str, dict[str, Any]], ...] = ()


def strip_volatile(resource: dict[str, Any]) -> dict[str, Any]:
    """The resource without `meta.versionId`/`meta.lastUpdated` (for change detection)."""
    out = dict(resource)
    meta = dict(out.get("meta") or {})
    meta.pop("versionId", None)
    meta.pop("lastUpdated", None)
    if meta:
        out["meta"] = meta
    else:
        out.pop("meta", None)
    return out


def unchanged(current: StoredResource | None, resource: dict[str, Any]) -> StoredResource | None:
    """`current` when `resource` equals its content but for `meta.versionId`/`lastUpdated`
    (R4 http.html#update: no change, no new version), else None."""
    if current is None or current.deleted:
        return None
    return (
        current if strip_volatile(load_json(current.content)) == strip_volatile(resource) else None
    )


def check_if_match(
    current: StoredResource | None, if_match: str | None, resource_type: str, id: str
) -> int | None:
    """The expected version for the store: the If-Match version, else the current one (0 when
    nothing is stored). Raises PreconditionFailed (412) on a mismatch."""
    actual = current.version_id if current else 0
    if if_match is None:
        return actual
    wanted = if_match.strip()
    if wanted.startswith("W/"):
        wanted = wanted[2:]
    wanted = wanted.strip('"')
    if current is None or current.deleted or wanted != str(actual):
        raise PreconditionFailed(
            f"If-Match version {wanted} does not match the current version "
            f"{actual if current and not current.deleted else 'none'} of {resource_type}/{id}"
        )
    return actual


def patched(current: StoredResource, patch: object, resource_type: str, id: str) -> dict[str, Any]:
    """Apply a JSON Patch to the current version's content (not stored).

    Raises:
        Invalid: not a JSON Patch array (400).
        Unprocessable: the patch fails, or changes `resourceType`/`id` (422).
    """
    if not isinstance(patch, list):
        raise Invalid("A JSON Patch document must be a JSON array of operations")
    before = load_json(current.content)
    try:
        after = jsonpatch.apply_patch(before, patch, in_place=False)
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError) as exc:
        raise Unprocessable(f"The JSON Patch could not be applied: {exc}") from exc
    if (
        not isinstance(after, dict)
        or after.get("id") != id
        or after.get("resourceType") != resource_type
    ):
        raise Unprocessable("A patch may not change resourceType or id")
    return after
