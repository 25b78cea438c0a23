"""The interaction dispatcher without HTTP (`fhir_server.interactions`, R4 http.html): routing by
method and path, the answers of each interaction, and operations asking the repository for
their permissions and target."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_server.app import build_interactions
from fhir_server.interactions import Interactions
from fhir_server.messages import FhirRequest
from fhir_server.repository import RepositoryFactory
from resources.errors import Forbidden, Gone, Invalid, MethodNotAllowed, NotFound
from tests.conftest import TEST_BASE_URL as BASE
from tests.conftest import make_settings, patient_policy


@pytest.fixture
def interactions(tmp_path: Any) -> Interactions:
    return build_interactions(make_settings(tmp_path, base_url=BASE))


def req(method: str, path: str, body: Any = None, **extra: Any) -> FhirRequest:
    return FhirRequest(method, path, base_url=BASE, body=body, **extra)


async def test_crud_round_trip_with_statuses_and_locations(
    factory: RepositoryFactory, interactions: Interactions
) -> None:
    repo = factory.for_job("test", BASE)
    created = await interactions.dispatch(
        req("PUT", "Patient/p", {"resourceType": "Patient", "id": "p"}), repo
    )
    assert (created.status, created.location) == (201, f"{BASE}/Patient/p/_history/1")
    read = await interactions.dispatch(req("GET", "Patient/p"), repo)
    assert read.status == 200 and read.raw is not None
    cached = await interactions.dispatch(req("GET", "Patient/p", if_none_match='W/"1"'), repo)
    assert cached.status == 304
    minimal = await interactions.dispatch(
        req("POST", "Patient", {"resourceType": "Patient"}, prefer_return="minimal"), repo
    )
    assert minimal.status == 201 and minimal.raw is None and minimal.body is None
    deleted = await interactions.dispatch(req("DELETE", "Patient/p"), repo)
    assert deleted.status == 200
    with pytest.raises(Gone):
        await interactions.dispatch(req("GET", "Patient/p"), repo)
    history = await interactions.dispatch(req("GET", "Patient/p/_history"), repo)
    assert history.body["total"] == 2


@pytest.mark.parametrize(
    ("method", "path", "error"),
    [
        ("GET", "Nothing/1", NotFound),
        ("DELETE", "Patient", MethodNotAllowed),
        ("GET", "Patient/_search", MethodNotAllowed),
        ("PUT", "Patient", Invalid),
        ("GET", "Patient/1/$nothing", NotFound),
        ("GET", "Appointment/$hold", MethodNotAllowed),
        ("GET", "Patient/1/_history/x/y", NotFound),
        ("PATCH", "", MethodNotAllowed),
    ],
)
async def test_routing_errors(
    factory: RepositoryFactory,
    interactions: Interactions,
    method: str,
    path: str,
    error: type[Exception],
) -> None:
    with pytest.raises(error):
        await interactions.dispatch(req(method, path), factory.for_job("test", BASE))


async def test_compartment_search_and_metadata(
    factory: RepositoryFactory, interactions: Interactions
) -> None:
    repo = factory.for_job("test", BASE)
    appointment = {
        "resourceType": "Appointment",
        "status": "proposed",
        "participant": [{"actor": {"reference": f"{BASE}/Patient/p"}, "status": "accepted"}],
    }
    await repo.create(appointment)
    found = await interactions.dispatch(req("GET", "Patient/p/Appointment"), repo)
    assert found.body["total"] == 1
    metadata = await interactions.dispatch(req("GET", "metadata"), repo)
    assert metadata.body["resourceType"] == "CapabilityStatement"


async def test_operation_target_and_permissions_asked_of_the_repository(
    factory: RepositoryFactory, interactions: Interactions
) -> None:
    system = factory.for_job("seed", BASE)
    await system.update("Patient", "b", {"resourceType": "Patient", "id": "b"})
    repo = factory.for_request(patient_policy("a", "patient/Patient.rs"), BASE)
    with pytest.raises(Forbidden):  # another patient's $everything
        await interactions.dispatch(req("GET", "Patient/b/$everything"), repo)
    with pytest.raises(Forbidden):  # $hold needs Appointment c+u
        await interactions.dispatch(
            req("POST", "Appointment/$hold", {"resourceType": "Parameters"}), repo
        )
