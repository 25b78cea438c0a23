"""The repository's read interactions: read, vread, history, search and conditional matching
(R4 http.html#read, #vread, #history, #search), each checked against the caller's policy."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qsl

import orjson

from fhir_server.model import HistoryScope, StoredResource
from fhir_server.repository.base import RepositoryBase
from fhir_server.repository.includes import SearchResult, run_search
from fhir_server.search.parse import parse_search
from fhir_server.search.query import (
    ChainCondition,
    Condition,
    HasCondition,
    SearchRequest,
    StoreQuery,
)
from resources.errors import Gone, Invalid, NotFound, PreconditionFailed
from resources.fhir_dates import now_us
from resources.types import is_resource_type

__all__ = ["ReadInteractions", "check_type", "criteria_key", "load_json"]


def load_json(content: bytes | None) -> dict[str, Any]:
    """Parse stored FHIR JSON bytes into a dict (`{}` for None)."""
    if content is None:
        return {}
    data = orjson.loads(content)
    assert isinstance(data, dict)
    return data


def check_type(resource_type: str) -> None:
    """Raise NotFound (404 `not-supported`) if this server does not serve `resource_type`."""
    if not is_resource_type(resource_type):
        raise NotFound(f"Unknown resource type {resource_type!r}", code="not-supported")


def parse_criteria(criteria: str) -> list[tuple[str, str]]:
    """The parameters of conditional criteria (`identifier=x|1&active=true`), in order."""
    return parse_qsl(criteria.lstrip("?"), keep_blank_values=True)


def criteria_key(resource_type: str, criteria: str) -> str:
    """The lock key of conditional criteria: type plus the sorted parameters, hashed."""
    params = sorted(parse_criteria(criteria))
    digest = hashlib.sha256(orjson.dumps([resource_type, params])).hexdigest()
    return f"criteria:{resource_type}:{digest}"


def chained_types(conditions: tuple[Condition, ...]) -> list[str]:
    """The types a search reaches into through chaining and `_has` (each needs `s`)."""
    out: list[str] = []
    for cond in conditions:
        if isinstance(cond, ChainCondition):
            out.append(cond.target_type)
            out.extend(chained_types((cond.inner,)))
        elif isinstance(cond, HasCondition):
            out.append(cond.source_type)
            out.extend(chained_types((cond.inner,)))
    return out


class ReadInteractions(RepositoryBase):
    """Reads, checked (see the module docstring)."""

    async def read(self, resource_type: str, id: str) -> StoredResource:
        """`read`: the current version, or a computed one (rule-derived Slots, `$find`
        proposals) when none is stored.

        Raises:
            NotFound: (404) no such resource. Gone: (410) deleted.
            Forbidden: (403) the caller may not read it.
        """
        check_type(resource_type)
        self.require(resource_type, "r", "read")
        stored = await self._store.read(resource_type, id)
        if stored is None:
            stored = await self._computed(resource_type, id)
        if stored.deleted:
            await self.check_read(stored)
            raise Gone(
                f"{resource_type}/{id} was deleted (version {stored.version_id})",
                headers={"ETag": f'W/"{stored.version_id}"'},
            )
        await self.check_read(stored)
        return stored

    async def _computed(self, resource_type: str, id: str) -> StoredResource:
        reader = self._services.virtual.get(resource_type)
        computed = await reader(self, id) if reader is not None else None  # type: ignore[arg-type]
        if computed is None:
            raise NotFound(f"{resource_type}/{id} is not known")
        meta = computed.get("meta") or {}
        return StoredResource(
            resource_type=resource_type,
            id=id,
            version_id=int(meta.get("versionId", "1")),
            last_updated=now_us(),
            deleted=False,
            content=orjson.dumps(computed),
        )

    async def vread(self, resource_type: str, id: str, version: str) -> StoredResource:
        """`vread`: one version.

        Raises:
            NotFound: (404) no such version. Gone: (410) the version is a deletion.
            Forbidden: (403) the caller may not read it.
        """
        check_type(resource_type)
        self.require(resource_type, "r", "vread")
        if not version.isdigit():
            raise NotFound(f"{resource_type}/{id} has no version {version!r}")
        stored = await self._store.vread(resource_type, id, int(version))
        if stored is None:
            raise NotFound(f"{resource_type}/{id} has no version {version}")
        await self.check_read(stored)
        if stored.deleted:
            raise Gone(f"Version {version} of {resource_type}/{id} is a deletion")
        return stored

    async def history(
        self,
        scope: HistoryScope,
        resource_type: str | None = None,
        id: str | None = None,
        *,
        since: int | None = None,
        before: int | None = None,
        count: int = 20,
        offset: int = 0,
    ) -> tuple[list[StoredResource], int]:
        """`history-instance`, `history-type`, `history-system`: versions newest first and
        the total. Across resources the caller must reach the whole type (or every type).

        Raises:
            NotFound: (404) an instance never stored. Forbidden: (403) not allowed.
        """
        if scope == "instance":
            assert resource_type is not None
            assert id is not None
            check_type(resource_type)
            self.require(resource_type, "s", "history-instance")
            current = await self._store.read(resource_type, id)
            if current is None:
                raise NotFound(f"{resource_type}/{id} is not known")
            await self.check_read(current)
        elif scope == "type":
            assert resource_type is not None
            check_type(resource_type)
            self.require_unconfined(resource_type, "history-type")
        else:
            self.require_unconfined("*", "history-system")
        return await self._store.history(
            scope, resource_type, id, since=since, before=before, count=count, offset=offset
        )

    async def search(
        self, request: SearchRequest, extra: tuple[Condition, ...] = ()
    ) -> SearchResult:
        """`search-type` (and compartment search with `extra`): the page, total and includes,
        narrowed to what the caller may see; included resources it may not see are left out.

        Raises:
            Forbidden: (403) no search permission on the type or a type chained into.
        """
        rtype = request.query.resource_type
        for chained in chained_types(request.query.conditions):
            self.require(chained, "s", "chained search")
        extra = extra + self.search_conditions(rtype)
        result = await run_search(
            self._store, request, extra, self.context.default_tz, self.bases, self.admit
        )
        reach = self._sight(rtype)
        if reach is None or reach.owner is None or self.is_system:
            return result
        # an owned type (access.OWNED_TYPES): the store cannot tell owners apart, so the
        # page keeps the caller's own (a page may come out shorter than _count)
        kept = await self.admit(result.page.resources)
        page = replace(result.page, resources=kept, total=None)
        total = len(kept) if page.next_cursor is None and page.previous_cursor is None else None
        return replace(result, page=page, total=total)

    async def find(self, resource_type: str, criteria: str, limit: int = 2) -> list[StoredResource]:
        """Current resources matching conditional `criteria` (a query string such as
        `identifier=http://x|1`), unfiltered: callers check what they show (`check_read`).

        Raises:
            Invalid: (400) empty or unparseable criteria.
        """
        params = parse_criteria(criteria)
        if not params:
            raise Invalid("Conditional criteria must not be empty", code="invalid")
        request = parse_search(resource_type, params, self.context, strict=True)
        query = StoreQuery(resource_type, request.query.conditions, count=limit)
        return (await self._store.search(query)).resources

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
