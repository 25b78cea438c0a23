"""Bulk Data export jobs as records in the store, so every server process sees them.

Three record kinds (`RecordStore`, reached through `Repository.records`), keyed by job id:

* `bulk-export`: a `Job`; inserted at kick-off, rewritten by the running job about every
  second and at its end;
* `bulk-export-deleted`: a tombstone written by DELETE on the status URL; the job answers 404
  from then on;
* `bulk-export-poll`: when the job's status was last polled (429 pacing).

A job record expires `export_seconds` after its last write (a running job rewrites it every
second; a finished one keeps its files that long). A running job also holds a lease
(`LEASE_SECONDS`): a job whose lease lapsed was running in a process that ended (a restart, a
crash), and its status answers 500 `incomplete`. The tombstone, not the job record, is what a
cancellation decides on: a running job rewriting its record after a DELETE changes nothing.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, field
from typing import Any, Final, Literal

import orjson

from fhir_server.access import AccessPolicy
from fhir_server.repository import Records
from resources.errors import StoreConflict
from resources.fhir_dates import US, now_us

__all__ = ["JOB", "LEASE_SECONDS", "FileItem", "Job", "JobRecords", "owner_of"]

JOB: Final = "bulk-export"
TOMBSTONE: Final = "bulk-export-deleted"
POLL: Final = "bulk-export-poll"
LEASE_SECONDS: Final = 60
"""How long a running job's last heartbeat vouches for it (s)."""
Status = Literal["in-progress", "complete", "failed"]


def owner_of(policy: AccessPolicy) -> str:
    """Who started an export, as compared on every poll and download: the client, the user
    and the patient in context of the token (`AccessPolicy.credentials`, its scopes and grant
    left out: a new token of the same client or user is the same owner), or the server's own
    name (`anonymous` with authorization off)."""
    credentials = policy.credentials()
    keys = ("system", "client_id", "fhir_user", "patient")
    return orjson.dumps({k: credentials[k] for k in keys if credentials.get(k)}).decode()


@dataclass(slots=True)
class FileItem:
    """One file of the manifest: its resource type, its file name in the job's folder and how
    many resources (lines) it holds."""

    type: str
    name: str
    count: int


@dataclass(slots=True)
class Job:
    """One export (times in µs UTC).

    Attributes:
        id: the job id (a uuid4 hex; the status URL's last segment).
        owner: `owner_of` the kick-off's policy.
        request: the kick-off URL. transaction_time: when the export's snapshot was taken.
        status: `in-progress`, `complete` or `failed`.
        progress: a short text for `X-Progress` (under 100 characters).
        lease: until when the running job vouches for itself.
        output / error / deleted: the manifest's file items.
        failure: why a failed job failed (diagnostics, no internal text).
        expires: until when the files stay (a finished job).
    """

    id: str
    owner: str
    request: str
    transaction_time: int
    status: Status = "in-progress"
    progress: str = "queued"
    lease: int = 0
    output: list[FileItem] = field(default_factory=list)
    error: list[FileItem] = field(default_factory=list)
    deleted: list[FileItem] = field(default_factory=list)
    failure: str = ""
    expires: int = 0

    def to_doc(self) -> dict[str, Any]:
        """The record document (plain JSON)."""
        return asdict(self)

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Job:
        """The job of a record document."""
        files = {k: [FileItem(**i) for i in doc.get(k, ())] for k in ("output", "error", "deleted")}
        return cls(**{**doc, **files})

    def interrupted(self, now: int) -> bool:
        """Whether it was running in a process that ended (its lease lapsed)."""
        return self.status == "in-progress" and self.lease < now

    def file(self, name: str) -> FileItem | None:
        """The file item called `name`, if the finished job has one."""
        items = [*self.output, *self.error, *self.deleted]
        return next((i for i in items if i.name == name), None)


class JobRecords:
    """The export records of one server (see the module docstring).

    Args:
        records: the repository's records.
        keep_seconds: how long finished files stay (`Settings.export_seconds`).
    """

    def __init__(self, records: Records, keep_seconds: int) -> None:
        self.records = records
        self.keep_us = keep_seconds * US

    async def create(self, job: Job) -> None:
        """Store a new job (its lease starts now)."""
        job.lease = now_us() + LEASE_SECONDS * US
        await self.records.insert_record(JOB, job.id, job.to_doc(), job.lease + self.keep_us)

    async def save(self, job: Job) -> None:
        """Rewrite the job: a heartbeat of a running one (lease renewed), or its end (kept
        `keep_seconds` from now)."""
        now = now_us()
        if job.status == "in-progress":
            job.lease = now + LEASE_SECONDS * US
            expires = job.lease + self.keep_us
        else:
            job.expires = expires = now + self.keep_us
        await self.records.put_record(JOB, job.id, job.to_doc(), expires)

    async def get(self, job_id: str) -> Job | None:
        """The live job, or None (never existed, expired, or deleted by its client)."""
        if await self.records.get_record(TOMBSTONE, job_id) is not None:
            return None
        doc = await self.records.get_record(JOB, job_id)
        return None if doc is None else Job.from_doc(doc)

    async def cancelled(self, job_id: str) -> bool:
        """Whether the client deleted the job (a running job stops when it sees this)."""
        return await self.records.get_record(TOMBSTONE, job_id) is not None

    async def delete(self, job_id: str) -> None:
        """Mark the job deleted (tombstone, kept as long as its files could be), then drop it."""
        expires = now_us() + self.keep_us + LEASE_SECONDS * US
        with contextlib.suppress(StoreConflict):  # deleted twice at once: the first holds
            await self.records.insert_record(TOMBSTONE, job_id, {}, expires)
        await self.records.delete_record(JOB, job_id)
        await self.records.delete_record(POLL, job_id)

    async def polled(self, job_id: str, now: int, pace_us: int) -> int:
        """Account one status poll at `now`: 0 when it comes at least `pace_us` after the
        last accepted one (and it is recorded), else the µs the client should still wait."""
        last = await self.records.get_record(POLL, job_id)
        if last is not None:
            wait = int(last["at"]) + pace_us - now
            if wait > 0:
                return wait
        await self.records.put_record(POLL, job_id, {"at": now}, now + pace_us)
        return 0

    async def running(self, owner: str, now: int) -> int:
        """How many jobs `owner` has running (lease live) now."""
        jobs = [Job.from_doc(doc) for _, doc in await self.records.list_records(JOB)]
        return sum(
            1 for j in jobs if j.owner == owner and j.status == "in-progress" and j.lease >= now
        )

    async def exists(self, job_id: str) -> bool:
        """Whether a folder named `job_id` still belongs to a live, undeleted job."""
        return await self.get(job_id) is not None
