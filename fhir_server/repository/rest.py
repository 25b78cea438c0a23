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
        self,
        prepare: Callable[[], Awaitable[Prepared]],
        what: str,
        *,
        if_match: str | None = None,
        criteria: tuple[str, str] | None = None,
    ) -> WriteResult | None:
        """Prepare and apply, preparing again after a lost version race (unless the client
        named the version with If-Match: then 412), with the conditional `criteria`
        (`(type, criteria)`) locked across processes meanwhile. The write's result (None:
        nothing to delete).

        Raises:
            PreconditionFailed: (412) the If-Match version changed meanwhile.
            Conflict: (409) still racing after `MAX_RETRIES` attempts.
        """
        async with self.criteria_locks([criteria] if criteria else []):
            for _ in range(MAX_RETRIES):
                prepared = await prepare()
                try:
                    await self.apply([prepared])
                except StoreConflict:
                    if if_match is not None:
                        raise PreconditionFailed(
                            f"{what} changed concurrently; version {if_match} is no longer current"
                        ) from None
                    continue
                return prepared.result
        raise Conflict(f"{what} is being changed concurrently; retry")

    async def create(
        self, resource: dict[str, Any], *, if_none_exist: str | None = None
    ) -> WriteResult:
        """REST `create` / `conditional-create` (see `prepare_create`)."""
        rtype = str(resource.get("resourceType"))
        result = await self._commit(
            lambda: self.prepare_create(resource, if_none_exist=if_none_exist),
            rtype,
            criteria=(rtype, if_none_exist) if if_none_exist is not None else None,
        )
        assert result is not None
        return result

    async def update(
        self, resource_type: str, id: str, resource: dict[str, Any], *, if_match: str | None = None
    ) -> WriteResult:
        """REST `update` (see `prepare_update`)."""
        result = await self._commit(
            lambda: self.prepare_update(resource_type, id, resource, if_match=if_match),
            f"{resource_type}/{id}",
            if_match=if_match,
        )
        assert result is not None
        return result

    async def conditional_update(
        self, resource_type: str, criteria: str, resource: dict[str, Any]
    ) -> WriteResult:
        """REST `conditional-update` (see `prepare_conditional_update`)."""
        result = await self._commit(
            lambda: self.prepare_conditional_update(resource_type, criteria, resource),
            resource_type,
            criteria=(resource_type, criteria),
        )
        assert result is not None
        return result

    async def patch(
        self, resource_type: str, id: str, patch: object, *, if_match: str | None = None
    ) -> WriteResult:
        """REST `patch` (see `prepare_patch`)."""
        result = await self._commit(
            lambda: self.prepare_patch(resource_type, id, patch, if_match=if_match),
            f"{resource_type}/{id}",
            if_match=if_match,
        )
        assert result is not None
        return result

    async def delete(
        self, resource_type: str, id: str, *, if_match: str | None = None
    ) -> WriteResult | None:
        """REST `delete` (see `prepare_delete`); None when there was nothing to delete."""
        return await self._commit(
            lambda: self.prepare_delete(resource_type, id, if_match=if_match),
            f"{resource_type}/{id}",
            if_match=if_match,
        )

    async def conditional_delete(self, resource_type: str, criteria: str) -> int:
        """REST `conditional-delete`: how many were deleted (0 or 1)."""
        result = await self._commit(
            lambda: self.prepare_conditional_delete(resource_type, criteria),
            resource_type,
            criteria=(resource_type, criteria),
        )
        return 0 if result is None else 1
