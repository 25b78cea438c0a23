"""Batch and transaction Bundles without HTTP (`fhir_server.bundles`, R4 bundle.html): entries
run through the same dispatcher and repository code as REST, a transaction commits all or
nothing, `urn:uuid` and conditional references resolve, PATCH entries take a json-patch Binary,
and a patient-confined caller's transaction is checked entry by entry."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest

from fhir_server.app import build_interactions
from fhir_server.interactions import Interactions
from fhir_server.messages import FhirRequest, FhirResult
from fhir_server.repository import Repository, RepositoryFactory
from resources.errors import FhirError, Forbidden, Invalid, PreconditionFailed
from tests.conftest import TEST_BASE_URL as BASE
from tests.conftest import make_settings, patient_policy

PATIENT_URN = "urn:uuid:7d9e6c2a-0000-4000-8000-000000000001"


@pytest.fixture
def interactions(tmp_path: Any) -> Interactions:
    return build_interactions(make_settings(tmp_path, base_url=BASE))


def bundle(kind: str, *entries: dict[str, Any]) -> FhirRequest:
    body = {"resourceType": "Bundle", "type": kind, "entry": list(entries)}
    return FhirRequest("POST", "", base_url=BASE, body=body)


def entry(method: str, url: str, resource: Any = None, **request: str) -> dict[str, Any]:
    out: dict[str, Any] = {"request": {"method": method, "url": url, **request}}
    if resource is not None:
        out["resource"] = resource
    return out


async def post(interactions: Interactions, repo: Repository, req: FhirRequest) -> FhirResult:
    return await interactions.dispatch(req, repo)


def statuses(result: FhirResult) -> list[str]:
    return [e["response"]["status"] for e in result.body["entry"]]


async def test_transaction_resolves_urn_uuid_and_patches_with_binary(
    factory: RepositoryFactory, interactions: Interactions
) -> None:
    repo = factory.for_job("test", BASE)
    await repo.update("Patient", "p", {"resourceType": "Patient", "id": "p"})
    patch = base64.b64encode(orjson.dumps([{"op": "add", "path": "/active", "value": True}]))
    binary = {
        "resourceType": "Binary",
        "contentType": "application/json-patch+json",
        "data": patch.decode(),
    }
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "subject": {"reference": PATIENT_URN},
    }
    req = bundle(
        "transaction",
        {**entry("POST", "Patient", {"resourceType": "Patient"}), "fullUrl": PATIENT_URN},
        entry("POST", "Observation", observation),
        entry("PATCH", "Patient/p", binary),
    )
    result = await post(interactions, repo, req)
    assert statuses(result) == ["201 Created", "201 Created", "200 OK"]
    new_patient = result.body["entry"][0]["response"]["location"].split("/")[5]
    stored = await repo.find("Observation", f"subject=Patient/{new_patient}")
    assert len(stored) == 1
    assert orjson.loads((await repo.read("Patient", "p")).content or b"{}")["active"] is True


async def test_transaction_failure_writes_nothing_and_names_the_entry(
    factory: RepositoryFactory, interactions: Interactions
) -> None:
    repo = factory.for_job("test", BASE)
    req = bundle(
        "transaction",
        entry("PUT", "Patient/kept", {"resourceType": "Patient", "id": "kept"}),
        entry("POST", "Patient", {"resourceType": "Patient", "birthDate": "not-a-date"}),
    )
    with pytest.raises(FhirError) as raised:
        await post(interactions, repo, req)
    assert "Bundle.entry[1]" in raised.value.diagnostics
    assert await repo.lookup.read("Patient", "kept") is None


async def test_transaction_same_identity_twice_is_invalid(
    factory: RepositoryFactory, interactions: Interactions
) -> None:
    repo = factory.for_job("test", BASE)
    twice = {"resourceType": "Patient", "id": "x"}
    req = bundle("transaction", entry("PUT", "Patient/x", twice), entry("PUT", "Patient/x", twice))
    with pytest.raises(Invalid):
        await post(interactions, repo, req)


async def test_transaction_conditional_reference_needs_exactly_one_match(
    factory: RepositoryFactory, interactions: Interactions
) -> None:
    repo = factory.for_job("test", BASE)
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "subject": {"reference": "Patient?identifier=urn:mrn|404"},
    }
    with pytest.raises(PreconditionFailed):
        await post(
            interactions, repo, bundle("transaction", entry("POST", "Observation", observation))
        )


async def test_batch_entries_fail_alone_and_confined_entries_are_refused(
    factory: RepositoryFactory, interactions: Interactions
) -> None:
    system = factory.for_job("seed", BASE)
    await system.update("Patient", "b", {"resourceType": "Patient", "id": "b"})
    repo = factory.for_request(patient_policy("a"), BASE)
    req = bundle(
        "batch",
        entry("GET", "Patient/b"),
        entry("PUT", "Patient/a", {"resourceType": "Patient", "id": "a"}),
        entry("GET", "Nothing/1"),
    )
    result = await post(interactions, repo, req)
    assert statuses(result) == ["403", "201 Created", "404"]
    confined = bundle(
        "transaction",
        entry("PUT", "Patient/b", {"resourceType": "Patient", "id": "b", "active": True}),
    )
    with pytest.raises(Forbidden):
        await post(interactions, repo, confined)
