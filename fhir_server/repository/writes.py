"""The repository's write interactions, one implementation for every path (R4 http.html#create,
#ccreate, #update, #cond-update, #patch, #delete, #cdelete; bundle.html#transaction).

Each interaction is `prepare_*` (permission, validation, conditional match, optimistic version,
`meta`, index, the type's write rules) then `apply` (the caller's compartment, one atomic store
write). REST calls them back to back (`create`, `update`, ...); a transaction Bundle prepares
every entry and applies them all at once; operations prepare what they write. So a rule —
a permission, a booking rule, a conditional match's read check — holds on every path at once.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import jsonpatch
import orjson

from fhir_server.model import StoredResource, WriteOp
from fhir_server.repository.reads import ReadInteractions, check_type, criteria_key, load_json
from fhir_server.repository.services import PlannedWrite, WriteRules
from resources.errors import (
    ClaimConflict,
    Conflict,
    Invalid,
    PreconditionFailed,
    StoreConflict,
    Unprocessable,
)
from resources.fhir_dates import format_instant, now_us
from resources.indexing import extract_index
from resources.validation import validate_resource

__all__ = ["MAX_RETRIES", "Outcome", "Prepared", "WriteInteractions", "WriteResult", "time_taken"]

Outcome = Literal["created", "updated", "unchanged", "deleted", "found"]
MAX_RETRIES = 5
"""How often a write is prepared again after losing a version race (or a seat)."""


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
    """

    result: WriteResult | None
    op: WriteOp | None = None
    content: dict[str, Any] | None = None
    current: StoredResource | None = None
    extra: tuple[WriteOp, ...] = ()
    seat_scopes: frozenset[str] = field(default_factory=frozenset)
    internal: bool = False


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


