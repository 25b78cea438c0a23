"""The REST write interactions: prepare and apply back to back, prepared again after a lost
version race unless the client named the version (`If-Match`: then 412), conditional criteria
locked across processes (R4 http.html#create, #update, #patch, #delete, #cond-update,
#cdelete)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fhir_server.repository.commit import MAX_RETRIES, CommitWrites
from fhir_server.repository.prepared import Prepared, WriteResult
from resources.errors import Conflict, PreconditionFailed, StoreConflict

__all__ = ["RestWrites"]


class RestWrites(CommitWrites):
    """REST writes (see the module docstring)."""

    async def _commit(
        self, prepare: Callable[[], Awaitable[Prepared]], if_match: str | None, what: str
    ) -> Prepared:
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
