"""The packaged R4 search-parameter and compartment definitions (`resources.search_parameters`)
and the script that generates them (`scripts/generate_definitions.py`)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import orjson
import pytest

from resources.search_parameters import (
    SearchParamDef,
    compartment_params,
    resource_types,
    search_param,
    search_params,
)

REPO = Path(__file__).resolve().parents[2]


def shared_data() -> Path:
    """`../shared/data` beside the repo, or skip the test when it is absent."""
    path = Path(__file__).resolve().parents[2].parent / "shared" / "data"
    if not path.is_dir():
        pytest.skip("needs ../shared/data (the shared data folder beside the repo)")
    return path


def generator() -> ModuleType:
    """`scripts/generate_definitions.py` loaded as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location(
        "generate_definitions", REPO / "scripts" / "generate_definitions.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_search_param_appointment_patient_resolve_expression_kept() -> None:
    assert search_param("Appointment", "patient") == SearchParamDef(
        code="patient",
        type="reference",
        expression="Appointment.participant.actor.where(resolve() is Patient)",
        targets=("Patient",),
        id="Appointment-patient",
    )


def test_search_param_shared_definition_cut_to_its_type() -> None:
    assert search_param("Observation", "patient") == SearchParamDef(
        code="patient",
        type="reference",
        expression="Observation.subject.where(resolve() is Patient)",
        targets=("Patient", "Group"),
        id="clinical-patient",
    )
    assert search_param("AllergyIntolerance", "patient") == SearchParamDef(
        code="patient",
        type="reference",
        expression="AllergyIntolerance.patient",
        targets=("Patient", "Group"),
        id="clinical-patient",
    )


def test_search_param_choice_union_keeps_every_branch_of_type() -> None:
    assert search_param("Observation", "value-quantity") == SearchParamDef(
        code="value-quantity",
        type="quantity",
        expression="(Observation.value as Quantity) | (Observation.value as SampledData)",
        targets=(),
        id="Observation-value-quantity",
    )


def test_search_param_parenthesised_branch_of_multi_base_kept() -> None:
    definition = search_param("MedicationRequest", "code")

    assert definition is not None
    assert definition.expression == "(MedicationRequest.medication as CodeableConcept)"


def test_search_param_relative_single_base_expression_kept_as_written() -> None:
    definition = search_param("InsurancePlan", "name")

    assert definition is not None
    assert definition.expression == "name | alias"


def test_search_param_resource_level_on_every_type_keeps_official_expression() -> None:
    for resource_type in ("Slot", "Binary", "Bundle", "Patient"):
        assert search_param(resource_type, "_id") == SearchParamDef(
            code="_id", type="token", expression="Resource.id", targets=(), id="Resource-id"
        )
        assert search_param(resource_type, "_lastUpdated") == SearchParamDef(
            code="_lastUpdated",
            type="date",
            expression="Resource.meta.lastUpdated",
            targets=(),
            id="Resource-lastUpdated",
        )


def test_search_param_text_without_expression_kept_with_null() -> None:
    assert search_param("Patient", "_text") == SearchParamDef(
        code="_text", type="string", expression=None, targets=(), id="DomainResource-text"
    )
    assert search_param("Patient", "_content") == SearchParamDef(
        code="_content", type="string", expression=None, targets=(), id="Resource-content"
    )


def test_search_param_domain_resource_param_absent_on_bundle() -> None:
    assert search_param("Bundle", "_text") is None
    assert search_param("Bundle", "_content") is not None


def test_search_param_composite_and_special_listed_with_type() -> None:
    assert search_param("Observation", "code-value-quantity") == SearchParamDef(
        code="code-value-quantity",
        type="composite",
        expression="Observation",
        targets=(),
        id="Observation-code-value-quantity",
    )
    assert search_param("Location", "near") == SearchParamDef(
        code="near", type="special", expression="Location.position", targets=(), id="Location-near"
    )


def test_search_param_unknown_code_none() -> None:
    assert search_param("Appointment", "no-such-param") is None


def test_search_params_unknown_type_empty_mapping() -> None:
    assert dict(search_params("NoSuchResource")) == {}


def test_search_params_slot_all_codes() -> None:
    assert sorted(search_params("Slot")) == [
        "_content",
        "_id",
        "_lastUpdated",
        "_profile",
        "_query",
        "_security",
        "_source",
        "_tag",
        "_text",
        "appointment-type",
        "identifier",
        "schedule",
        "service-category",
        "service-type",
        "specialty",
        "start",
        "status",
    ]


def test_search_params_mapping_read_only() -> None:
    params = search_params("Slot")

    with pytest.raises(TypeError):
        params["x"] = params["_id"]  # type: ignore[index]


def test_resource_types_every_r4_type() -> None:
    types = resource_types()

    assert len(types) == 145
    assert types == tuple(sorted(types))
    assert {"Appointment", "Binary", "OperationOutcome", "Slot"} <= set(types)
    assert not {"Resource", "DomainResource"} & set(types)


def test_compartment_params_appointment_actor_in_both() -> None:
    assert compartment_params("Patient", "Appointment") == ("actor",)
    assert compartment_params("Practitioner", "Appointment") == ("actor",)


def test_compartment_params_practitioner_itself_def() -> None:
    assert compartment_params("Practitioner", "Practitioner") == ("{def}",)
    assert compartment_params("Practitioner", "PractitionerRole") == ("practitioner",)


def test_compartment_params_patient_link_and_multiple_params() -> None:
    assert compartment_params("Patient", "Patient") == ("link",)
    assert compartment_params("Patient", "Coverage") == (
        "policy-holder",
        "subscriber",
        "beneficiary",
        "payor",
    )


def test_compartment_params_not_in_compartment_empty() -> None:
    assert compartment_params("Patient", "Slot") == ()
    assert compartment_params("Device", "Appointment") == ()
    assert compartment_params("Patient", "NoSuchResource") == ()


def test_split_union_top_level_only() -> None:
    split_union = generator().split_union

    assert split_union("(A.value as Quantity) | (A.value as SampledData)") == [
        "(A.value as Quantity)",
        "(A.value as SampledData)",
    ]
    assert split_union("A.b.where(c = 'x|y') | B.c") == ["A.b.where(c = 'x|y')", "B.c"]
    assert split_union(" A.b ") == ["A.b"]


@pytest.mark.shared_data
def test_generate_definitions_matches_committed_file() -> None:
    definitions = shared_data() / "hl7-r4" / "definitions"
    document = generator().build(definitions)
    committed = (REPO / "resources" / "search_parameters.json").read_bytes()

    assert orjson.dumps(document, option=orjson.OPT_SORT_KEYS) + b"\n" == committed


@pytest.mark.shared_data
def test_generate_definitions_header_names_source_licence_and_script() -> None:
    definitions = shared_data() / "hl7-r4" / "definitions"

    assert generator().build(definitions)["header"] == {
        "source": "hl7.fhir.r4.examples 4.0.1 definitions: Bundle-searchParams.json, "
        "CompartmentDefinition-patient.json, CompartmentDefinition-practitioner.json",
        "licence": "CC0-1.0",
        "generator": "scripts/generate_definitions.py (do not edit by hand; re-run it)",
    }


@pytest.mark.shared_data
def test_generate_definitions_missing_folder_raises_file_not_found(tmp_path: Path) -> None:
    shared_data()
    with pytest.raises(FileNotFoundError):
        generator().build(tmp_path)
