"""The repository's write interactions, prepared: one implementation for every path (R4
http.html#create, #ccreate, #update, #cond-update, #patch, #delete, #cdelete;
bundle.html#transaction).

Each interaction is `prepare_*` (permission, validation, conditional match, optimistic version,
`meta`, index, the type's write rules) then `apply` (`commit.CommitWrites`: the caller's
compartment, one atomic store write). REST calls them back to back (`rest.RestWrites`); a
transaction Bundle prepares every entry and applies them all at once; operations prepare what
they write. So a rule — a permission, a booking rule, a conditional match's read check — holds
on every path at once.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson

from fhir_server.model import StoredResource, WriteOp
from fhir_server.repository.prepared import (
    Prepared,
    WriteResult,
    check_if_match,
    patched,
    unchanged,
)
from fhir_server.repository.reads import ReadInteractions, check_type
from fhir_server.repository.services import PlannedWrite
from resources.errors import Invalid
from resources.fhir_dates import format_instant, now_us
from resources.indexing import extract_index
from resources.validation import validate_resource

__all__ = ["PrepareWrites"]


class PrepareWrites(ReadInteractions):
    """Writes prepared (see the module docstring)."""

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
        prepared.records = plan.records
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
        expected = check_if_match(current, if_match, resource_type, id)
        return await self._prepare_replace(resource, current, expected, method)

    async def _prepare_replace(
        self,
        resource: dict[str, Any],
        current: StoredResource | None,
        expected: int | None,
        method: str,
    ) -> Prepared:
        """The next version of `resource` over `current` (the version it was based on)."""
        same = unchanged(current, resource)
        if same is not None:
            await self.check_read(same)
            return Prepared(WriteResult(same, "unchanged"), current=same)
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
        check_if_match(current, if_match, resource_type, id)
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
        expected = check_if_match(current, if_match, resource_type, id)
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
