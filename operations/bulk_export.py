"""Bulk Data Access 2.0 `$export` (HL7 bulk-data IG 2.0.0, export.md): the kick-off, the
export running in the background, and the purge of expired files.

* kick-off: `GET [base]/$export`, `GET [base]/Patient/$export` or
  `GET [base]/Group/[id]/$export` with `Prefer: respond-async` -> 202 with
  `Content-Location: {origin}/bulk-export/{job}` (parameters: `bulk_export_request`);
* `GET` the status URL -> 202 with `X-Progress` and `Retry-After` while running, 429 when
  polled sooner than that, 200 with the manifest when done, 500 failed or interrupted, 404
  deleted or expired;
* `DELETE` the status URL -> 202; the status and the files answer 404 from then on;
* `GET {status URL}/{file}` -> the ndjson file, `application/fhir+ndjson`.

The status and file endpoints are HTTP routes of their own (`fhir_server.api.bulk_data`), not
FHIR interactions; what they answer is `bulk_export_status.ExportStatus`'s, which
`BulkExports` extends.

The export runs as an asyncio task of the process that accepted it, with the kick-off's
repository (so the caller's policy) and pages that yield to the loop (`bulk_export_run`); its
state is a record every process reads (`bulk_export_jobs`), its files are in
`Settings.export_dir`. Nothing resumes after a restart (kick off a new export): a server
stopping records its running exports as failed (`close`: 500 `exception`), and the export of a
process that died is known by its lapsed lease (500 `incomplete`, within `LEASE_SECONDS`).
Files are kept `export_seconds` after completion (`Expires`), then the purge (`run_purger`)
deletes them.

Rule-derived free Slots (`Slot/$find-slots`, `GET Slot/{rule id}`) are not exported: they are
computed for a window, open-ended and change with every booking. A system export gives the
stored Slots and every resource the free time derives from (Schedules with their availability
extension, PractitionerRoles, HealthcareServices, Locations, Appointments).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

import orjson

from conformance.bulk_data import type_definitions
from fhir_server.config import Settings
from fhir_server.messages import FhirResult, Operation, OperationCall
from fhir_server.model import StoredResource
from fhir_server.repository import Repository
from operations.bulk_export_jobs import Job, owner_of
from operations.bulk_export_request import parse_kick_off
from operations.bulk_export_run import Cancelled, ExportRun
from operations.bulk_export_status import STATUS_PATH, ExportStatus, status_url
from resources.errors import Issue, NotFound, TooManyRequests, operation_outcome
from resources.fhir_dates import now_us

__all__ = ["STATUS_PATH", "STOPPED", "BulkExports", "group_members"]

STOPPED = "The server stopped during the export; kick off a new one"

log = logging.getLogger(__name__)


def group_members(repository: Repository, group: StoredResource) -> tuple[str, ...]:
    """The ids of the Patients a Group lists as active `member.entity`, in order, once each
    (references in any spelling local to this server; other members are left out)."""
    content = orjson.loads(group.content or b"{}")
    ids: list[str] = []
    for member in content.get("member") or ():
        text = (member.get("entity") or {}).get("reference")
        if member.get("inactive") is True or not isinstance(text, str):
            continue
        pair = repository.reference(text).pair
        if pair is not None and pair[0] == "Patient":
            ids.append(pair[1])
    return tuple(dict.fromkeys(ids))


class BulkExports(ExportStatus):
    """The exports of one server process: the `$export` operation and what its status URLs
    answer (see the module docstring).

    Args:
        settings: `export_dir`, `export_seconds`, `export_poll_seconds`,
            `export_max_running`.
    """

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self._runs: dict[str, ExportRun] = {}
        """The exports running in this process, by job id (beside their tasks)."""

    def operation(self) -> Operation:
        """`$export` at system, Patient (type) and Group (instance) level, GET only; each
        level checks the types it exports itself (`requires` is empty)."""
        return Operation(
            name="export",
            handler=self.kick_off,
            system=True,
            type_level=True,
            instance=True,
            resource_types=frozenset({"Patient", "Group"}),
            methods=frozenset({"GET"}),
            requires=(),
            type_definitions=type_definitions(),
        )

    # -- kick-off -------------------------------------------------------------------------

    async def kick_off(self, call: OperationCall) -> FhirResult:
        """Accept an export and start it (export.md "Bulk Data Kick-off Request").

        Returns:
            202 with `Content-Location` (the status URL) and an informational
            OperationOutcome.

        Raises:
            NotFound: (404 `not-supported`) `Patient/[id]/$export` or `Group/$export`.
            Invalid, NotAcceptable, Forbidden: see `bulk_export_request.parse_kick_off`.
            TooManyRequests: (429, `Retry-After`) the caller already runs
                `export_max_running` exports.
        """
        rtype, instance = call.resource_type, call.id is not None
        if (rtype == "Patient" and instance) or (rtype == "Group" and not instance):
            raise NotFound(
                "$export is served at [base]/$export, [base]/Patient/$export and "
                "[base]/Group/[id]/$export",
                code="not-supported",
            )
        request = parse_kick_off(call)
        repository, jobs = call.repository, self._jobs(call.repository)
        owner, now = owner_of(repository.policy), now_us()
        if await jobs.running(owner, now) >= self.max_running:
            raise TooManyRequests(
                f"{self.max_running} exports of this client are still running; wait for one "
                "to finish or delete it",
                headers={"Retry-After": str(self.poll_seconds)},
            )
        members = group_members(repository, call.target) if call.target is not None else ()
        job = Job(uuid.uuid4().hex, owner, request.request, transaction_time=now)
        await jobs.create(job)
        run = ExportRun(repository, job, request, members, jobs, self.files)
        self._runs[job.id] = run
        self._tasks[job.id] = asyncio.create_task(self._run(run), name=f"export {job.id}")
        url = status_url(call.request.base_url, job.id)
        note = f"Export {job.id} accepted; poll {url} for its status"
        body = operation_outcome([Issue("informational", note, "information")])
        return FhirResult(202, body, headers={"Content-Location": url})

    async def _run(self, run: ExportRun) -> None:
        """Run one export to its end; a failure is recorded, never raised."""
        job, jobs = run.job, run.jobs
        try:
            await run.run()
        except Cancelled:
            self.files.remove(job.id)
        except asyncio.CancelledError:  # deleted in this process, or the server stops
            self.files.remove(job.id)
            if not await jobs.cancelled(job.id):
                await self._fail(run, STOPPED)
            raise
        except Exception:
            log.exception("Export %s failed", job.id)
            self.files.remove(job.id)
            await self._fail(run, f"The export failed; quote export {job.id} to the administrator")
        finally:
            self._tasks.pop(job.id, None)
            self._runs.pop(job.id, None)

    async def _fail(self, run: ExportRun, diagnostics: str) -> None:
        run.job.status, run.job.failure, run.job.output = "failed", diagnostics, []
        with contextlib.suppress(Exception):
            await run.jobs.save(run.job)

    # -- housekeeping ---------------------------------------------------------------------

    async def purge(self, repository: Repository) -> int:
        """Delete the folders of jobs that are gone (deleted, expired, interrupted); how
        many. `repository`: a job repository of the server."""
        jobs = self._jobs(repository)

        async def kept(job_id: str) -> bool:
            if job_id in self._tasks:
                return True
            job = await jobs.get(job_id)
            return job is not None and not job.interrupted(now_us())

        return await self.files.purge(kept)

    def purge_interval(self) -> float:
        """Seconds between purges: half the file lifetime, between 1 and 60."""
        return min(60.0, max(1.0, self.keep_seconds / 2))

    async def run_purger(self, repository: Repository) -> None:
        """Purge every `purge_interval` seconds until cancelled (the app's lifespan task); a
        failing round is logged and retried."""
        while True:
            await asyncio.sleep(self.purge_interval())
            try:
                await self.purge(repository)
            except Exception:
                log.exception("The export purge failed; retrying")

    async def close(self) -> None:
        """Stop the exports running in this process (the server stops): each is recorded as
        failed, its status answering 500 (by `_run`, or here for one stopped before it
        started)."""
        tasks, runs = list(self._tasks.values()), list(self._runs.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for run in runs:
            if run.job.status == "in-progress" and not await run.jobs.cancelled(run.job.id):
                self.files.remove(run.job.id)
                await self._fail(run, STOPPED)
        self._tasks.clear()
        self._runs.clear()
