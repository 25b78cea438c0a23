"""The `fhir-server` command: `serve` the FHIR API, `load` FHIR files into the store,
administer authorization (`clients`, `users`, `launch`, `token`, `keys`: `cli_auth.py`),
look at reminders (`reminders`: `cli_reminders.py`), and `backup`, `restore` and `check` the
SQLite store (`cli_backup.py`).

Examples:
    fhir-server serve --port 8080 --demo
    fhir-server load ../shared/data/synthea-bulk-1000/
    FHIR_SERVER_DATABASE_URL=mongodb://localhost/fhir fhir-server load data.ndjson
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.text import Text

from fhir_server.app import build_interactions, build_repositories
from fhir_server.bundles import BundleProcessor
from fhir_server.cli_auth import DEFAULT_BASE_URL, register
from fhir_server.cli_backup import register as register_backup
from fhir_server.cli_reminders import register as register_reminders
from fhir_server.config import Settings
from fhir_server.demo_access import (
    DEMO_CLIENT_ID,
    DEMO_LOGINS,
    DEMO_REDIRECT_URI,
    register_demo_access,
)
from fhir_server.loader import Item, Loader, LoadReport, iter_files
from fhir_server.repository import Repository
from fhir_server.search.query import StoreQuery
from fhir_server.storage.base import ResourceStore
from fhir_server.storage.factory import open_store

app = typer.Typer(help="FHIR R4 scheduling server.", no_args_is_help=True, add_completion=False)
console = Console(stderr=True, soft_wrap=True, highlight=False, markup=False)
"""Everything the command prints goes to stderr unwrapped whatever the terminal width (a
path or an OperationOutcome stays on one line for scripts), never highlighted, and never read
as markup (a `[bold]` in a file name is data): styles come only from `_say`'s labels."""

DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="sqlite:///path.db or mongodb://host/db "
        "(default: FHIR_SERVER_DATABASE_URL or sqlite:///./data/fhir.db)",
    ),
]


def _say(*parts: str | tuple[str, str]) -> None:
    """Print one line on `console`: plain text parts, or `(text, style)` for a styled label,
    e.g. `_say(("rejected", "red"), " ", path)`."""
    console.print(Text.assemble(*parts))


def _settings(database_url: str | None) -> Settings:
    settings = Settings()
    if database_url:
        settings = settings.model_copy(update={"database_url": database_url})
    return settings


def _loader(store: ResourceStore, settings: Settings, job: str) -> tuple[Repository, Loader]:
    """A job repository over a started store and a Loader writing through it."""
    repository = build_repositories(store, settings).for_server(job, settings.base_url)
    bundles = build_interactions(settings).bundle_handler
    assert isinstance(bundles, BundleProcessor)
    return repository, Loader(repository, bundles, settings.base_url)


async def load_into(
    store: ResourceStore,
    settings: Settings,
    paths: list[Path],
    show_progress: bool = False,
) -> LoadReport:
    """Load `paths` into a started store with a progress bar; the engine of `fhir-server load`
    (a job repository named `fhir-server load`: every write rule applies, as over REST)."""
    _, loader = _loader(store, settings, "fhir-server load")
    files = list(iter_files(paths))
    with Progress(
        TextColumn("[bold]loading"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}", markup=False),  # a file name is data
        console=console,
        disable=not show_progress,
    ) as progress:
        task = progress.add_task("", total=len(files))

        def advance(name: str) -> None:
            progress.update(task, advance=1, description=Path(name).name)

        return await loader.load_paths(files, advance)


async def _load(settings: Settings, paths: list[Path], show_progress: bool) -> LoadReport:
    store = open_store(settings.database_url)
    await store.start()
    try:
        return await load_into(store, settings, paths, show_progress)
    finally:
        await store.close()


