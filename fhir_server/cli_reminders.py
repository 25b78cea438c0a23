"""`fhir-server reminders`: what reminders and notices are due or were sent on a day, and
resending one (`operations/reminders/`).

Examples:
    fhir-server reminders list --day 2026-12-08
    fhir-server reminders resend reminder-3f2a...
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import orjson
import typer
from rich.console import Console
from rich.table import Table

from fhir_server.app import build_repositories
from fhir_server.cli_auth import DatabaseUrl
from fhir_server.config import Settings
from fhir_server.repository import Repository
from fhir_server.search.query import (
    DateCondition,
    RangeValue,
    StoreQuery,
    TokenCondition,
    TokenValue,
)
from fhir_server.storage.factory import open_store
from operations.reminders.sender import communication_id
from resources.fhir_dates import US, format_instant, now_us

__all__ = ["register"]

reminders_app = typer.Typer(help="Appointment reminders and notices.", no_args_is_help=True)
console = Console(width=None if sys.stdout.isatty() else 200)  # piped: one row per line


@asynccontextmanager
async def _job(database_url: str | None) -> AsyncIterator[Repository]:
    settings = Settings()
    if database_url:
        settings = settings.model_copy(update={"database_url": database_url})
    store = open_store(settings.database_url)
    await store.start()
    try:
        yield build_repositories(store, settings).for_server("fhir-server reminders")
    finally:
        await store.close()


async def _day(database_url: str | None, day: dt.date, zone: str) -> list[dict[str, Any]]:
    tz = ZoneInfo(zone)
    low = int(dt.datetime.combine(day, dt.time(), tz).timestamp() * US)
    high = int(dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tz).timestamp() * US)
    categories = (TokenValue("*", "reminder"), TokenValue("*", "notification"))
    conditions = (
        TokenCondition("category", categories),
        DateCondition("occurrence", (RangeValue("ge", low, low + 1),)),
        DateCondition("occurrence", (RangeValue("lt", high, high + 1),)),
    )
    rows: list[dict[str, Any]] = []
    async with _job(database_url) as repo:
        page = await repo.lookup.search(StoreQuery("CommunicationRequest", conditions, count=1000))
        for stored in page.resources:
            request = orjson.loads(stored.content or b"{}")
            sent = await repo.lookup.read("Communication", communication_id(request))
            comm = orjson.loads(sent.content) if sent and sent.content else {}
            rows.append({"request": request, "communication": comm})
    rows.sort(key=lambda r: str(r["request"].get("occurrenceDateTime")))
    return rows


@reminders_app.command("list")
def list_(
    day: Annotated[str, typer.Option(help="The day, YYYY-MM-DD (default: today).")] = "",
    zone: Annotated[str, typer.Option(help="The zone the day is in.")] = "UTC",
    database_url: DatabaseUrl = None,
) -> None:
    """Reminders and notices due on a day: id, when, kind, to whom, how, status, what was sent."""
    when = dt.date.fromisoformat(day) if day else dt.datetime.now(ZoneInfo(zone)).date()
    rows = asyncio.run(_day(database_url, when, zone))
    table = Table(title=f"Reminders and notices due {when} ({zone})")
    for column in ("id", "due", "kind", "to", "medium", "status", "sent / why not"):
        table.add_column(column)
    for row in rows:
        request, comm = row["request"], row["communication"]
        kind = request["category"][0]["coding"][0]["code"]
        medium = request["medium"][0]["coding"][0]["code"]
        outcome = (
            comm.get("sent")
            or (comm.get("statusReason") or {}).get("text")
            or comm.get("status", "")
        )
        table.add_row(
            request["id"],
            str(request.get("occurrenceDateTime")),
            kind,
            request["recipient"][0]["reference"],
            medium,
            request["status"],
            str(outcome),
        )
    console.print(table)
    console.print(f"{len(rows)} due that day")


async def _resend(database_url: str | None, request_id: str) -> str:
    async with _job(database_url) as repo:
        stored = await repo.lookup.read("CommunicationRequest", request_id)
        if stored is None or stored.content is None:
            raise typer.BadParameter(f"no CommunicationRequest/{request_id}")
        request = orjson.loads(stored.content)
        request.update(status="active", occurrenceDateTime=format_instant(now_us()))
        await repo.update("CommunicationRequest", request_id, request)
        return str(request["occurrenceDateTime"])


@reminders_app.command()
def resend(
    request_id: Annotated[str, typer.Argument(help="The CommunicationRequest id.")],
    database_url: DatabaseUrl = None,
) -> None:
    """Send a reminder or notice again: it becomes active and due now, and the running
    server's messaging job sends it at its next check (a new Communication records it)."""
    due = asyncio.run(_resend(database_url, request_id))
    console.print(f"CommunicationRequest/{request_id} is due again at {due}")


def register(app: typer.Typer) -> None:
    """Add `reminders` to the `fhir-server` command."""
    app.add_typer(reminders_app, name="reminders")
