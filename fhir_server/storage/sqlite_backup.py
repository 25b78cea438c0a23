"""Backup, restore and the integrity check of a SQLite store file (`fhir-server backup`,
`fhir-server restore`).

- `backup(database, target)`: a consistent copy taken while the server runs, with SQLite's
  online backup API in one step: the copy is one read transaction, a snapshot of the file as
  of its start, and in WAL mode the server's writers go on meanwhile (a stepwise copy would
  restart at every write and never finish under load). It is written aside, checked, then
  renamed into place, so `target` is either a whole checked copy or absent.
- `check(path)`: SQLite's own `PRAGMA integrity_check` and the store's invariants: every
  current version has its history row, every history row its resource, every index row its
  resource, and every time claim an owner that exists and is not deleted (SCHEDULING.md
  "Never double-book": a claim without its Appointment would block time forever).
- `restore(backup, database)`: checks the backup, refuses while a server holds a live lease
  on the target (it would keep serving from its caches), then copies the backup over the
  target through the backup API (one write transaction: other connections see the old file
  or the new one, never a mix) and checks the result.

Instants are µs since the epoch, UTC.
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

from fhir_server.storage.sqlite_schema import INDEX_TABLES
from resources.fhir_dates import now_us

__all__ = ["BackupError", "Integrity", "backup", "check", "live_leases", "restore"]


class BackupError(Exception):
    """A backup or restore refused or failed; the message says why (nothing was replaced)."""


@dataclass(slots=True)
class Integrity:
    """What `check` found: counts, and problems (empty: the file is sound)."""

    resources: int = 0
    versions: int = 0
    claims: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        """One line: `N resources, M versions, K claims` and the verdict."""
        verdict = "integrity ok" if self.ok else f"{len(self.problems)} problem(s)"
        counts = f"{self.resources} resources, {self.versions} versions, {self.claims} claims"
        return f"{counts}: {verdict}"


def _connect(path: str | Path, *, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30.0)
    return sqlite3.connect(path, timeout=30.0)


_INVARIANTS = (
    (
        "current versions without their history row",
        "SELECT count(*) FROM resources r WHERE NOT EXISTS (SELECT 1 FROM history h WHERE "
        "h.res_type = r.res_type AND h.res_id = r.res_id AND h.version_id = r.version_id)",
    ),
    (
        "history rows of resources that do not exist",
        "SELECT count(*) FROM history h WHERE NOT EXISTS (SELECT 1 FROM resources r WHERE "
        "r.res_type = h.res_type AND r.res_id = h.res_id)",
    ),
    (
        "history rows newer than their resource's current version",
        "SELECT count(*) FROM history h JOIN resources r ON r.res_type = h.res_type AND "
        "r.res_id = h.res_id WHERE h.version_id > r.version_id",
    ),
    (
        "time claims whose owner does not exist or is deleted",
        "SELECT count(*) FROM claims c WHERE NOT EXISTS (SELECT 1 FROM resources r WHERE "
        "r.res_type || '/' || r.res_id = c.owner AND r.deleted = 0)",
    ),
    *(
        (
            f"{table} rows of resources that do not exist",
            f"SELECT count(*) FROM {table} i WHERE NOT EXISTS "
            "(SELECT 1 FROM resources r WHERE r.seq = i.seq)",
        )
        for table in INDEX_TABLES
    ),
)


def check(path: str | Path) -> Integrity:
    """Check the store file at `path` (read-only; module docstring).

    Raises:
        BackupError: `path` is not a SQLite store file.
    """
    if not Path(path).is_file():
        raise BackupError(f"{path} does not exist")
    try:
        conn = _connect(path, readonly=True)
        try:
            found = Integrity()
            verdict = [row[0] for row in conn.execute("PRAGMA integrity_check")]
            if verdict != ["ok"]:
                found.problems += [f"sqlite: {line}" for line in verdict]
            (found.resources,) = conn.execute("SELECT count(*) FROM resources").fetchone()
            (found.versions,) = conn.execute("SELECT count(*) FROM history").fetchone()
            (found.claims,) = conn.execute("SELECT count(*) FROM claims").fetchone()
            for what, sql in _INVARIANTS:
                (n,) = conn.execute(sql).fetchone()
                if n:
                    found.problems.append(f"{n} {what}")
            return found
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{path} is not a readable store file: {exc}") from exc


def backup(database: str | Path, target: str | Path) -> tuple[Integrity, float]:
    """Copy the live store file `database` to `target` (module docstring); returns the
    copy's `check` and the seconds the copy took.

    Raises:
        BackupError: `target` exists, `database` is missing, or the copy fails its check
            (the partial copy is removed).
    """
    target = Path(target)
    if target.exists():
        raise BackupError(f"{target} exists already; choose a new file")
    if not Path(database).is_file():
        raise BackupError(f"{database} does not exist")
    target.parent.mkdir(parents=True, exist_ok=True)
    aside = target.with_name(f".{target.name}.partial")
    aside.unlink(missing_ok=True)
    started = time.perf_counter()
    source, copy = _connect(database, readonly=True), _connect(aside)
    try:
        source.backup(copy)  # pages=-1: one snapshot, see module docstring
        copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
    finally:
        copy.close()
        source.close()
    seconds = time.perf_counter() - started
    found = check(aside)
    if not found.ok:
        aside.unlink()
        raise BackupError(f"the copy failed its check: {'; '.join(found.problems)}")
    os.replace(aside, target)
    return found, seconds


def live_leases(path: str | Path) -> list[str]:
    """The leases (`locks` rows) still running in the store file at `path`: a server is
    using it."""
    conn = _connect(path, readonly=True)
    try:
        rows = conn.execute("SELECT key FROM locks WHERE expires >= ?", (now_us(),)).fetchall()
    except sqlite3.DatabaseError:
        return []
    finally:
        conn.close()
    return sorted(str(r[0]) for r in rows)


def restore(source: str | Path, database: str | Path, *, force: bool = False) -> Integrity:
    """Replace the store file `database` with the backup `source` (module docstring);
    returns the restored file's `check`.

    Raises:
        BackupError: the backup fails its check, or a server holds a live lease on
            `database` and not `force` (nothing is replaced then).
    """
    found = check(source)
    if not found.ok:
        raise BackupError(f"the backup fails its check: {'; '.join(found.problems)}")
    if Path(database).exists() and not force:
        running = live_leases(database)
        if running:
            raise BackupError(
                f"a server is using {database} (live leases: {', '.join(running)}); "
                "stop it first, or pass --force"
            )
    Path(database).parent.mkdir(parents=True, exist_ok=True)
    src, dst = _connect(source, readonly=True), _connect(database)
    try:
        src.backup(dst)
        dst.execute("PRAGMA journal_mode=WAL")  # the copy's header said DELETE
    finally:
        src.close()
        dst.close()
    return check(database)
