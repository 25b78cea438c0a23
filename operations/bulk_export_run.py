"""A running Bulk Data export: each type read in keyset pages through the caller's repository
and written line by line to its ndjson file (Bulk Data Access 2.0 export.md "Response -
Complete Status").

What each level exports (the R4 Patient CompartmentDefinition; `bulk_export_scope`):

* system: every resource of each type;
* Patient: every Patient, and each resource of the compartment types that is in some
  patient's compartment (a token confined to one patient: that patient's compartment);
* Group: for each active `member.entity` Patient in turn, its compartment; a resource in the
  compartments of several members is written once.

Only what the caller's policy lets it search is read (`Repository.search` narrows every page
to the token's compartment and granular scopes). Resources changed after the transaction time
are left to the next `_since` export. `_typeFilter` queries of one type are ORed: each runs in
turn and leaves out what an earlier one matched. With `_since`, deletions go to the `deleted`
file (`bulk_export_deleted`). A type whose reading fails with a FhirError is reported in the
`error` file and the export goes on.

The run yields to the event loop after every page (`PAGE_SIZE` resources), pausing as long as
the page took (`SHARE`), renews its lease and stops when its client deleted it
(`JobRecords`), about once a second.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Final

from fhir_server.model import StoredResource
from fhir_server.repository import Repository
from fhir_server.search.query import (
    CompartmentCondition,
    Condition,
    DateCondition,
    RangeValue,
    SearchRequest,
    StoreQuery,
    TokenCondition,
    TokenValue,
)
from operations.bulk_export_deleted import Deletions
from operations.bulk_export_files import DELETED_FILE, ERROR_FILE, ExportFiles, NdjsonWriter
from operations.bulk_export_jobs import FileItem, Job, JobRecords
from operations.bulk_export_request import ExportRequest, TypeFilter
from operations.bulk_export_scope import Scope
from resources.errors import FhirError
from resources.fhir_dates import now_us

__all__ = ["PAGE_SIZE", "Cancelled", "ExportRun"]

PAGE_SIZE: Final = 250
"""Resources read per store page: one page holds the event loop for about 3 ms."""
SHARE: Final = 0.5
"""The share of the event loop an export takes: after each page it pauses as long as the page
took, so requests arriving meanwhile wait one page at most (bench/export.py)."""
HEARTBEAT_US: Final = 1_000_000


class Cancelled(Exception):
    """The client deleted the export while it ran."""


class ExportRun:
    """One export, run once (`run`).

    Args:
        repository: the kick-off request's repository (the caller's policy).
        job: the job, as created; updated in place and saved as it runs.
        request: the checked kick-off.
        members: the Group's Patient ids, in order (Group level only).
        jobs, files: the job records and the export folder.
    """

    def __init__(
        self,
        repository: Repository,
        job: Job,
        request: ExportRequest,
        members: tuple[str, ...],
        jobs: JobRecords,
        files: ExportFiles,
    ) -> None:
        self.repository = repository
        self.job = job
        self.request = request
        self.scope = Scope(repository, request.level, members)
        self.jobs = jobs
        self.files = files
        self.written = 0
        self._doing = "starting"
        self._beat = now_us()
        self._resumed = time.perf_counter()

    async def run(self) -> None:
        """Write every file, then save the finished job.

        Raises:
            Cancelled: the client deleted the job (its files are the caller's to remove).
        """
        job, request = self.job, self.request
        self.files.create(job.id)
        errors = self.files.writer(job.id, ERROR_FILE)
        try:
            for rtype in request.refused:
                note = f"{rtype} is not exported: the access token does not allow searching it"
                errors.write_issue("forbidden", note)
            for number, rtype in enumerate(request.types, start=1):
                self._doing = f"{rtype} ({number} of {len(request.types)} types)"
                await self._write_type(rtype, errors)
            if request.since is not None:
                self._doing = "deletions"
                await self._write_deleted(errors)
        finally:
            errors.close()
        if errors.count:
            job.error.append(FileItem("OperationOutcome", ERROR_FILE, errors.count))
        if await self.jobs.cancelled(job.id):
            raise Cancelled(job.id)
        job.status, job.progress = "complete", f"complete, {self.written} resources"
        await self.jobs.save(job)

    async def _write_type(self, rtype: str, errors: NdjsonWriter) -> None:
        """Write the file of one type; a type that fails is reported in `errors` instead."""
        writer = self.files.writer(self.job.id, f"{rtype}.ndjson")
        try:
            async for stored in self._select(rtype):
                writer.write(stored.content or b"{}")
                self.written += 1
        except FhirError as exc:
            writer.discard()
            errors.write_json(exc.outcome())
        finally:
            writer.close()
        if writer.count:
            self.job.output.append(FileItem(rtype, writer.path.name, writer.count))

    async def _write_deleted(self, errors: NdjsonWriter) -> None:
        writer = self.files.writer(self.job.id, DELETED_FILE)
        horizon = self.job.transaction_time
        deletions = Deletions(self.repository, self.request, self.scope, horizon, self._heartbeat)
        try:
            await deletions.write(writer, errors)
        finally:
            writer.close()
        if writer.count:
            self.job.deleted.append(FileItem("Bundle", DELETED_FILE, writer.count))

    async def _select(self, rtype: str) -> AsyncIterator[StoredResource]:
        """The resources of `rtype` to export, each once (see the module docstring)."""
        since = self.request.since
        base: tuple[Condition, ...] = ()
        if since is not None:  # changed after _since (R4 search: `gt` on an instant)
            base = (DateCondition("_lastUpdated", (RangeValue("gt", since, since + 1),)),)
        filters: tuple[TypeFilter | None, ...] = self.request.filters_of(rtype) or (None,)
        group = self.request.level == "group"
        members: tuple[str | None, ...] = self.scope.members if group else (None,)
        keep = self.scope.keep(rtype)
        horizon = self.job.transaction_time
        for index, member in enumerate(members):
            own = (CompartmentCondition(f"Patient/{member}"),) if member is not None else ()
            for number, flt in enumerate(filters):
                conditions = base + own + (flt.conditions if flt else ())
                async for page in self._pages(rtype, conditions):
                    found = [r for r in page if r.content and r.last_updated <= horizon]
                    if keep is not None:
                        found = [r for r in found if keep(r, index)]
                    if number:
                        found = await self._unmatched(rtype, found, filters[:number])
                    for stored in found:
                        yield stored

    async def _pages(
        self, rtype: str, conditions: tuple[Condition, ...]
    ) -> AsyncIterator[list[StoredResource]]:
        """Every match in keyset pages, checked by the caller's policy."""
        query = StoreQuery(rtype, conditions, count=PAGE_SIZE)
        while True:
            result = await self.repository.search(SearchRequest(query))
            yield result.page.resources
            await self._heartbeat()
            cursor = result.page.next_cursor
            if cursor is None:
                return
            query = replace(query, cursor=cursor)

    async def _unmatched(
        self, rtype: str, found: list[StoredResource], earlier: tuple[TypeFilter | None, ...]
    ) -> list[StoredResource]:
        """`found` without what an earlier `_typeFilter` query of the type matched."""
        if not found:
            return found
        ids = TokenCondition("_id", tuple(TokenValue("*", r.id) for r in found))
        seen: set[str] = set()
        for flt in earlier:
            assert flt is not None
            query = StoreQuery(rtype, (ids, *flt.conditions), count=len(found))
            result = await self.repository.search(SearchRequest(query))
            seen.update(r.id for r in result.page.resources)
        return [r for r in found if r.id not in seen]

    async def _heartbeat(self) -> None:
        """Yield to the loop for as long as the work since the last yield took (`SHARE`);
        about once a second renew the lease, or stop if cancelled."""
        spent = time.perf_counter() - self._resumed
        await asyncio.sleep(spent * (1 - SHARE) / SHARE)
        self._resumed = time.perf_counter()
        now = now_us()
        if now - self._beat < HEARTBEAT_US:
            return
        self._beat = now
        if await self.jobs.cancelled(self.job.id):
            raise Cancelled(self.job.id)
        self.job.progress = f"{self._doing}, {self.written} resources written"
        await self.jobs.save(self.job)
