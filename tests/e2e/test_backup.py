"""`fhir-server backup` under write load, `restore` and `check`, on a live server's SQLite
file: the copy is consistent (passes the integrity check: every claim has its Appointment,
every version its history row), restores into a working store, and the check catches what
it claims to catch. A restore over a running server's file is refused."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import shutil
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from fhir_server.cli import app as cli
from fhir_server.search.query import StoreQuery
from fhir_server.storage.sqlite import SQLiteStore
from tests.conftest import LiveServer, make_settings
from tests.smart.flows import parameters


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def _booking(n: int) -> dict[str, object]:
    day, slot = divmod(n, 16)  # 16 half-hours a day, a new day after that
    start = f"2031-03-{3 + day % 25:02d}T{9 + slot // 2:02d}:{30 * (slot % 2):02d}:00Z"
    end = f"2031-03-{3 + day % 25:02d}T{9 + slot // 2:02d}:{30 * (slot % 2) + 29:02d}:00Z"
    return {
        "resourceType": "Appointment",
        "status": "proposed",
        "start": start,
        "end": end,
        "participant": [
            {"actor": {"reference": f"Patient/load-{n}"}, "status": "accepted"},
            {"actor": {"reference": "PractitionerRole/load-role"}, "status": "accepted"},
        ],
    }


def _clinic(server: LiveServer) -> None:
    """A practitioner role open 09:00-17:00 UTC every day, with its Schedule."""
    role = {
        "resourceType": "PractitionerRole",
        "id": "load-role",
        "active": True,
        "availableTime": [
            {
                "daysOfWeek": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                "availableStartTime": "09:00:00",
                "availableEndTime": "17:00:00",
            }
        ],
    }
    schedule = {
        "resourceType": "Schedule",
        "id": "load-schedule",
        "active": True,
        "actor": [{"reference": "PractitionerRole/load-role"}],
    }
    with httpx.Client(base_url=server.base_url) as http:
        for resource in (role, schedule):
            url = f"/{resource['resourceType']}/{resource['id']}"
            assert http.put(url, json=resource).status_code == 201


@pytest.fixture
def loaded(tmp_path: Path) -> Iterator[LiveServer]:
    with LiveServer(make_settings(tmp_path)) as server:
        yield server


def test_backup_under_write_load_restores_a_sound_store(loaded: LiveServer, tmp_path: Path) -> None:
    db = loaded.settings.database_url
    stop = threading.Event()
    written: list[int] = []

    def write_load(worker: int) -> None:
        with httpx.Client(base_url=loaded.base_url, timeout=30) as http:
            n = worker
            while not stop.is_set() and n < 390:
                http.put(f"/Patient/load-{n}", json={"resourceType": "Patient", "id": f"load-{n}"})
                r = http.post("/Appointment/$book", json=parameters(_booking(n)))
                assert r.status_code == 200, r.text
                written.append(n)
                n += 4

    _clinic(loaded)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        writers = [pool.submit(write_load, w) for w in range(4)]
        while len(written) < 40:
            assert not any(w.done() and w.exception() for w in writers)
            threading.Event().wait(0.02)
        copies = []
        for k in range(3):  # three copies while the writers go on
            code, out = _run("backup", str(tmp_path / f"b{k}.db"), "--database-url", db)
            assert code == 0 and "integrity ok" in out, out
            copies.append(tmp_path / f"b{k}.db")
        assert not all(w.done() for w in writers)  # the copies were taken under load
        stop.set()
        for w in writers:
            w.result()
    assert len(written) > 40
    # a restore onto the running server's file is refused and changes nothing
    code, out = _run("restore", str(copies[-1]), "--database-url", db)
    assert code == 1 and "a server is using" in out and "holds:sweeper" in out, out
    code, out = _run("check", "--database-url", db)
    assert code == 0 and "integrity ok" in out
    # restored into a new file: sound, and a store that serves what the copy held
    target = tmp_path / "restored" / "fhir.db"
    code, out = _run("restore", str(copies[-1]), "--database-url", f"sqlite:///{target}")
    assert code == 0 and "integrity ok" in out, out

    async def read_back() -> tuple[int, int]:
        store = SQLiteStore(str(target))
        await store.start()
        try:
            booked = await store.count("Appointment", ())
            page = await store.search(StoreQuery("Appointment", (), count=1))
            assert page.resources and (await store.claims_of(f"Appointment/{page.resources[0].id}"))
            return booked, len(written)
        finally:
            await store.close()

    booked, total = asyncio.run(read_back())
    assert 40 <= booked <= total


def test_check_finds_missing_history_and_orphan_claims_and_restore_refuses(
    loaded: LiveServer, tmp_path: Path
) -> None:
    _clinic(loaded)
    with httpx.Client(base_url=loaded.base_url) as http:
        http.put("/Patient/load-0", json={"resourceType": "Patient", "id": "load-0"})
        assert http.post("/Appointment/$book", json=parameters(_booking(0))).status_code == 200
    db = loaded.settings.database_url
    good = tmp_path / "good.db"
    assert _run("backup", str(good), "--database-url", db)[0] == 0
    code, out = _run("backup", str(good), "--database-url", db)
    assert code == 1 and "exists already" in out  # never overwrites a backup

    broken = tmp_path / "broken.db"
    shutil.copy(good, broken)
    conn = sqlite3.connect(broken)
    conn.execute("DELETE FROM history WHERE res_type = 'Patient'")
    conn.execute("DELETE FROM resources WHERE res_type = 'Appointment'")
    conn.commit()
    conn.close()
    code, out = _run("check", "--database-url", f"sqlite:///{broken}")
    assert code == 1, out
    assert "current versions without their history row" in out
    assert "time claims whose owner does not exist or is deleted" in out
    target = tmp_path / "target.db"
    assert _run("restore", str(good), "--database-url", f"sqlite:///{target}")[0] == 0
    before = target.read_bytes()
    code, out = _run("restore", str(broken), "--database-url", f"sqlite:///{target}")
    assert code == 1 and "fails its check" in out, out
    assert target.read_bytes() == before  # nothing replaced
    assert not os.path.exists(tmp_path / ".broken.db.partial")


def test_mongodb_is_pointed_to_its_own_tools() -> None:
    code, out = _run("backup", "/tmp/x.db", "--database-url", "mongodb://localhost/fhir")
    assert code == 2 and "mongodump --oplog" in out
