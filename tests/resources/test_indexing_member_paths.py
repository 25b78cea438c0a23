"""The indexer's direct JSON walk for plain member paths (`resources.index_paths.member_path`)
gives exactly what fhirpathpy gives, for every such branch of every R4 search parameter,
over the HL7 R4 examples in ../shared/data/hl7-r4/examples (and the resources of their Bundles)
and the Synthea patients."""

from __future__ import annotations

import json
from typing import Any

import pytest

from resources.index_paths import member_path
from resources.indexing import _compile, _plan
from tests.conftest import shared_data


def _resources() -> list[dict[str, Any]]:
    examples = shared_data("hl7-r4", "examples")
    found: list[dict[str, Any]] = []
    for path in sorted(examples.glob("*.json")):
        resource = json.loads(path.read_text())
        if resource.get("resourceType") == "Bundle":
            found += [e["resource"] for e in resource.get("entry", []) if "resource" in e]
        found.append(resource)
    patients = shared_data("synthea-bulk-1000", "Patient.000.ndjson")
    found += [json.loads(line) for line in patients.read_text().splitlines()[:200] if line]
    return found


def test_member_paths_match_fhirpathpy_on_every_example() -> None:
    compared = 0
    for resource in _resources():
        rtype = resource.get("resourceType")
        if not isinstance(rtype, str):
            continue
        try:
            plan = _plan(rtype)
        except Exception:  # a type with no search parameters we index
            continue
        for param in plan.params:
            for branch in param.branches:
                slow = _compile(branch.expression)
                if branch.evaluate is None or slow is None or branch.evaluate is slow:
                    continue  # not a member path: fhirpathpy evaluates it anyway
                assert branch.evaluate(resource) == slow(resource), (
                    rtype,
                    resource.get("id"),
                    branch.expression,
                )
                compared += 1
    assert compared > 5_000, compared  # the walk really ran, over many paths


@pytest.mark.parametrize(
    ("resource", "expression", "expected"),
    [
        ({"resourceType": "Patient", "_gender": {"extension": []}}, "Patient.gender", []),
        (
            {"resourceType": "Patient", "name": [{"given": ["A", "B"]}, {"given": ["C"]}]},
            "Patient.name.given",
            ["A", "B", "C"],
        ),
        (
            {"resourceType": "Observation", "valueQuantity": {"value": 5}},
            "Observation.value",
            [{"value": 5}],
        ),
    ],
)
def test_walk_edge_cases_agree(resource: dict[str, Any], expression: str, expected: Any) -> None:
    slow = _compile(expression)
    assert slow is not None
    steps = tuple(expression.split(".")[1:])
    assert member_path(steps, slow)(resource) == slow(resource) == expected