async def _load_demo(settings: Settings) -> int:
    """Load the demo clinic if the store holds no Organization yet; returns resources loaded."""
    from fhir_server.demo import demo_clinic

    store = open_store(settings.database_url)
    await store.start()
    try:
        repository, loader = _loader(store, settings, "fhir-server demo")
        existing = await repository.lookup.search(StoreQuery("Organization", (), count=1))
        if existing.resources:
            return 0
        report = LoadReport()
        for resource in demo_clinic(dt.date.today()):
            await loader.load_item(Item("demo", resource), report)
        for rejection in report.rejected:
            outcome = orjson.dumps(rejection.outcome).decode()
            _say(("demo resource rejected", "red"), " ", outcome)
        await register_demo_access(repository.records)
        return report.loaded
    finally:
        await store.close()


CertFile = Annotated[
    Path | None,
    typer.Option("--ssl-certfile", help="PEM certificate (chain): serve HTTPS.", exists=True),
]
KeyFile = Annotated[
    Path | None,
    typer.Option("--ssl-keyfile", help="PEM private key of --ssl-certfile.", exists=True),
]


def default_workers(database_url: str) -> int:
    """Worker processes by default: one per core this process may run on, or 1 for a
    private in-memory SQLite database, which another process could not share."""
    if database_url.endswith(":memory:"):
        return 1
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8080,
    workers: Annotated[
        int | None,
        typer.Option(help="Worker processes sharing the store (default: one per core)."),
    ] = None,
    database_url: DatabaseUrl = None,
    demo: Annotated[bool, typer.Option(help="Load the demo clinic if the store is empty.")] = False,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
    ssl_certfile: CertFile = None,
    ssl_keyfile: KeyFile = None,
    graceful_timeout: Annotated[
        int,
        typer.Option(help="Seconds in-flight requests get to finish on SIGTERM/SIGINT."),
    ] = 30,
) -> None:
    """Serve the FHIR API at http(s)://HOST:PORT/fhir with WORKERS processes.

    Every worker serves every request; work that must happen once (hold sweep, Subscription
    dispatch, reminders, waitlist) runs in the one holding its lease in the database. On
    SIGTERM or Ctrl-C the workers stop accepting connections, let in-flight requests finish
    (up to --graceful-timeout seconds) and give their leases up. `/metrics` adds up every
    worker's values (`fhir_server.metrics`).
    """
    settings = _settings(database_url)
    if database_url:
        os.environ["FHIR_SERVER_DATABASE_URL"] = database_url
    if (ssl_certfile is None) != (ssl_keyfile is None):
        raise typer.BadParameter("--ssl-certfile and --ssl-keyfile go together")
    scheme = "https" if ssl_certfile else "http"
    if not settings.base_url:  # SMART.md: the aud/iss come from here, never from Host
        settings = settings.model_copy(update={"base_url": f"{scheme}://{host}:{port}/fhir"})
        os.environ["FHIR_SERVER_BASE_URL"] = settings.base_url
    n = workers if workers is not None else default_workers(settings.database_url)
    if n > 1 and settings.database_url.endswith(":memory:"):
        raise typer.BadParameter("an in-memory database cannot be shared: use --workers 1")
    if demo:
        loaded = asyncio.run(_load_demo(settings))
        if loaded:
            _say(f"Loaded the demo clinic ({loaded} resources).")
    base = settings.base_url
    _say(("FHIR base URL:", "bold green"), f" {base}")
    _say(f"  store: {settings.database_url}; {n} worker process{'es' if n > 1 else ''}")
    if settings.auth:
        print_token_help(base, demo)
    else:
        _say(
            ("AUTHORIZATION IS OFF", "bold red"),
            " (FHIR_SERVER_AUTH=off): every request is accepted without a token; keep the "
            "server on 127.0.0.1",
        )
        _say(f"  try:   curl -s '{base}/Patient?_count=5'")
    metrics_dir = None
    if n > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        metrics_dir = tempfile.mkdtemp(prefix="fhir-server-metrics-")  # fhir_server.metrics
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    try:
        _run_uvicorn(host, port, n, log_level, ssl_certfile, ssl_keyfile, graceful_timeout)
    finally:
        if metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _run_uvicorn(
    host: str,
    port: int,
    workers: int,
    log_level: str,
    ssl_certfile: Path | None,
    ssl_keyfile: Path | None,
    graceful_timeout: int,
) -> None:
    import uvicorn

    from fhir_server.api.http_protocol import NoDelayHttpToolsProtocol

    uvicorn.run(
        "fhir_server.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        access_log=False,
        ssl_certfile=str(ssl_certfile) if ssl_certfile else None,
        ssl_keyfile=str(ssl_keyfile) if ssl_keyfile else None,
        timeout_graceful_shutdown=graceful_timeout,
        log_config=log_config(log_level),
        # asyncio's own loop, not uvloop: under saturation uvloop served some connections
        # again and again while others waited (a bare 5 ms ASGI app, 50 wrk connections:
        # p99 4.9 s against p50 0.22 s); asyncio's loop is first come, first served (p99
        # 0.26 s, p50 0.25 s) at the same throughput (bench/booking.py)
        loop="asyncio",
        http=NoDelayHttpToolsProtocol,  # TCP_NODELAY with any number of workers
    )


