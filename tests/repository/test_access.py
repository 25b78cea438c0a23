"""The repository enforces the caller's policy on every read, search, include and write, without
HTTP (ARCHITECTURE.md "One way in"; SMART.md "Rules that matter"): a patient-confined policy
sees and writes only its patient's compartment, in any spelling of the references."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_server.repository import RepositoryFactory
from fhir_server.search.parse import parse_search
from resources.errors import Forbidden, Gone
from tests.conftest import TEST_BASE_URL as BASE
from tests.conftest import patient_policy


def appointment(patient: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Appointment",
        "status": "proposed",
        "participant": [{"actor": {"reference": patient}, "status": "accepted"}],
        **extra,
    }


async def seed(factory: RepositoryFactory) -> None:
    system = factory.for_job("seed", BASE)
    for pid in ("a", "b"):
        await system.update("Patient", pid, {"resourceType": "Patient", "id": pid})
    mine = {**appointment(f"{BASE}/Patient/a"), "id": "mine"}  # absolute: still Patient/a's
    await system.update("Appointment", "mine", mine)
    theirs = {**appointment("Patient/b/_history/1"), "id": "theirs"}
    await system.update("Appointment", "theirs", theirs)


async def test_read_own_and_absolute_reference_allowed_other_forbidden(
    factory: RepositoryFactory,
) -> None:
    await seed(factory)
    repo = factory.for_request(patient_policy("a"), BASE)
    assert (await repo.read("Appointment", "mine")).id == "mine"
    with pytest.raises(Forbidden):
        await repo.read("Appointment", "theirs")
    with pytest.raises(Forbidden):
        await repo.read("Patient", "b")


async def test_search_narrowed_and_includes_admitted(factory: RepositoryFactory) -> None:
    await seed(factory)
    repo = factory.for_request(patient_policy("a"), BASE)
    request = parse_search(
        "Appointment", [("_include", "Appointment:patient")], repo.context, strict=True
    )
    result = await repo.search(request)
    assert [r.id for r in result.page.resources] == ["mine"]
    assert [(r.resource_type, r.id) for r in result.included] == [("Patient", "a")]


async def test_write_for_another_patient_forbidden_nothing_written(
    factory: RepositoryFactory,
) -> None:
    await seed(factory)
    repo = factory.for_request(patient_policy("a"), BASE)
    prepared = await repo.prepare_create(appointment("Patient/b"))
    with pytest.raises(Forbidden):
        await repo.apply([prepared])
    moved = {**appointment("Patient/a"), "id": "theirs"}  # taking theirs over is a write too
    with pytest.raises(Forbidden):
        await repo.update("Appointment", "theirs", moved)
    system = factory.for_job("check", BASE)
    assert (await system.read("Appointment", "theirs")).version_id == 1
    assert await system.find("Appointment", "patient=Patient/b") != []


async def test_history_and_conditional_writes_refused_to_confined_policy(
    factory: RepositoryFactory,
) -> None:
    await seed(factory)
    repo = factory.for_request(patient_policy("a"), BASE)
    with pytest.raises(Forbidden):
        await repo.history("type", "Appointment")
    with pytest.raises(Forbidden):
        await repo.history("system")
    with pytest.raises(Forbidden):
        await repo.conditional_update("Appointment", "_id=mine", appointment("Patient/a"))
    with pytest.raises(Forbidden):
        await repo.conditional_delete("Appointment", "_id=mine")
    versions, total = await repo.history("instance", "Appointment", "mine")
    assert total == 1 and versions[0].id == "mine"


async def test_conditional_create_match_outside_reach_forbidden(factory: RepositoryFactory) -> None:
    await seed(factory)
    repo = factory.for_request(patient_policy("a"), BASE)
    with pytest.raises(Forbidden):
        await repo.prepare_create(appointment("Patient/a"), if_none_exist="_id=theirs")
    found = await repo.prepare_create(appointment("Patient/a"), if_none_exist="_id=mine")
    assert found.result is not None and found.result.outcome == "found" and found.op is None


async def test_deleted_resource_judged_by_its_last_content(factory: RepositoryFactory) -> None:
    await seed(factory)
    system = factory.for_job("seed", BASE)
    await system.delete("Appointment", "theirs")
    await system.delete("Appointment", "mine")
    repo = factory.for_request(patient_policy("a"), BASE)
    with pytest.raises(Gone):
        await repo.read("Appointment", "mine")
    with pytest.raises(Forbidden):
        await repo.read("Appointment", "theirs")


async def test_system_housekeeping_refused_to_a_token(factory: RepositoryFactory) -> None:
    repo = factory.for_request(patient_policy("a"), BASE)
    with pytest.raises(Forbidden):
        await repo.release_expired_claims(0)
    assert await factory.for_job("sweeper").release_expired_claims(0) == []
    with pytest.raises(Forbidden):
        await repo.recover_interrupted_writes(0)
    assert await factory.for_job("sweeper").recover_interrupted_writes(0) == 0


async def test_update_as_create_for_another_patient_without_create_scope_forbidden(
    factory: RepositoryFactory,
) -> None:
    await seed(factory)
    repo = factory.for_request(patient_policy("a", "patient/Appointment.ru"), BASE)
    theirs = {**appointment("Patient/b"), "id": "new-one"}  # PUT creates: no c scope at all
    with pytest.raises(Forbidden):
        await repo.update("Appointment", "new-one", theirs)
    assert await factory.for_job("check", BASE).lookup.read("Appointment", "new-one") is None
    mine = {**appointment("Patient/a"), "id": "mine-too"}
    assert (await repo.update("Appointment", "mine-too", mine)).outcome == "created"
