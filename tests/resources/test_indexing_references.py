"""Write-time index extraction (`resources.indexing`) of references: every literal form,
identifier references, canonicals in reference parameters, resolve() filtering by type, and
the HL7 Appointment example."""

from __future__ import annotations

import pytest

from resources.index_values import ReferenceEntry, SortKey
from resources.indexing import extract_index
from tests.resources.indexing_helpers import example, of, ref, sort_key


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("Schedule/s1", ref("schedule", "Schedule", "s1")),
        ("Schedule/s1/_history/3", ref("schedule", "Schedule", "s1")),
        (
            "https://fhir.example.org/r4/Schedule/s1",
            ref("schedule", None, None, "https://fhir.example.org/r4/Schedule/s1"),
        ),
        (
            "http://x.org/fhir/Schedule/s1/_history/2",
            ref("schedule", None, None, "http://x.org/fhir/Schedule/s1/_history/2"),
        ),
        ("#sched", ref("schedule", None, None, "#sched")),
        (
            "urn:uuid:9d6e6c1a-1b0c-4c3b-9e3a-5f0e1b2c3d4e",
            ref("schedule", None, None, "urn:uuid:9d6e6c1a-1b0c-4c3b-9e3a-5f0e1b2c3d4e"),
        ),
        (
            "http://x.org/things/Widget/1",
            ref("schedule", None, None, "http://x.org/things/Widget/1"),
        ),
    ],
)
def test_extract_reference_literal_forms(reference: str, expected: ReferenceEntry) -> None:
    slot = {"resourceType": "Slot", "schedule": {"reference": reference}}

    assert of(extract_index(slot), "schedule") == [expected]


def test_extract_reference_identifier_alone_and_beside_literal() -> None:
    identifier_only = {
        "resourceType": "Slot",
        "schedule": {"identifier": {"system": "urn:sched", "value": "S-1"}},
    }
    both = {
        "resourceType": "Slot",
        "schedule": {"reference": "Schedule/s1", "identifier": {"value": "S-1"}},
    }

    assert of(extract_index(identifier_only), "schedule") == [
        ReferenceEntry("schedule", None, None, None, "urn:sched", "S-1")
    ]
    assert of(extract_index(both), "schedule") == [
        ReferenceEntry("schedule", "Schedule", "s1", None, None, "S-1")
    ]
    assert sort_key(extract_index(identifier_only), "schedule") == SortKey("schedule", None, None)


def test_extract_canonical_in_reference_param_as_url() -> None:
    response = {
        "resourceType": "QuestionnaireResponse",
        "questionnaire": "http://example.org/Questionnaire/intake|2.0",
    }

    assert of(extract_index(response), "questionnaire") == [
        ref("questionnaire", None, None, "http://example.org/Questionnaire/intake|2.0")
    ]


def test_extract_resolve_filter_keeps_references_of_the_named_type() -> None:
    appointment = {
        "resourceType": "Appointment",
        "contained": [{"resourceType": "Patient", "id": "pc"}],
        "participant": [
            {"actor": {"reference": "Patient/p1"}},
            {"actor": {"reference": "Practitioner/d1"}},
            {"actor": {"reference": "PractitionerRole/r1"}},
            {"actor": {"reference": "Location/l1"}},
            {"actor": {"reference": "#pc"}},
            {"actor": {"type": "Patient", "identifier": {"system": "urn:mrn", "value": "7"}}},
            {"actor": {"display": "someone"}},
        ],
    }

    index = extract_index(appointment)

    assert of(index, "patient") == [
        ref("patient", "Patient", "p1"),
        ref("patient", None, None, "#pc"),
        ReferenceEntry("patient", None, None, None, "urn:mrn", "7"),
    ]
    assert of(index, "practitioner") == [ref("practitioner", "Practitioner", "d1")]
    assert of(index, "location") == [ref("location", "Location", "l1")]
    assert of(index, "actor") == [
        ref("actor", "Patient", "p1"),
        ref("actor", "Practitioner", "d1"),
        ref("actor", "PractitionerRole", "r1"),
        ref("actor", "Location", "l1"),
        ref("actor", None, None, "#pc"),
        ReferenceEntry("actor", None, None, None, "urn:mrn", "7"),
    ]


@pytest.mark.shared_data
def test_extract_hl7_appointment_patient_and_practitioner_separated() -> None:
    index = extract_index(example("Appointment-example"))

    assert of(index, "patient") == [ref("patient", "Patient", "example")]
    assert of(index, "practitioner") == [ref("practitioner", "Practitioner", "example")]
    assert of(index, "actor") == [
        ref("actor", "Patient", "example"),
        ref("actor", "Practitioner", "example"),
        ref("actor", "Location", "1"),
    ]
    assert index.compartments == ("Patient/example", "Practitioner/example")
