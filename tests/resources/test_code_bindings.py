"""Required code bindings (`resources.code_bindings`) as `validate_resource` enforces them, and the
script that generates their R4 corrections (`scripts/generate_code_bindings.py`)."""

from __future__ import annotations

import importlib.util
import typing
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson
import pytest
from fhir.resources.R4B import get_fhir_model_class
from fhir_core.types import FhirBase

from resources.code_bindings import CodeBinding, required_binding
from resources.errors import Invalid, Issue
from resources.types import RESOURCE_TYPES
from resources.validation import validate_resource

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO.parent / "shared" / "data" / "hl7-r4" / "definitions" / "fhir.r4.schema.json"
GENDERS = "male, female, other, unknown"
SLOT_STATUSES = "busy, free, busy-unavailable, busy-tentative, entered-in-error"
PARTICIPANT_STATUSES = "accepted, declined, tentative, needs-action"


def refused(resource: dict[str, Any]) -> list[Issue]:
    """The issues of the 400 `validate_resource` raises for `resource`."""
    with pytest.raises(Invalid) as caught:
        validate_resource(resource)
    assert caught.value.status == 400
    return caught.value.issues


def code_issue(path: str, value: str, allowed: str) -> Issue:
    return Issue(
        "code-invalid",
        f"Code {value!r} is not allowed: use one of {allowed} (required binding)",
        expression=(path,),
    )


def slot(**fields: Any) -> dict[str, Any]:
    return {
        "resourceType": "Slot",
        "schedule": {"reference": "Schedule/s1"},
        "status": "free",
        "start": "2026-03-02T09:00:00Z",
        "end": "2026-03-02T09:30:00Z",
        **fields,
    }


