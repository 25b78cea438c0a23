"""`fhir-server load` of the real data sets in ../shared/data, then searches whose expected
results are counted from the files themselves (not typed by hand)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from fhir_server.app import create_app
from fhir_server.cli import app as cli_app
from fhir_server.cli import load_into
from fhir_server.config import Settings
from fhir_server.loader import LoadReport
from fhir_server.storage.base import ResourceStore
from tests.conftest import make_settings, shared_data
from tests.engines import make_store

DATASETS = (
    "synthea-bulk-1000",
    "synthea-gsd-r4/bundles",
    "hl7-r4/examples",
    "smart-scheduling-links",
    "ihe-iti-scheduling",
)
# The one file whose rejection is expected, and why: the HL7 example transaction deletes
# `Patient?identifier=123456`, which matches several of the other HL7 examples (412), and
# updates Patient/123a with If-Match W/"2" on a server that has never seen it.
EXPECTED_REJECTIONS = {"Bundle-bundle-transaction.json"}


def ndjson(path: Path) -> Iterator[dict[str, Any]]:
    with path.open() as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


@pytest.fixture(scope="module")
def loaded_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The data sets loaded through the real `fhir-server load` command into SQLite."""
    paths = [str(shared_data(d)) for d in DATASETS]
    db = tmp_path_factory.mktemp("shared") / "fhir.db"
    result = CliRunner().invoke(
        cli_app, ["load", "--quiet", "--database-url", f"sqlite:///{db}", *paths]
    )
    return db, result.output


@pytest.fixture(scope="module")
async def loaded_mongomock(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[tuple[ResourceStore, LoadReport]]:
    """The same data sets loaded by the same loader into the MongoDB adapter (mongomock)."""
    paths = [shared_data(d) for d in DATASETS]
    store, _ = make_store("mongomock", tmp_path_factory.mktemp("mongo"))
    await store.start()
    report = await load_into(store, Settings(), paths)
    yield store, report
    await store.close()


@pytest.fixture(params=["sqlite", "mongomock"])
async def loaded(
    request: pytest.FixtureRequest, loaded_db: tuple[Path, str]
) -> AsyncIterator[httpx.AsyncClient]:
    """A client on the loaded data, per engine."""
    if request.param == "sqlite":
        db, _ = loaded_db
        app = create_app(make_settings(db.parent))
    else:
        store, _ = request.getfixturevalue("loaded_mongomock")
        app = create_app(Settings(auth=False), store=_Unclosed(store))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t/fhir") as c:
            yield c


class _Unclosed:
    """Lends a module-scoped store to one app: start/close become no-ops."""

    def __init__(self, store: ResourceStore) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None


def test_load_into_mongodb_adapter_reports_only_the_explained_rejection(
    loaded_mongomock: tuple[ResourceStore, LoadReport],
) -> None:
    _, report = loaded_mongomock
    assert sorted(Path(r.source).name for r in report.rejected) == sorted(EXPECTED_REJECTIONS)
    assert report.loaded > 6000


async def total(client: httpx.AsyncClient, query: str) -> int:
    sep = "&" if "?" in query else "?"
    r = await client.get(f"/{query}{sep}_summary=count")
    assert r.status_code == 200, r.text
    return int(r.json()["total"])


def test_load_reports_only_the_explained_rejection(loaded_db: tuple[Path, str]) -> None:
    _, output = loaded_db
    rejected = [line for line in output.splitlines() if line.startswith("rejected ")]
    assert [Path(line.split()[1]).name for line in rejected] == sorted(EXPECTED_REJECTIONS)
    assert "rejected 1" in output.splitlines()[-1]


def test_load_twice_changes_nothing(loaded_db: tuple[Path, str]) -> None:
    db, _ = loaded_db
    path = str(shared_data("synthea-bulk-1000"))
    result = CliRunner().invoke(
        cli_app, ["load", "--quiet", "--database-url", f"sqlite:///{db}", path]
    )
    assert result.exit_code == 0, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("loaded 0 (created 0, updated 0)")


async def test_synthea_bulk_counts_match_files(loaded: httpx.AsyncClient) -> None:
    base = shared_data("synthea-bulk-1000")
    patients = list(ndjson(base / "Patient.000.ndjson"))
    genders = Counter(p.get("gender") for p in patients)
    gsd_patients = [
        e["resource"]
        for f in sorted(shared_data("synthea-gsd-r4", "bundles").glob("*.json"))
        for e in json.loads(f.read_text())["entry"]
        if e["resource"]["resourceType"] == "Patient"
    ]
    hl7 = [
        json.loads(f.read_text())
        for f in sorted(shared_data("hl7-r4", "examples").glob("Patient-*.json"))
    ]
    ihe = [
        json.loads(f.read_text())
        for f in sorted(shared_data("ihe-iti-scheduling").glob("*patient*.json"))
    ]
    every_patient = {p["id"]: p for p in [*patients, *gsd_patients, *hl7, *ihe]}
    all_genders = Counter(p.get("gender") for p in every_patient.values())
    assert await total(loaded, "Patient?gender=female") == all_genders["female"]
    assert genders["female"] <= all_genders["female"]
    born_1960s = [
        p for p in every_patient.values() if "1960-01-01" <= p.get("birthDate", "") < "1970-01-01"
    ]
    assert await total(loaded, "Patient?birthdate=ge1960-01-01&birthdate=lt1970-01-01") == len(
        born_1960s
    )
    first = patients[0]
    ident = first["identifier"][1]
    matching = [
        p
        for p in every_patient.values()
        if any(
            i.get("system") == ident["system"] and i.get("value") == ident["value"]
            for i in p.get("identifier", [])
        )
    ]
    r = await loaded.get("/Patient", params={"identifier": f"{ident['system']}|{ident['value']}"})
    assert [e["resource"]["id"] for e in r.json()["entry"]] == [p["id"] for p in matching]
    for rtype in ("Practitioner", "PractitionerRole", "Location", "Organization"):
        ids = {r["id"] for r in ndjson(base / f"{rtype}.000.ndjson")}
        stored = await total(loaded, f"{rtype}?_id={','.join(sorted(ids)[:50])}")
        assert stored == min(50, len(ids))


async def test_smart_scheduling_links_slots_searchable_by_schedule_and_status(
    loaded: httpx.AsyncClient,
) -> None:
    base = shared_data("smart-scheduling-links")
    slots = {s["id"]: s for f in sorted(base.glob("slots-*.ndjson")) for s in ndjson(f)}
    schedules = {s["id"]: s for s in ndjson(base / "schedules.ndjson")}
    per_schedule = Counter(s["schedule"]["reference"] for s in slots.values())
    for ref, expected in per_schedule.items():
        assert await total(loaded, f"Slot?schedule={ref}") == expected
    free = [s for s in slots.values() if s["status"] == "free"]
    assert await total(loaded, "Slot?status=free&_id=" + ",".join(sorted(slots))) == len(free)
    some_location = schedules[sorted(schedules)[0]]["actor"][0]["reference"]
    via_chain = [
        s
        for s in slots.values()
        if schedules[s["schedule"]["reference"].split("/")[1]]["actor"][0]["reference"]
        == some_location
    ]
    assert await total(loaded, f"Slot?schedule.actor={some_location}") == len(via_chain)
    window = [s for s in slots.values() if "2021-03-08" <= s["start"][:10] < "2021-03-10"]
    assert await total(
        loaded, "Slot?start=ge2021-03-08&start=lt2021-03-10&_id=" + ",".join(sorted(slots))
    ) == len(window)
