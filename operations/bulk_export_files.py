"""The files of Bulk Data exports on disk: one folder per job under `Settings.export_dir`, one
ndjson file per resource type (Bulk Data Access 2.0 export.md "Bulk Data Output File Request";
ndjson.org).

Names: `{Type}.ndjson` for the resources of a type, `error.ndjson` (OperationOutcomes) and
`deleted.ndjson` (transaction Bundles of DELETE entries). Lines are written as they come
(a small buffer), never collected: memory stays flat whatever the size of the export. The
folders of jobs that no longer exist (expired, deleted, interrupted long ago) are removed by
`ExportFiles.purge`.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO, Any, Final

import orjson

from resources.errors import Issue, IssueSeverity, IssueType, operation_outcome

__all__ = ["DELETED_FILE", "ERROR_FILE", "ExportFiles", "NdjsonWriter"]

ERROR_FILE: Final = "error.ndjson"
DELETED_FILE: Final = "deleted.ndjson"
BUFFER_BYTES: Final = 1 << 20
_JOB_ID = re.compile(r"[0-9a-f]{32}")
_FILE_NAME = re.compile(r"[A-Za-z]+\.ndjson")


class NdjsonWriter:
    """Appends FHIR JSON lines to one file, opened on the first line (a type without
    resources leaves no file).

    Args:
        path: the file to write.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.count = 0
        self._file: IO[bytes] | None = None

    def write(self, content: bytes) -> None:
        """Append one resource given as its stored JSON bytes (one line)."""
        if self._file is None:
            self._file = self.path.open("wb", buffering=BUFFER_BYTES)
        if b"\n" in content:  # stored JSON is compact; re-serialise anything else
            content = orjson.dumps(orjson.loads(content))
        self._file.write(content)
        self._file.write(b"\n")
        self.count += 1

    def write_json(self, resource: dict[str, Any]) -> None:
        """Append one resource given as FHIR JSON."""
        self.write(orjson.dumps(resource))

    def write_issue(
        self, code: IssueType, diagnostics: str, severity: IssueSeverity = "error"
    ) -> None:
        """Append an OperationOutcome of one issue (the `error` file)."""
        self.write_json(operation_outcome([Issue(code, diagnostics, severity)]))

    def close(self) -> None:
        """Flush and close the file (if any line was written)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def discard(self) -> None:
        """Close and remove what was written."""
        self.close()
        self.path.unlink(missing_ok=True)
        self.count = 0


class ExportFiles:
    """The export folder of one server.

    Args:
        root: `Settings.export_dir` (created when first needed).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def folder(self, job_id: str) -> Path:
        """The job's folder (not created)."""
        return self.root / job_id

    def create(self, job_id: str) -> Path:
        """Create the job's folder (private to the server's user) and return it."""
        folder = self.folder(job_id)
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        return folder

    def writer(self, job_id: str, name: str) -> NdjsonWriter:
        """A writer of the file `name` in the job's folder."""
        return NdjsonWriter(self.folder(job_id) / name)

    def path(self, job_id: str, name: str) -> Path | None:
        """The file `name` of the job, or None when either name is malformed (nothing outside
        the job's folder can be named) or the file is missing."""
        if not _JOB_ID.fullmatch(job_id) or not _FILE_NAME.fullmatch(name):
            return None
        path = self.folder(job_id) / name
        return path if path.is_file() else None

    def remove(self, job_id: str) -> None:
        """Delete the job's folder and its files (nothing if absent)."""
        if _JOB_ID.fullmatch(job_id):
            shutil.rmtree(self.folder(job_id), ignore_errors=True)

    async def purge(self, live: Callable[[str], Awaitable[bool]]) -> int:
        """Delete the folders of jobs for which `live(job_id)` is false; how many.

        A folder is created only after its job's record, so a starting job is never taken
        for a dead one. Other entries of the folder are left alone.
        """
        if not self.root.is_dir():
            return 0
        removed = 0
        for entry in sorted(self.root.iterdir()):
            if entry.is_dir() and _JOB_ID.fullmatch(entry.name) and not await live(entry.name):
                self.remove(entry.name)
                removed += 1
        return removed
