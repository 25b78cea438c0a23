"""The served resource types and the id rule (`resources.types`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fhir.resources.R4B import fhirtypes, get_fhir_model_class
from fhir.resources.R4B.resource import Resource

from resources.types import (
    FHIR_ID_RE,
    R4_ONLY_TYPES,
    R4B_ONLY_TYPES,
    RESOURCE_TYPES,
    is_resource_type,
    is_valid_id,
)

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def _r4b_model_resource_types() -> set[str]:
    """Every concrete resource model of fhir.resources.R4B, found by importing them all."""
    found = set()
    for attr in dir(fhirtypes):
        if not attr.endswith("Type"):
            continue
        try:
            model = get_fhir_model_class(attr.removesuffix("Type"))
        except ValueError:
            continue
        if issubclass(model, Resource):
            found.add(model.__resource_type__)
    return found - {"Resource", "DomainResource"}


def test_resource_types_static_list_equals_r4b_models() -> None:
    assert _r4b_model_resource_types() == RESOURCE_TYPES


def test_resource_types_count_is_141() -> None:
    assert len(RESOURCE_TYPES) == 141


def test_resource_types_abstract_and_datatypes_excluded() -> None:
    assert not {"Resource", "DomainResource", "HumanName", "Period", "Extension"} & RESOURCE_TYPES


def test_r4b_only_types_served() -> None:
    assert R4B_ONLY_TYPES <= RESOURCE_TYPES


def test_r4_only_types_not_served() -> None:
    assert not R4_ONLY_TYPES & RESOURCE_TYPES


@pytest.mark.shared_data
def test_type_lists_against_official_r4_schema_match() -> None:
    schema_file = SHARED_DATA / "hl7-r4" / "definitions" / "fhir.r4.schema.json"
    if not schema_file.exists():
        pytest.skip("needs ../shared/data (the shared data folder beside the repo)")
    r4_types = set(json.loads(schema_file.read_text())["discriminator"]["mapping"])
    assert len(r4_types) == 146
    assert RESOURCE_TYPES - r4_types == R4B_ONLY_TYPES
    assert r4_types - RESOURCE_TYPES == R4_ONLY_TYPES


@pytest.mark.parametrize("name", ["Slot", "Appointment", "Patient", "SubscriptionTopic"])
def test_is_resource_type_served_type_true(name: str) -> None:
    assert is_resource_type(name)


@pytest.mark.parametrize(
    "name", ["slot", "Resource", "DomainResource", "Period", "MedicinalProduct", "", "$find"]
)
def test_is_resource_type_other_name_false(name: str) -> None:
    assert not is_resource_type(name)


@pytest.mark.parametrize("value", ["a", "123", "A-1.b", "f001", "a" * 64, "2.16.840.1"])
def test_is_valid_id_r4_id_true(value: str) -> None:
    assert is_valid_id(value)
    assert FHIR_ID_RE.fullmatch(value)


@pytest.mark.parametrize(
    "value", ["", "a" * 65, "a_b", "a b", "Patient/1", "é", "a\n", "a:b", "$find"]
)
def test_is_valid_id_not_r4_id_false(value: str) -> None:
    assert not is_valid_id(value)
