"""`fhir-server backup PATH`, `fhir-server restore PATH` and `fhir-server check`: copies of
the SQLite store taken while the server runs, put back, and checked
(`fhir_server.storage.sqlite_backup`).

MongoDB keeps its own tools: a consistent online copy is `mongodump --oplog` (on a replica
set) and its restore `mongorestore --oplogReplay --drop` (README, "Running in production");
these commands say so and stop.

Examples:
    fhir-server backup backups/fhir-2026-12-05.db
    fhir-server restore backups/fhir-2026-12-05.db      # with the server stopped
    fhir-server check
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from fhir_server.cli_auth import DatabaseUrl
from fhir_server.config import Settings
from fhir_server.storage.factory import default_path_for
from fhir_server.storage.sqlite_backup import BackupError, Integrity, backup, check, restore

__all__ = ["register"]

console = Console(stderr=True, soft_wrap=True, highlight=False, markup=False)
MONGO_ADVICE = (
    "The store is MongoDB: use `mongodump --oplog --out DIR` for a consistent online copy "
    "and `mongorestore --oplogReplay --drop DIR` to restore it (README, Running in production)."
)


def _sqlite_path(database_url: str | None) -> str:
    url = database_url or Settings().database_url
    if not url.startswith("sqlite:"):
        console.print(MONGO_ADVICE)
        raise typer.Exit(code=2)
    path = default_path_for(url)
    if path == ":memory:":
        console.print("An in-memory database lives only inside its server process.")
        raise typer.Exit(code=2)
    return path


def _report(what: str, found: Integrity) -> None:
    console.print(f"{what}: {found.summary()}")
    for problem in found.problems:
        console.print(f"  {problem}")


def register(app: typer.Typer) -> None:
    """Add `backup`, `restore` and `check` to the `fhir-server` command."""

    @app.command("backup")
    def backup_command(
        path: Annotated[Path, typer.Argument(help="The new backup file (must not exist).")],
        database_url: DatabaseUrl = None,
    ) -> None:
        """Copy the store to PATH while the server runs (a consistent snapshot, checked)."""
        source = _sqlite_path(database_url)
        try:
            found, seconds = backup(source, path)
        except BackupError as exc:
            console.print(f"backup failed: {exc}")
            raise typer.Exit(code=1) from exc
        _report(f"backed up {source} to {path} in {seconds:.2f} s", found)

    @app.command("restore")
    def restore_command(
        path: Annotated[Path, typer.Argument(help="A file made by `fhir-server backup`.")],
        database_url: DatabaseUrl = None,
        force: Annotated[
            bool, typer.Option(help="Restore even though a server seems to be running.")
        ] = False,
    ) -> None:
        """Replace the store with the backup PATH (checked before and after). Stop the
        server first: a running one is detected by its leases and refused unless --force."""
        target = _sqlite_path(database_url)
        try:
            found = restore(path, target, force=force)
        except BackupError as exc:
            console.print(f"restore refused: {exc}")
            raise typer.Exit(code=1) from exc
        _report(f"restored {path} into {target}", found)
        if not found.ok:
            raise typer.Exit(code=1)

    @app.command("check")
    def check_command(database_url: DatabaseUrl = None) -> None:
        """Check the store's integrity: SQLite's own check, every version with its history
        row, every time claim with its Appointment (exit code 1 on a problem)."""
        path = _sqlite_path(database_url)
        try:
            found = check(path)
        except BackupError as exc:
            console.print(f"check failed: {exc}")
            raise typer.Exit(code=1) from exc
        _report(path, found)
        if not found.ok:
            raise typer.Exit(code=1)