def _check_if_match(
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


def time_taken(scope: str, quantum: int | None = None, capacity: int | None = None) -> Conflict:
    """A client-facing 409 for a taken claim, without naming the other booking (SCHEDULING.md
    "Errors"): detail `patient-conflict` for a patient's own time, else `slot-unavailable`.

    Args:
        scope: the claim scope (`Schedule/{id}`, `Slot/{id}`, `ScheduleDay/{id}/{date}`,
            `Patient/{id}`).
        quantum: the minute (µs // 60e6) of a minute claim, when known.
        capacity: the seats of a Slot or day, when known.
    """
    when = f" at {format_instant(quantum * 60_000_000)}" if quantum is not None else ""
    if scope.startswith("Patient/"):
        return Conflict(
            f"{scope} already has a booked or held appointment{when}",
            details_code="patient-conflict",
        )
    if scope.startswith("Schedule/") and quantum is not None:
        text = f"{scope} is already booked or held{when}"
    elif scope.startswith("ScheduleDay/"):
        _, schedule_id, day = scope.split("/", 2)
        per_day = f" ({capacity} per day)" if capacity else ""
        text = f"Schedule/{schedule_id} is fully booked on {day}{per_day}"
    elif scope.startswith("Slot/"):
        text = f"{scope} has no seat left"
    else:
        text = f"{scope} is taken" if scope else "it is taken"
    return Conflict(f"The time is no longer free: {text}", details_code="slot-unavailable")


def _taken(exc: ClaimConflict) -> Conflict:
    scope, _, quantum = exc.key.rpartition("#")
    minute = (
        int(quantum)
        if quantum.lstrip("-").isdigit() and scope.startswith(("Schedule/", "Patient/"))
        else None
    )
    return time_taken(scope, minute)


class WriteInteractions(ReadInteractions):
    """Writes (see the module docstring)."""

    # -- building versions ------------------------------------------------------------------

    def build_version(
        self,
        resource: dict[str, Any],
        *,
        version_id: int,
        method: str,
        expected_version: int | None,
    ) -> WriteOp:
        """Stamp `meta` on a validated resource and return its WriteOp (index extracted with
        this server's bases). `resource` carries `resourceType` and `id`; it is not modified."""
        now = now_us()
        body = {"resourceType": resource["resourceType"], "id": resource["id"]}
        meta = dict(resource.get("meta") or {})
        meta["versionId"] = str(version_id)
        meta["lastUpdated"] = format_instant(now)
        body["meta"] = meta
        for key, value in resource.items():
            if key not in body:
                body[key] = value
        index = extract_index(body, self.context.default_tz, self.bases)
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

    async def _planned(self, prepared: Prepared) -> Prepared:
        """Ask the type's write rules for the claims and companion audits of `prepared`."""
        op = prepared.op
        assert op is not None
        rules = self._services.rules.get(op.version.resource_type)
        if rules is None:
            return prepared
        write = PlannedWrite(
            op.version.resource_type, op.version.id, prepared.content, prepared.current
        )
        plan = await rules.plan(self, write)  # type: ignore[arg-type]
        if plan.claims is not None:
            prepared.op = replace(op, claims=plan.claims)
        extra: list[WriteOp] = []
        for event in plan.audits:
            audit = (await self.prepare_audit(event)).op
            assert audit is not None
            extra.append(audit)
        prepared.extra = tuple(extra)
        prepared.seat_scopes = plan.seat_scopes
        return prepared

    # -- create -----------------------------------------------------------------------------

    async def prepare_create(
        self,
        resource: dict[str, Any],
        *,
        if_none_exist: str | None = None,
        id: str | None = None,
    ) -> Prepared:
        """`create` / `conditional-create`: a new resource with a server id (or `id`).

        Raises:
            Forbidden: (403) no create permission, or the conditional match is outside what
                the caller may see.
            Invalid / Unprocessable: an invalid resource (400/422).
            PreconditionFailed: `if_none_exist` matches several resources (412).
        """
        rtype = str(resource.get("resourceType"))
        self.require(rtype, "c", "create")
        validate_resource(resource)
        if if_none_exist is not None:
            match = await self.find_one(rtype, if_none_exist)
            if match is not None:  # the match is shown: the caller must be allowed to see it
                await self.check_read(match)
                return Prepared(WriteResult(match, "found"))
        return await self._prepare_new(resource, id)

    async def _prepare_new(self, resource: dict[str, Any], id: str | None = None) -> Prepared:
        body = {**resource, "id": id or self._services.new_id()}
        op = self.build_version(body, version_id=1, method="POST", expected_version=0)
        prepared = Prepared(WriteResult(op.version, "created"), op, body)
        return await self._planned(prepared)

    async def prepare_audit(self, event: dict[str, Any]) -> Prepared:
        """An AuditEvent the server writes about the request (no permission asked of the
        caller; `event` is built by the server and valid)."""
        body = {**event, "id": self._services.new_id()}
        op = self.build_version(body, version_id=1, method="POST", expected_version=0)
        return Prepared(WriteResult(op.version, "created"), op, body, internal=True)

    # -- update and patch -------------------------------------------------------------------

    async def prepare_update(
        self,
        resource_type: str,
        id: str,
        resource: dict[str, Any],
        *,
        if_match: str | None = None,
        method: str = "PUT",
    ) -> Prepared:
        """`update` (update-as-create allowed, client ids; R4 http.html#update).

        Raises:
            Forbidden: (403) no update permission.
            Invalid / Unprocessable: invalid resource, body id differs from `id`.
            PreconditionFailed: `If-Match` is not the current version (412).
        """
        check_type(resource_type)
        self.require(resource_type, "u", "patch" if method == "PATCH" else "update")
        validate_resource(resource, expected_type=resource_type)
        if resource.get("id") != id:
            raise Invalid(
                f"The resource id {resource.get('id')!r} does not match the URL id {id!r}",
                code="invalid",
                expression=[f"{resource_type}.id"],
            )
        current = await self._store.read(resource_type, id)
        expected = _check_if_match(current, if_match, resource_type, id)
        return await self._prepare_replace(resource, current, expected, method)

    async def _prepare_replace(
        self,
        resource: dict[str, Any],
        current: StoredResource | None,
        expected: int | None,
        method: str,
    ) -> Prepared:
        """The next version of `resource` over `current` (the version it was based on)."""
        unchanged = current is not None and not current.deleted
        if unchanged and current is not None:
            before = _strip_volatile(load_json(current.content))
            if before == _strip_volatile(resource):
                await self.check_read(current)
                return Prepared(WriteResult(current, "unchanged"), current=current)
        version = (current.version_id + 1) if current else 1
        op = self.build_version(
            resource, version_id=version, method=method, expected_version=expected
        )
        created = current is None or current.deleted
        result = WriteResult(op.version, "created" if created else "updated")
        return await self._planned(Prepared(result, op, resource, current))

    async def prepare_conditional_update(
        self, resource_type: str, criteria: str, resource: dict[str, Any]
    ) -> Prepared:
        """`conditional-update` (R4 http.html#cond-update): no match -> create (with the body's
        id if given), one match -> update it, several -> 412. The caller must reach the whole
        type (a match may lie anywhere).

        Raises:
            Forbidden, Invalid, Unprocessable, PreconditionFailed: as `prepare_update`.
        """
        check_type(resource_type)
        self.require_unconfined(resource_type, "conditional-update", "u")
        match = await self.find_one(resource_type, criteria)
        if match is not None:
            if resource.get("id") not in (None, match.id):
                raise Invalid(
                    f"The body id {resource.get('id')!r} differs from the matched resource "
                    f"{resource_type}/{match.id}",
                    expression=[f"{resource_type}.id"],
                )
            return await self.prepare_update(resource_type, match.id, {**resource, "id": match.id})
        if resource.get("id"):
            return await self.prepare_update(resource_type, str(resource["id"]), resource)
        validate_resource(resource, expected_type=resource_type)
        return await self._prepare_new(resource)

    async def prepare_patch(
        self, resource_type: str, id: str, patch: object, *, if_match: str | None = None
    ) -> Prepared:
        """`patch` with a JSON Patch document (RFC 6902; R4 http.html#patch), based on the
        version read (a concurrent change makes the apply fail with StoreConflict).

        Raises:
            NotFound / Gone: no current resource. Invalid: not a JSON Patch array.
            Unprocessable: the patch fails, changes `id`/`resourceType`, or yields an invalid
                resource (422). PreconditionFailed: `If-Match` mismatch. Forbidden: (403).
        """
        if not isinstance(patch, list):
            raise Invalid("A JSON Patch document must be a JSON array of operations")
        self.require(resource_type, "u", "patch")
        current = await self.read(resource_type, id)
        _check_if_match(current, if_match, resource_type, id)
        after = patched(current, patch, resource_type, id)
        validate_resource(after, expected_type=resource_type)
        return await self._prepare_replace(after, current, current.version_id, "PATCH")

    # -- delete -----------------------------------------------------------------------------

    async def prepare_delete(
        self, resource_type: str, id: str, *, if_match: str | None = None
    ) -> Prepared:
        """`delete` (R4 http.html#delete): a deletion version; `result` None when there is
        nothing to delete (never stored, or deleted already: an idempotent 200/204).

        Raises:
            Forbidden: (403). PreconditionFailed: `If-Match` mismatch (412).
            Conflict: (409) the type's rules refuse (a booked Appointment: cancel it first).
        """
        check_type(resource_type)
        self.require(resource_type, "d", "delete")
        current = await self._store.read(resource_type, id)
        expected = _check_if_match(current, if_match, resource_type, id)
        if current is None or current.deleted:
            return Prepared(None, current=current)
        marker = StoredResource(
            resource_type=resource_type,
            id=id,
            version_id=current.version_id + 1,
            last_updated=now_us(),
            deleted=True,
            content=None,
            method="DELETE",
        )
        prepared = Prepared(
            WriteResult(marker, "deleted"), WriteOp(marker, expected, None), None, current
        )
        return await self._planned(prepared)

    async def prepare_conditional_delete(self, resource_type: str, criteria: str) -> Prepared:
        """`conditional-delete` (single-match mode): delete the one match; none -> nothing;
        several -> 412. The caller must reach the whole type."""
        check_type(resource_type)
        self.require_unconfined(resource_type, "conditional-delete", "d")
        match = await self.find_one(resource_type, criteria)
        if match is None:
            return Prepared(None)
        return await self.prepare_delete(resource_type, match.id)

    # -- commit -----------------------------------------------------------------------------

    async def apply(self, prepared: Sequence[Prepared]) -> None:
        """Commit prepared writes atomically (one REST write, a transaction, an operation).

        Raises:
            Forbidden: (403) a write reaches outside the caller's patient compartment.
            Conflict: (409, detail `slot-unavailable` or `patient-conflict`) a time claim is
                held by another booking or hold (SCHEDULING.md "Never double-book").
            StoreConflict: a concurrent write changed a resource first (a version race).
        Nothing is written on any error.
        """
        writes = [p for p in prepared if p.op is not None]
        if not writes:
            return
        await self.check_writes([p.op for p in writes if p.op is not None and not p.internal])
        if len(writes) > 1:
            await self._plan_as_unit(writes)
        for attempt in range(MAX_RETRIES):
            ops = [op for p in writes for op in (p.op, *p.extra) if op is not None]
            try:
                await self._store.apply(ops)
                return
            except ClaimConflict as exc:
                scope = exc.key.rpartition("#")[0]
                lost = [p for p in writes if scope in p.seat_scopes]
                if not lost or attempt == MAX_RETRIES - 1:
                    raise await self._explained(exc, writes) from exc
                for p in lost:  # a seat went to a concurrent booker: choose again
                    await self._planned(p)

    async def _plan_as_unit(self, writes: Sequence[Prepared]) -> None:
        """Plan the ruled writes of one atomic write again, now that every resource of it is
        known (`unit`): an Appointment booked in the same transaction that creates its
        actor's Schedule or its Slot is guarded by them, whatever the entry order."""
        written = {p.op.version.resource_type for p in writes if p.op is not None}
        ruled = [
            p
            for p in writes
            if p.content is not None and (rules := self._rules_of(p)) and rules.depends_on & written
        ]
        if not ruled:
            return
        self.unit = {
            (p.op.version.resource_type, p.op.version.id): p.content
            for p in writes
            if p.op is not None and p.content is not None
        }
        try:
            for p in ruled:
                await self._planned(p)
        finally:
            self.unit = {}

    def _rules_of(self, prepared: Prepared) -> WriteRules | None:
        op = prepared.op
        return None if op is None else self._services.rules.get(op.version.resource_type)

    async def _explained(self, exc: ClaimConflict, writes: Sequence[Prepared]) -> Conflict:
        """The 409 for a taken claim; when it is a patient's own time, a taken time of a
        Schedule or Slot of the same write is named instead (the more useful answer to a
        booking that clashes with both)."""
        if not exc.key.startswith("Patient/"):
            return _taken(exc)
        for prepared in writes:
            claims = prepared.op.claims if prepared.op is not None else None
            if claims is None:
                continue
            by_scope: dict[str, set[int]] = {}
            for key in claims.keys:
                if not key.scope.startswith("Patient/"):
                    by_scope.setdefault(key.scope, set()).add(key.quantum)
            for scope, quanta in by_scope.items():
                held = await self._store.claims_in(scope, min(quanta), max(quanta) + 1)
                for claim in held:
                    if claim.owner != claims.owner and claim.key.quantum in quanta:
                        return _taken(ClaimConflict(str(claim.key), key=str(claim.key)))
        return _taken(exc)

    @contextlib.asynccontextmanager
    async def criteria_locks(self, criteria: Iterable[tuple[str, str]]) -> AsyncIterator[None]:
        """Hold the cross-process locks of conditional criteria `(type, criteria)` for the
        block, in a fixed order (so two transactions cannot deadlock), so two conditional
        writes with the same criteria never both create."""
        keys = sorted({criteria_key(rtype, text) for rtype, text in criteria})
        async with contextlib.AsyncExitStack() as stack:
            for key in keys:
                await stack.enter_async_context(self._store.lock(key))
            yield

    # -- REST: prepare and apply ------------------------------------------------------------

    async def _commit(self, prepare: Any, if_match: str | None, what: str) -> Prepared:
        """Prepare and apply, preparing again after a lost version race (unless the client
        named the version with If-Match: then 412)."""
        for _ in range(MAX_RETRIES):
            prepared: Prepared = await prepare()
            try:
                await self.apply([prepared])
            except StoreConflict:
                if if_match is not None:
                    raise PreconditionFailed(
                        f"{what} changed concurrently; version {if_match} is no longer current"
                    ) from None
                continue
            return prepared
        raise Conflict(f"{what} is being changed concurrently; retry")

    async def create(
        self, resource: dict[str, Any], *, if_none_exist: str | None = None
    ) -> WriteResult:
        """REST `create` / `conditional-create` (see `prepare_create`); the criteria are
        locked across processes while matching and writing."""
        rtype = str(resource.get("resourceType"))

        async def prepare() -> Prepared:
            return await self.prepare_create(resource, if_none_exist=if_none_exist)

        criteria = [(rtype, if_none_exist)] if if_none_exist is not None else []
        async with self.criteria_locks(criteria):
            done = await self._commit(prepare, None, rtype)
        assert done.result is not None
        return done.result

    async def update(
        self,
        resource_type: str,
        id: str,
        resource: dict[str, Any],
        *,
        if_match: str | None = None,
    ) -> WriteResult:
        """REST `update` (see `prepare_update`)."""

        async def prepare() -> Prepared:
            return await self.prepare_update(resource_type, id, resource, if_match=if_match)

        done = await self._commit(prepare, if_match, f"{resource_type}/{id}")
        assert done.result is not None
        return done.result

    async def conditional_update(
        self, resource_type: str, criteria: str, resource: dict[str, Any]
    ) -> WriteResult:
        """REST `conditional-update` (see `prepare_conditional_update`), criteria locked."""

        async def prepare() -> Prepared:
            return await self.prepare_conditional_update(resource_type, criteria, resource)

        async with self.criteria_locks([(resource_type, criteria)]):
            done = await self._commit(prepare, None, resource_type)
        assert done.result is not None
        return done.result

    async def patch(
        self, resource_type: str, id: str, patch: object, *, if_match: str | None = None
    ) -> WriteResult:
        """REST `patch` (see `prepare_patch`)."""

        async def prepare() -> Prepared:
            return await self.prepare_patch(resource_type, id, patch, if_match=if_match)

        done = await self._commit(prepare, if_match, f"{resource_type}/{id}")
        assert done.result is not None
        return done.result

    async def delete(
        self, resource_type: str, id: str, *, if_match: str | None = None
    ) -> WriteResult | None:
        """REST `delete` (see `prepare_delete`); None when there was nothing to delete."""

        async def prepare() -> Prepared:
            return await self.prepare_delete(resource_type, id, if_match=if_match)

        return (await self._commit(prepare, if_match, f"{resource_type}/{id}")).result

    async def conditional_delete(self, resource_type: str, criteria: str) -> int:
        """REST `conditional-delete`: how many were deleted (0 or 1)."""

        async def prepare() -> Prepared:
            return await self.prepare_conditional_delete(resource_type, criteria)

        async with self.criteria_locks([(resource_type, criteria)]):
            done = await self._commit(prepare, None, resource_type)
        return 0 if done.result is None else 1


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
