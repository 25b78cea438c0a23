"""What the status URLs of Bulk Data exports answer: status, manifest, cancellation, files
(Bulk Data Access 2.0 export.md "Bulk Data Status Request", "Bulk Data Delete Request",
"Bulk Data Output File Request").

Only the client (and user, and patient in context) that kicked an export off may poll, cancel
or download it (`bulk_export_jobs.owner_of`: 403 otherwise), and a download needs the token to
still allow searching the file's type. A poll sooner than `PACE` of `Retry-After` after the
previous one, running or done, is 429. `BulkExports` (`bulk_export`) adds the kick-off and the
running of exports to this.
"""

from __future__ import annotations

import asyncio
import math
from email.utils import formatdate
from pathlib import Path
from typing import Any, Final

from conformance.smart_configuration import origin_of
from fhir_server.access import denied
from fhir_server.config import Settings
from fhir_server.messages import FhirResult
from fhir_server.repository import Repository
from operations.bulk_export_files import ExportFiles
from operations.bulk_export_jobs import Job, JobRecords, owner_of
from resources.errors import Issue, NotFound, ServerError, TooManyRequests, operation_outcome
from resources.fhir_dates import US, format_instant, now_us

__all__ = ["PACE", "STATUS_PATH", "ExportStatus", "status_url"]

STATUS_PATH: Final = "/bulk-export"
"""Where status URLs live on the server's origin: `{origin}/bulk-export/{job}`."""
PACE: Final = 0.75
"""A poll counts as too soon when it comes before this share of `Retry-After` has passed."""


def status_url(base_url: str, job_id: str) -> str:
    """The status URL of a job for the FHIR base `base_url`."""
    return f"{origin_of(base_url)}{STATUS_PATH}/{job_id}"


class ExportStatus:
    """The exports of one server process as their status URLs show them.

    Args:
        settings: `export_dir`, `export_seconds`, `export_poll_seconds`,
            `export_max_running`.
    """

    def __init__(self, settings: Settings) -> None:
        self.files = ExportFiles(settings.export_dir)
        self.keep_seconds = settings.export_seconds
        self.poll_seconds = settings.export_poll_seconds
        self.max_running = settings.export_max_running
        self._tasks: dict[str, asyncio.Task[None]] = {}
        """The exports running in this process, by job id."""

    def _jobs(self, repository: Repository) -> JobRecords:
        return JobRecords(repository.records, self.keep_seconds)

    async def _owned(self, repository: Repository, job_id: str) -> Job:
        """The caller's live job.

        Raises:
            NotFound: (404) no such job: deleted, expired or never made.
            Forbidden: (403) another client's (or user's, or patient's) job.
        """
        job = await self._jobs(repository).get(job_id)
        if job is None:
            raise NotFound(
                f"No export {job_id}: it was deleted, its files expired, or it never existed"
            )
        if owner_of(repository.policy) != job.owner:
            raise denied("This export was started by another client; only it may see it")
        return job

    async def status(self, repository: Repository, base_url: str, job_id: str) -> FhirResult:
        """Answer a poll of the status URL (export.md "Bulk Data Status Request").

        Returns:
            202 (`X-Progress`, `Retry-After`) while running, 200 with the manifest (JSON,
            `Expires`) when complete.

        Raises:
            NotFound, Forbidden: see `_owned`. ServerError: (500) the export failed, or
            (`incomplete`) the process running it ended. TooManyRequests: (429,
            `Retry-After`) polled (running or done) sooner than `PACE` of `Retry-After`
            after the previous poll.
        """
        job = await self._owned(repository, job_id)
        now = now_us()
        if job.status == "failed":
            raise ServerError(job.failure)
        if job.interrupted(now) and job.id not in self._tasks:
            raise ServerError(
                "The export stopped before it finished: the server process running it ended. "
                "Kick off a new export.",
                code="incomplete",
            )
        wait = await self._jobs(repository).polled(job.id, now, int(self.poll_seconds * US * PACE))
        if wait:
            raise TooManyRequests(
                f"Polled too soon: wait Retry-After ({self.poll_seconds} s) between polls",
                headers={"Retry-After": str(math.ceil(wait / US))},
            )
        if job.status == "complete":
            expires = formatdate(job.expires / US, usegmt=True)
            manifest = self._manifest(repository, base_url, job)
            return FhirResult(200, manifest, headers={"Expires": expires})
        retry = {"Retry-After": str(self.poll_seconds)}
        return FhirResult(202, None, headers={"X-Progress": job.progress[:99], **retry})

    def _manifest(self, repository: Repository, base_url: str, job: Job) -> dict[str, Any]:
        """The Complete Status body (export.md "Response - Complete Status")."""
        url = status_url(base_url, job.id)

        def items(kind: str) -> list[dict[str, Any]]:
            found = getattr(job, kind)
            return [{"type": i.type, "url": f"{url}/{i.name}", "count": i.count} for i in found]

        manifest: dict[str, Any] = {
            "transactionTime": format_instant(job.transaction_time),
            "request": job.request,
            "requiresAccessToken": repository.settings.auth,
            "output": items("output"),
            "error": items("error"),
        }
        if job.deleted:
            manifest["deleted"] = items("deleted")
        return manifest

    async def cancel(self, repository: Repository, job_id: str) -> FhirResult:
        """Delete a job, running or done (export.md "Bulk Data Delete Request"): 202; its
        status and files answer 404 from then on, its files are removed.

        Raises:
            NotFound, Forbidden: see `_owned`.
        """
        await self._owned(repository, job_id)
        await self._jobs(repository).delete(job_id)
        task = self._tasks.get(job_id)
        if task is not None:
            task.cancel()
        self.files.remove(job_id)
        note = f"Export {job_id} deleted"
        return FhirResult(202, operation_outcome([Issue("informational", note, "information")]))

    async def file(self, repository: Repository, job_id: str, name: str) -> Path:
        """The path of a finished job's file (export.md "Bulk Data Output File Request").

        Raises:
            NotFound: (404) no such job (see `_owned`), not finished, or no such file.
            Forbidden: (403) another client's job, or the token no longer allows searching
                the file's resource type.
        """
        job = await self._owned(repository, job_id)
        item = job.file(name) if job.status == "complete" else None
        path = self.files.path(job_id, name) if item is not None else None
        if item is None or path is None:
            raise NotFound(f"Export {job_id} has no file {name!r}")
        if item.type not in ("OperationOutcome", "Bundle"):
            repository.require(item.type, "s", "bulk data download")
        return path