def log_config(level: str) -> dict[str, Any]:
    """uvicorn's logging configuration with the server's own loggers (`fhir_server`,
    `operations`, `smart_auth`: lease changes, failed background rounds) printed the same
    way, each line naming its process (workers share the terminal). The access log has its
    own JSON handler (`fhir_server.api.request_log`)."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["formatters"]["default"]["fmt"] = "%(levelprefix)s [%(process)d] %(message)s"
    for name in ("fhir_server", "operations", "smart_auth"):
        config["loggers"][name] = {"handlers": ["default"], "level": level.upper()}
    config["loggers"]["fhir_server.access"] = {"level": "INFO", "propagate": False}
    return config


def print_token_help(base: str, demo: bool) -> None:
    """How to get a token, printed by `serve` (SMART.md; the demo's client and logins)."""
    env = "" if base == DEFAULT_BASE_URL else f"FHIR_SERVER_BASE_URL={base} "
    lines = [
        f"  public: curl -s '{base}/metadata' | head -c 300",
        f"  token:  TOKEN=$({env}.venv/bin/fhir-server token --scope 'system/*.cruds')",
        f"          curl -s -H \"Authorization: Bearer $TOKEN\" '{base}/Patient?_count=5'",
    ]
    origin = base.rsplit("/fhir", 1)[0]
    lines.append(f"  portal: {origin}/portal/  (patients: Sign in, or Create account)")
    if demo:
        lines.append(
            f"  SMART app: client_id {DEMO_CLIENT_ID} (public, PKCE), redirect "
            f"{DEMO_REDIRECT_URI}; discovery {base}/.well-known/smart-configuration"
        )
        lines += [f"  login:  {u} / {p}  ({who})" for u, p, who in DEMO_LOGINS]
    for line in lines:
        _say(line)


@app.command()
def load(
    paths: Annotated[list[Path], typer.Argument(help="Files or directories to load.", exists=True)],
    database_url: DatabaseUrl = None,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Load FHIR JSON, NDJSON and Bundles (files or directories) into the store.

    Exit code 1 if anything was rejected; each rejection is printed with its OperationOutcome.
    """
    logging.basicConfig(level=logging.WARNING)
    settings = _settings(database_url)
    report = asyncio.run(_load(settings, paths, show_progress=not quiet))
    for rejection in report.rejected:
        _say(("rejected", "red"), f" {rejection.source}")
        _say(f"  {orjson.dumps(rejection.outcome).decode()}")
    _say(
        f"loaded {report.loaded} (created {report.created}, updated {report.updated}), "
        f"unchanged {report.unchanged}, rejected {len(report.rejected)}"
    )
    if report.rejected:
        raise typer.Exit(code=1)


register(app)
register_reminders(app)
register_backup(app)


def main() -> None:
    """Entry point of the `fhir-server` console script."""
    app()
