"""`fhir-server reminders list` and `resend` against a database with a planned and sent
reminder (run as a user would, through the installed command)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import orjson

from fhir_server.app import build_repositories
from fhir_server.storage.sqlite import SQLiteStore
from operations.reminders.planner import ReminderPlanner
from tests.conftest import TEST_BASE_URL, make_settings
from tests.reminders.helpers import Clock, booking, reminders, seed

FHIR_SERVER = Path(sys.executable).parent / "fhir-server"


def run(tmp_path: Path, *args: str) -> str:
    env = {**os.environ, "FHIR_SERVER_DATABASE_URL": f"sqlite:///{tmp_path / 'fhir.db'}"}
    done = subprocess.run(
        [str(FHIR_SERVER), "reminders", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_list_shows_the_day_and_resend_makes_one_due_again(tmp_path: Path) -> None:
    async def prepare() -> str:
        store = SQLiteStore(str(tmp_path / "fhir.db"))
        await store.start()
        factory = build_repositories(
            store,
            make_settings(
                tmp_path,
                base_url=TEST_BASE_URL,
                reminder_offsets="PT2H",
                smtp_url="smtp://127.0.0.1:9",
            ),
        )
        repo = factory.for_job("test")
        await seed(repo)
        planner = ReminderPlanner(factory.for_job("reminders"), Clock("2026-10-30T12:00:00Z"))
        await planner.start()
        appt = (
            await repo.create(booking("2026-11-01T14:00:00Z", "2026-11-01T14:30:00Z"))
        ).stored.id
        await planner.round()
        rid = (await reminders(repo, appt))["PT2H"]["id"]
        await store.close()
        return str(rid)

    rid = asyncio.run(prepare())
    listed = run(tmp_path, "list", "--day", "2026-11-01")
    assert "1 due that day" in listed and "PT2H" not in listed
    assert rid in listed
    assert "EMAILWRIT" in listed
    resent = run(tmp_path, "resend", rid)
    assert f"CommunicationRequest/{rid} is due again" in resent

    async def check() -> dict[str, object]:
        store = SQLiteStore(str(tmp_path / "fhir.db"))
        await store.start()
        stored = await store.read("CommunicationRequest", rid)
        await store.close()
        assert stored is not None and stored.content is not None
        body: dict[str, object] = orjson.loads(stored.content)
        return body

    again = asyncio.run(check())
    assert again["status"] == "active"
    assert str(again["occurrenceDateTime"]) > "2026-11-01"