def generator() -> ModuleType:
    """`scripts/generate_code_bindings.py` loaded as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location(
        "generate_code_bindings", REPO / "scripts" / "generate_code_bindings.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- validate_resource ------------------------------------------------------------------------


def test_validate_resource_unknown_gender_invalid_code_naming_allowed_codes() -> None:
    assert refused({"resourceType": "Patient", "gender": "bogus"}) == [
        code_issue("Patient.gender", "bogus", GENDERS)
    ]


def test_validate_resource_slot_status_maybe_invalid_code() -> None:
    assert refused(slot(status="maybe")) == [code_issue("Slot.status", "maybe", SLOT_STATUSES)]


def test_validate_resource_bad_appointment_codes_each_reported_with_index() -> None:
    resource = {
        "resourceType": "Appointment",
        "status": "foo",
        "participant": [
            {"status": "accepted", "actor": {"reference": "Patient/p1"}},
            {"status": "maybe", "actor": {"reference": "Practitioner/d1"}},
        ],
    }
    statuses = (
        "proposed, pending, booked, arrived, fulfilled, cancelled, noshow, entered-in-error, "
        "checked-in, waitlist"
    )
    assert refused(resource) == [
        code_issue("Appointment.status", "foo", statuses),
        code_issue("Appointment.participant[1].status", "maybe", PARTICIPANT_STATUSES),
    ]


def test_validate_resource_valid_codes_accepted() -> None:
    validate_resource(slot(status="busy-tentative"))
    validate_resource(
        {
            "resourceType": "Appointment",
            "status": "proposed",
            "participant": [{"status": "needs-action", "actor": {"reference": "Patient/p1"}}],
        }
    )


def test_validate_resource_code_case_differs_invalid_code() -> None:
    assert refused({"resourceType": "Patient", "gender": "Male"}) == [
        code_issue("Patient.gender", "Male", GENDERS)
    ]


def test_validate_resource_code_with_space_reported_once_as_code_invalid() -> None:
    assert refused({"resourceType": "Patient", "gender": "male "}) == [
        code_issue("Patient.gender", "male ", GENDERS)
    ]


def test_validate_resource_repeating_code_invalid_at_item_index() -> None:
    resource = {
        "resourceType": "Location",
        "hoursOfOperation": [{"daysOfWeek": ["mon", "monday"], "allDay": True}],
    }
    assert refused(resource) == [
        code_issue(
            "Location.hoursOfOperation[0].daysOfWeek[1]",
            "monday",
            "mon, tue, wed, thu, fri, sat, sun",
        )
    ]


def test_validate_resource_datatype_code_in_nested_resource_invalid_with_full_path() -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {
                "fullUrl": "urn:uuid:2f1c4a0e-5b7d-4c1e-9a3f-0d6b8e2c7a11",
                "resource": {
                    "resourceType": "Patient",
                    "telecom": [{"system": "telex", "value": "1"}],
                },
            }
        ],
    }
    assert refused(bundle) == [
        code_issue(
            "Bundle.entry[0].resource.telecom[0].system",
            "telex",
            "phone, fax, email, pager, url, sms, other",
        )
    ]


def test_validate_resource_primitive_extension_without_code_valid() -> None:
    extension = {"url": "http://example.org/why", "valueString": "not asked"}
    validate_resource({"resourceType": "Patient", "_gender": {"extension": [extension]}})


def test_validate_resource_bad_code_invalid_before_invariants_run() -> None:
    resource = {
        "resourceType": "Slot",
        "schedule": {"reference": "Schedule/s1"},
        "status": "open",
        "start": "2026-03-02T10:00:00Z",
        "end": "2026-03-02T09:00:00Z",  # start > end: a 422 once the structure is valid
    }
    assert refused(resource) == [code_issue("Slot.status", "open", SLOT_STATUSES)]


@pytest.mark.parametrize(
    ("resource_type", "fields"),
    [
        ("Observation", {"status": "unknown", "code": {"text": "x"}}),
        ("Observation", {"status": "entered-in-error", "code": {"text": "x"}}),
        ("Encounter", {"status": "entered-in-error", "class": {"code": "AMB"}}),
        ("Task", {"status": "completed", "intent": "order"}),
        ("DiagnosticReport", {"status": "corrected", "code": {"text": "x"}}),
    ],
)
def test_validate_resource_r4_code_missing_from_r4b_list_valid(
    resource_type: str, fields: dict[str, Any]
) -> None:
    validate_resource({"resourceType": resource_type, **fields})


def test_validate_resource_truncation_marker_as_code_invalid() -> None:
    issues = refused({"resourceType": "Observation", "status": "+", "code": {"text": "x"}})
    assert [(i.code, i.expression) for i in issues] == [("code-invalid", ("Observation.status",))]
    assert "amended, corrected, cancelled" in issues[0].diagnostics


def test_validate_resource_list_cut_short_without_r4_codes_unchecked() -> None:
    validate_resource({"resourceType": "DetectedIssue", "status": "cancelled"})


def test_validate_resource_extensible_expression_language_not_checked() -> None:
    expression = {"language": "text/javascript", "expression": "1 + 1"}
    extension = {"url": "http://example.org/calc", "valueExpression": expression}
    validate_resource({"resourceType": "Patient", "extension": [extension]})


def test_validate_resource_capability_statement_mime_type_format_not_checked() -> None:
    validate_resource(
        {
            "resourceType": "CapabilityStatement",
            "status": "active",
            "date": "2026-01-01",
            "kind": "instance",
            "fhirVersion": "4.0.1",
            "format": ["application/fhir+json", "xml"],
            "implementation": {"description": "scheduling server"},
        }
    )


# --- required_binding ---------------------------------------------------------------------------


def test_required_binding_enum_values_kept_in_order() -> None:
    extra = {"element_property": True, "enum_values": ["male", "female", "other", "unknown"]}
    assert required_binding("Patient", "gender", extra) == CodeBinding(
        codes=frozenset({"male", "female", "other", "unknown"}),
        ordered=("male", "female", "other", "unknown"),
    )


@pytest.mark.parametrize(
    "extra",
    [None, {}, {"element_property": True}, {"enum_values": []}, {"enum_values": "male"}],
)
def test_required_binding_without_enum_values_none(extra: object) -> None:
    assert required_binding("Patient", "gender", extra) is None


def test_required_binding_listed_r4_codes_replace_enum_values() -> None:
    extra = {"enum_values": ["registered", "preliminary", "final", "amended", "+"]}
    assert required_binding("Observation", "status", extra) == CodeBinding(
        codes=frozenset(
            {
                "registered",
                "preliminary",
                "final",
                "amended",
                "corrected",
                "cancelled",
                "entered-in-error",
                "unknown",
            }
        ),
        ordered=(
            "registered",
            "preliminary",
            "final",
            "amended",
            "corrected",
            "cancelled",
            "entered-in-error",
            "unknown",
        ),
    )


def test_required_binding_unchecked_element_none() -> None:
    extra = {"enum_values": ["text/cql", "text/fhirpath", "etc."]}
    assert required_binding("Expression", "language", extra) is None


def test_required_binding_unknown_list_cut_short_none() -> None:
    assert required_binding("Nothing", "status", {"enum_values": ["a", "b", "+"]}) is None


def test_code_binding_refusal_long_value_shortened() -> None:
    binding = CodeBinding(codes=frozenset({"a", "b"}), ordered=("a", "b"))
    assert binding.refusal("x" * 50) == (
        f"Code {'x' * 37 + '...'!r} is not allowed: use one of a, b (required binding)"
    )


def _enum_fields() -> dict[tuple[str, str], list[str]]:
    """`(model class, JSON name) -> enum_values` over every model the server validates."""
    out: dict[tuple[str, str], list[str]] = {}
    seen: set[Any] = set()

    def visit(model: Any) -> None:
        if model in seen:
            return
        seen.add(model)
        for name, info in model.model_fields.items():
            extra = info.json_schema_extra
            if isinstance(extra, dict) and isinstance(extra.get("enum_values"), list):
                out[model.__name__, info.alias or name] = extra["enum_values"]
            for arg in _leaf_types(info.annotation):
                if isinstance(arg, type) and issubclass(arg, FhirBase):
                    visit(arg.get_model_klass())

    for resource_type in sorted(RESOURCE_TYPES):
        visit(get_fhir_model_class(resource_type))
    return out


def _leaf_types(annotation: Any) -> list[Any]:
    args = typing.get_args(annotation)
    return [leaf for arg in args for leaf in _leaf_types(arg)] if args else [annotation]


def test_required_binding_every_enum_values_list_enforced_or_explained() -> None:
    unchecked = orjson.loads((REPO / "resources" / "code_bindings.json").read_bytes())["unchecked"]
    fields = _enum_fields()
    assert len(fields) > 300
    for (model, element), enum_values in fields.items():
        binding = required_binding(model, element, {"enum_values": enum_values})
        if binding is None:
            assert f"{model}.{element}" in unchecked
        else:
            assert set(enum_values) - {"+"} <= binding.codes, (model, element)


# --- scripts/generate_code_bindings.py ----------------------------------------------------------


@pytest.mark.shared_data
def test_generate_code_bindings_matches_committed_file() -> None:
    if not SCHEMA.exists():
        pytest.skip("needs ../shared/data (the shared data folder beside the repo)")
    document = generator().build(SCHEMA)
    committed = (REPO / "resources" / "code_bindings.json").read_bytes()

    assert orjson.dumps(document, option=orjson.OPT_SORT_KEYS) + b"\n" == committed


@pytest.mark.shared_data
def test_generate_code_bindings_header_names_source_licence_and_script() -> None:
    if not SCHEMA.exists():
        pytest.skip("needs ../shared/data (the shared data folder beside the repo)")

    assert generator().build(SCHEMA)["header"] == {
        "source": "HL7 FHIR R4 (4.0.1) JSON schema fhir.r4.schema.json (enum lists), compared "
        "with the enum_values of fhir.resources R4B models",
        "licence": "CC0-1.0 (HL7 FHIR R4)",
        "generator": "scripts/generate_code_bindings.py (do not edit by hand; re-run it)",
    }


def test_generate_code_bindings_missing_schema_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        generator().build(tmp_path / "fhir.r4.schema.json")
