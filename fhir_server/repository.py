"""The FHIR repository: versioned create/read/update/patch/delete/history on a ResourceStore.

This is where FHIR's write rules live, the same for every engine and every entry point (REST,
bundles, operations, the loader): validation, server-assigned ids, `meta.versionId` and
`meta.lastUpdated`, index extraction, optimistic concurrency (`If-Match`), conditional
create/update/delete (R4 `http.html#ccreate`, `#cond-update`, `#cdelete`), and "no change, no
new version" for identical updates.

Writes can be applied at once (`create`, `update`, ...) or prepared as `WriteOp`s so a
transaction bundle commits them together (`prepare_*` + `ResourceStore.apply`).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import jsonpatch
import orjson

from fhir_server.access import access
from fhir_server.search.parse import SearchContext, parse_search
from fhir_server.search.query import StoreQuery
from fhir_server.storage.base import ClaimSet, ResourceStore, StoredResource, WriteOp
from resources.errors import (
    ClaimConflict,
    Conflict,
    Gone,
    Invalid,
    NotFound,
    PreconditionFailed,
    StoreConflict,
    Unprocessable,
)
from resources.fhir_dates import format_instant, now_us
from resources.indexing import extract_index
from resources.types import is_resource_type
from resources.validation import validate_resource

Outcome = Literal["created", "updated", "unchanged", "deleted", "found"]

ClaimPlanner = Callable[
    [str, dict[str, Any] | None, StoredResource | None], Awaitable[ClaimSet | None]
]
"""Plans the time claims of one write of a resource type: `(id, new content or None for a
deletion, current version or None) -> the owner's complete ClaimSet, or None to leave its
claims alone`. May raise FhirError (e.g. Conflict for deleting a booked Appointment)."""

VirtualReader = Callable[[str], Awaitable[dict[str, Any] | None]]
"""Serves `read` of ids that are not stored but computed (e.g. rule-derived Slots): `id ->
the resource (with id and meta), or None if there is no such resource now`."""
MAX_RETRIES = 5


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


def load_json(content: bytes | None) -> dict[str, Any]:
    """Parse stored FHIR JSON bytes into a dict."""
    if content is None:
        return {}
    data = orjson.loads(content)
    assert isinstance(data, dict)
    return data


def _strip_volatile(resource: dict[str, Any]) -> dict[str, Any]:
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


def check_type(resource_type: str) -> None:
    """Raise NotFound (404) if `resource_type` is not a resource type this server serves."""
    if not is_resource_type(resource_type):
        raise NotFound(f"Unknown resource type {resource_type!r}", code="not-supported")


class Repository:
    """FHIR interactions over one ResourceStore.

    Args:
        store: the started store.
        search_context: paging limits, default time zone and base URL used to parse
            conditional criteria.
        new_id: the id generator for server-assigned ids (uuid4 by default).
    """

    def __init__(
        self,
        store: ResourceStore,
        search_context: SearchContext | None = None,
        new_id: Callable[[], str] | None = None,
    ) -> None:
        self.store = store
        self.context = search_context or SearchContext()
        self.new_id: Callable[[], str] = new_id or (lambda: str(uuid.uuid4()))
        self.claim_planners: dict[str, ClaimPlanner] = {}
        self.virtual_readers: dict[str, VirtualReader] = {}

    # -- reads ----------------------------------------------------------------------------

    async def read(self, resource_type: str, id: str) -> StoredResource:
        """The current version (or a computed one from a VirtualReader). Raises NotFound
        (404) if there is no such resource, Gone (410) if deleted."""
        check_type(resource_type)
        stored = await self.store.read(resource_type, id)
        if stored is None:
            reader = self.virtual_readers.get(resource_type)
            computed = await reader(id) if reader is not None else None
            if computed is not None:
                meta = computed.get("meta") or {}
                return StoredResource(
                    resource_type=resource_type,
                    id=id,
                    version_id=int(meta.get("versionId", "1")),
                    last_updated=now_us(),
                    deleted=False,
                    content=orjson.dumps(computed),
                )
            raise NotFound(f"{resource_type}/{id} is not known")
        if stored.deleted:
            raise Gone(
                f"{resource_type}/{id} was deleted (version {stored.version_id})",
                headers={"ETag": f'W/"{stored.version_id}"'},
            )
        return stored

    async def read_or_deleted(self, resource_type: str, id: str) -> StoredResource:
        """The current version even if a deletion marker; NotFound (404) if never stored."""
        check_type(resource_type)
        stored = await self.store.read(resource_type, id)
        if stored is None:
            raise NotFound(f"{resource_type}/{id} is not known")
        return stored

    async def vread(self, resource_type: str, id: str, version: str) -> StoredResource:
        """One version. Raises NotFound (404) for no such version, Gone (410) for a deletion."""
        check_type(resource_type)
        if not version.isdigit():
            raise NotFound(f"{resource_type}/{id} has no version {version!r}")
        stored = await self.store.vread(resource_type, id, int(version))
        if stored is None:
            raise NotFound(f"{resource_type}/{id} has no version {version}")
        if stored.deleted:
            raise Gone(f"Version {version} of {resource_type}/{id} is a deletion")
        return stored

    async def find(self, resource_type: str, criteria: str, limit: int = 2) -> list[StoredResource]:
        """Current resources matching conditional `criteria` (a query string such as
        `identifier=http://x|1`). Raises Invalid (400) on empty or unparseable criteria."""
        params = _parse_query_string(criteria)
        if not params:
            raise Invalid("Conditional criteria must not be empty", code="invalid")
        request = parse_search(resource_type, params, self.context, strict=True)
        query = StoreQuery(resource_type, request.query.conditions, count=limit)
        return (await self.store.search(query)).resources

    async def find_one(self, resource_type: str, criteria: str) -> StoredResource | None:
        """The single current match of conditional criteria, or None.

        Raises:
            Invalid: empty or unparseable criteria (400).
            PreconditionFailed: more than one match (412 `multiple-matches`,
                R4 http.html#cond-update).
        """
        matches = await self.find(resource_type, criteria)
        if len(matches) > 1:
            raise PreconditionFailed(
                f"Criteria {criteria!r} match more than one {resource_type}",
                code="multiple-matches",
            )
        return matches[0] if matches else None

    # -- preparing versions -----------------------------------------------------------------

    def build_version(
        self,
        resource: dict[str, Any],
        *,
        version_id: int,
        method: str,
        expected_version: int | None,
    ) -> WriteOp:
        """Stamp `meta` on a validated resource and return its WriteOp (index extracted).

        `resource` must carry `resourceType` and `id`; it is not modified.
        """
        now = now_us()
        body = {"resourceType": resource["resourceType"], "id": resource["id"]}
        meta = dict(resource.get("meta") or {})
        meta["versionId"] = str(version_id)
        meta["lastUpdated"] = format_instant(now)
        body["meta"] = meta
        for key, value in resource.items():
            if key not in body:
                body[key] = value
        index = extract_index(body, self.context.default_tz)
        stored = StoredResource(
            resource_type=body["resourceType"],
            id=body["id"],
            version_id=version_id,
            last_updated=now,
            deleted=False,
            content=orjson.dumps(body),
            method=method,
        )
        return WriteOp(stored, expected_version, index)

    async def prepare_create(
        self, resource: dict[str, Any], *, id: str | None = None, validated: bool = False
    ) -> WriteOp:
        """Validate and version a new resource with a server id (or `id` when given)."""
        if not validated:
            validate_resource(resource)
        body = dict(resource)
        body["id"] = id or self.new_id()
        op = self.build_version(body, version_id=1, method="POST", expected_version=0)
        return await self._with_claims(op, body, None)

    async def prepare_update(
        self,
        resource_type: str,
        id: str,
        resource: dict[str, Any],
        *,
        if_match: str | None = None,
        method: str = "PUT",
    ) -> tuple[WriteOp | None, StoredResource | None]:
        """Validate an update (or update-as-create) and build its WriteOp.

        Returns:
            `(op, current)`: op None means the content is unchanged (no new version).

        Raises:
            Invalid: body id missing or different from `id`, invalid resource.
            PreconditionFailed: `if_match` is not the current version (412).
        """
        check_type(resource_type)
        validate_resource(resource, expected_type=resource_type)
        if resource.get("id") != id:
            raise Invalid(
                f"The resource id {resource.get('id')!r} does not match the URL id {id!r}",
                code="invalid",
                expression=[f"{resource_type}.id"],
            )
        current = await self.store.read(resource_type, id)
        expected = _check_if_match(current, if_match, resource_type, id)
        if current is not None and not current.deleted:
            before = _strip_volatile(load_json(current.content))
            if before == _strip_volatile(resource):
                return None, current
        next_version = (current.version_id + 1) if current else 1
        op = self.build_version(
            resource, version_id=next_version, method=method, expected_version=expected
        )
        return await self._with_claims(op, resource, current), current

    # -- writes ---------------------------------------------------------------------------

    async def create(
        self, resource: dict[str, Any], *, if_none_exist: str | None = None
    ) -> WriteResult:
        """`create` / `conditional_create` (R4 http.html#create, #ccreate).

        Raises:
            Invalid / Unprocessable: invalid resource (400/422).
            PreconditionFailed: `if_none_exist` matches more than one resource (412).
        """
        validate_resource(resource)
        if if_none_exist is None:
            op = await self.prepare_create(resource, validated=True)
            await self.apply([op])
            return WriteResult(op.version, "created")
        rtype = str(resource["resourceType"])
        async with self.store.lock(criteria_key(rtype, if_none_exist)):
            match = await self.find_one(rtype, if_none_exist)
            if match is not None:
                return WriteResult(match, "found")
            op = await self.prepare_create(resource, validated=True)
            await self.apply([op])
            return WriteResult(op.version, "created")

    async def update(
        self,
        resource_type: str,
        id: str,
        resource: dict[str, Any],
        *,
        if_match: str | None = None,
        method: str = "PUT",
    ) -> WriteResult:
        """`update` (update-as-create allowed, client ids). R4 http.html#update.

        Raises:
            Invalid / Unprocessable: invalid resource, id mismatch.
            PreconditionFailed: `If-Match` mismatch (412).
            Conflict: the resource kept changing under concurrent writers (409).
        """
        for _ in range(MAX_RETRIES):
            op, current = await self.prepare_update(
                resource_type, id, resource, if_match=if_match, method=method
            )
            if op is None:
                assert current is not None
                return WriteResult(current, "unchanged")
            try:
                await self.apply([op])
            except StoreConflict:
                if if_match is not None:
                    raise PreconditionFailed(
                        f"{resource_type}/{id} changed concurrently; version {if_match} "
                        "is no longer current"
                    ) from None
                continue
            created = current is None or current.deleted
            return WriteResult(op.version, "created" if created else "updated")
        raise Conflict(f"{resource_type}/{id} is being changed concurrently; retry")

    async def conditional_update(
        self, resource_type: str, criteria: str, resource: dict[str, Any]
    ) -> WriteResult:
        """`conditional_update` (R4 http.html#cond-update): no match -> create (with the
        body's id if given), one match -> update it, several -> 412."""
        check_type(resource_type)
        async with self.store.lock(criteria_key(resource_type, criteria)):
            match = await self.find_one(resource_type, criteria)
            if match is not None:
                target = match.id
                if resource.get("id") not in (None, target):
                    raise Invalid(
                        f"The body id {resource.get('id')!r} differs from the matched "
                        f"resource {resource_type}/{target}",
                        expression=[f"{resource_type}.id"],
                    )
                return await self.update(resource_type, target, {**resource, "id": target})
            if resource.get("id"):
                return await self.update(resource_type, str(resource["id"]), resource)
            validate_resource(resource, expected_type=resource_type)
            op = await self.prepare_create(resource)
            await self.apply([op])
            return WriteResult(op.version, "created")

    async def patch(
        self,
        resource_type: str,
        id: str,
        patch: object,
        *,
        if_match: str | None = None,
    ) -> WriteResult:
        """`patch` with a JSON Patch document (RFC 6902; R4 http.html#patch).

        Raises:
            NotFound / Gone: no current resource.
            Invalid: not a JSON Patch array.
            Unprocessable: the patch fails to apply, or changes `id`/`resourceType`, or
                yields an invalid resource (422).
            PreconditionFailed: `If-Match` mismatch.
        """
        if not isinstance(patch, list):
            raise Invalid("A JSON Patch document must be a JSON array of operations")
        for _ in range(MAX_RETRIES):
            current = await self.read(resource_type, id)
            _check_if_match(current, if_match, resource_type, id)
            after = self.patched(current, patch, resource_type, id)
            try:
                return await self.update(
                    resource_type, id, after, if_match=str(current.version_id), method="PATCH"
                )
            except PreconditionFailed:
                if if_match is not None:
                    raise
        raise Conflict(f"{resource_type}/{id} is being changed concurrently; retry")

    def patched(
        self, current: StoredResource, patch: object, resource_type: str, id: str
    ) -> dict[str, Any]:
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
            or (after.get("resourceType") != resource_type)
        ):
            raise Unprocessable("A patch may not change resourceType or id")
        return after

    async def prepare_delete(
        self, resource_type: str, id: str, *, if_match: str | None = None
    ) -> tuple[WriteOp | None, StoredResource | None]:
        """Build the deletion marker for `resource_type/id`; `(None, current)` when nothing
        is to be done (never stored, or already deleted)."""
        check_type(resource_type)
        current = await self.store.read(resource_type, id)
        expected = _check_if_match(current, if_match, resource_type, id)
        if current is None or current.deleted:
            return None, current
        marker = StoredResource(
            resource_type=resource_type,
            id=id,
            version_id=current.version_id + 1,
            last_updated=now_us(),
            deleted=True,
            content=None,
            method="DELETE",
        )
        return await self._with_claims(WriteOp(marker, expected, None), None, current), current

    async def delete(
        self, resource_type: str, id: str, *, if_match: str | None = None
    ) -> WriteResult | None:
        """`delete` (R4 http.html#delete): a new deletion version; None if there was nothing
        to delete (already deleted or never existed), which FHIR lets a server answer with
        200 like a deletion (idempotent delete, as HAPI FHIR does)."""
        for _ in range(MAX_RETRIES):
            op, _current = await self.prepare_delete(resource_type, id, if_match=if_match)
            if op is None:
                return None
            try:
                await self.apply([op])
            except StoreConflict:
                if if_match is not None:
                    raise PreconditionFailed(f"{resource_type}/{id} changed concurrently") from None
                continue
            return WriteResult(op.version, "deleted")
        raise Conflict(f"{resource_type}/{id} is being changed concurrently; retry")

    async def conditional_delete(self, resource_type: str, criteria: str) -> int:
        """`conditional_delete` (single-match mode): delete the one match; 0 matches -> 0;
        several -> PreconditionFailed (412). Returns the number deleted."""
        check_type(resource_type)
        async with self.store.lock(criteria_key(resource_type, criteria)):
            match = await self.find_one(resource_type, criteria)
            if match is None:
                return 0
            await self.delete(resource_type, match.id)
            return 1

    async def apply(self, ops: Sequence[WriteOp]) -> None:
        """Commit prepared ops atomically (a transaction bundle, or one write).

        Raises:
            Conflict: (409, detail `slot-unavailable`) a time claim is held by another
                booking or hold (SCHEDULING.md "Never double-book").
            StoreConflict: a concurrent write changed a resource first (version race).
            Forbidden: (403) the current access policy (`fhir_server.access`) does not let
                the request write one of them; nothing is written.
        """
        policy = access()
        if policy is not None:
            await policy.check_writes(self.store, ops)
        try:
            await self.store.apply(ops)
        except ClaimConflict as exc:
            raise _taken(exc) from exc

    async def _with_claims(
        self, op: WriteOp, resource: dict[str, Any] | None, current: StoredResource | None
    ) -> WriteOp:
        """Attach the claims planned for this write, if the type has a ClaimPlanner."""
        planner = self.claim_planners.get(op.version.resource_type)
        if planner is None:
            return op
        claims = await planner(op.version.id, resource, current)
        return op if claims is None else replace(op, claims=claims)


def _check_if_match(
    current: StoredResource | None, if_match: str | None, resource_type: str, id: str
) -> int | None:
    """Return the expected version for the store: the If-Match version, else the current one
    (0 when nothing is stored). Raises PreconditionFailed (412) on a mismatch."""
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


def _parse_query_string(criteria: str) -> list[tuple[str, str]]:
    from urllib.parse import parse_qsl

    return parse_qsl(criteria.lstrip("?"), keep_blank_values=True)


def criteria_key(resource_type: str, criteria: str) -> str:
    """The lock key of conditional criteria: type plus the sorted parameters, hashed."""
    params = sorted(_parse_query_string(criteria))
    digest = hashlib.sha256(orjson.dumps([resource_type, params])).hexdigest()
    return f"criteria:{resource_type}:{digest}"


def _taken(exc: ClaimConflict) -> Conflict:
    """The 409 for a claim the store found held by another owner (key `scope#quantum`)."""
    scope, _, quantum = exc.key.rpartition("#")
    return time_taken(scope, int(quantum) if quantum.lstrip("-").isdigit() else None)


def time_taken(scope: str, quantum: int | None = None, capacity: int | None = None) -> Conflict:
    """A client-facing 409 `slot-unavailable` for a taken claim: which schedule, slot or day,
    and when, without naming the other booking (SCHEDULING.md errors table).

    Args:
        scope: the claim scope (`Schedule/{id}`, `Slot/{id}`, `ScheduleDay/{id}/{date}`).
        quantum: the minute (µs // 60e6) of a Schedule claim, when known.
        capacity: the seats of a Slot or day, when known.
    """
    if scope.startswith("Schedule/") and quantum is not None:
        text = f"{scope} is already booked or held at {format_instant(quantum * 60_000_000)}"
    elif scope.startswith("ScheduleDay/"):
        _, schedule_id, day = scope.split("/", 2)
        per_day = f" ({capacity} per day)" if capacity else ""
        text = f"Schedule/{schedule_id} is fully booked on {day}{per_day}"
    elif scope.startswith("Slot/"):
        text = f"{scope} has no seat left"
    else:
        text = f"{scope} is taken" if scope else "it is taken"
    return Conflict(f"The time is no longer free: {text}", details_code="slot-unavailable")
