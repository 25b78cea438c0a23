"""Write-time index extraction (`resources.indexing`) of strings and tokens: `normalize_string`
folding, HumanName and Address parts, plain strings, code/boolean/id primitives, Coding,
CodeableConcept, Identifier and ContactPoint."""

from __future__ import annotations

from typing import Any

import pytest

from resources.index_values import StringEntry, TokenEntry
from resources.indexing import extract_index, normalize_string
from tests.resources.indexing_helpers import of

# --- normalize_string -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "folded"),
    [
        ("  Peter   JAMES ", "peter james"),
        ("  Ångström\tÉLodie ", "angstrom elodie"),
        ("Straße", "strasse"),
        ("\ufb01le \uff2d\u00fcller", "file muller"),
        ("", ""),
    ],
)
def test_normalize_string_case_accents_whitespace_folded(text: str, folded: str) -> None:
    assert normalize_string(text) == folded


# --- string -----------------------------------------------------------------------------------


def test_extract_human_name_every_part_as_string_entries() -> None:
    patient = {
        "resourceType": "Patient",
        "name": [
            {
                "text": "Dr. Zoë van Dijk Jr.",
                "family": "van Dijk",
                "given": ["Zoë", "Anne"],
                "prefix": ["Dr."],
                "suffix": ["Jr."],
            }
        ],
    }

    index = extract_index(patient)

    assert of(index, "name") == [
        StringEntry("name", "van dijk", "van Dijk"),
        StringEntry("name", "zoe", "Zoë"),
        StringEntry("name", "anne", "Anne"),
        StringEntry("name", "dr.", "Dr."),
        StringEntry("name", "jr.", "Jr."),
        StringEntry("name", "dr. zoe van dijk jr.", "Dr. Zoë van Dijk Jr."),
    ]
    assert of(index, "family") == [StringEntry("family", "van dijk", "van Dijk")]
    assert of(index, "given") == [
        StringEntry("given", "zoe", "Zoë"),
        StringEntry("given", "anne", "Anne"),
    ]


def test_extract_address_every_part_as_string_entries() -> None:
    patient = {
        "resourceType": "Patient",
        "address": [
            {
                "use": "home",
                "text": "1 Rue X, Paris",
                "line": ["1 Rue X", "Bâtiment B"],
                "city": "Paris",
                "district": "IDF",
                "state": "Île-de-France",
                "postalCode": "75001",
                "country": "FR",
            }
        ],
    }

    index = extract_index(patient)

    assert of(index, "address") == [
        StringEntry("address", "1 rue x, paris", "1 Rue X, Paris"),
        StringEntry("address", "1 rue x", "1 Rue X"),
        StringEntry("address", "batiment b", "Bâtiment B"),
        StringEntry("address", "paris", "Paris"),
        StringEntry("address", "idf", "IDF"),
        StringEntry("address", "ile-de-france", "Île-de-France"),
        StringEntry("address", "75001", "75001"),
        StringEntry("address", "fr", "FR"),
    ]
    assert of(index, "address-city") == [StringEntry("address-city", "paris", "Paris")]
    assert of(index, "address-use") == [TokenEntry("address-use", None, "home")]


def test_extract_plain_strings_and_blank_skipped() -> None:
    location = {"resourceType": "Location", "name": "South Wing", "alias": ["SW", "  "]}

    assert of(extract_index(location), "name") == [
        StringEntry("name", "south wing", "South Wing"),
        StringEntry("name", "sw", "SW"),
    ]


# --- token ------------------------------------------------------------------------------------


def test_extract_code_boolean_and_id_primitives_as_tokens_without_system() -> None:
    patient = {"resourceType": "Patient", "id": "p1", "gender": "female", "active": False}

    index = extract_index(patient)

    assert of(index, "_id") == [TokenEntry("_id", None, "p1")]
    assert of(index, "gender") == [TokenEntry("gender", None, "female")]
    assert of(index, "active") == [TokenEntry("active", None, "false")]


@pytest.mark.parametrize(
    ("extra", "code"),
    [({}, "false"), ({"deceasedBoolean": False}, "false"), ({"deceasedDateTime": "2020"}, "true")],
)
def test_extract_deceased_expression_evaluated_as_written(extra: dict[str, Any], code: str) -> None:
    patient = {"resourceType": "Patient", **extra}

    assert of(extract_index(patient), "deceased") == [TokenEntry("deceased", None, code)]


def test_extract_coding_system_code_and_display_text() -> None:
    patient = {
        "resourceType": "Patient",
        "meta": {"tag": [{"system": "urn:t", "code": "VIP", "display": "Very Important"}]},
    }

    assert of(extract_index(patient), "_tag") == [
        TokenEntry("_tag", "urn:t", "VIP", "very important")
    ]


def test_extract_codeable_concept_codings_and_concept_text() -> None:
    slot = {
        "resourceType": "Slot",
        "serviceType": [
            {
                "coding": [
                    {"system": "urn:s", "code": "57", "display": "Immunisation"},
                    {"system": "urn:t", "code": "x"},
                ],
                "text": "Vaccination clinic",
            },
            {"text": "Walk-in"},
        ],
    }

    assert of(extract_index(slot), "service-type") == [
        TokenEntry("service-type", "urn:s", "57", "immunisation"),
        TokenEntry("service-type", "urn:t", "x", "vaccination clinic"),
        TokenEntry("service-type", None, None, "walk-in"),
    ]


def test_extract_identifier_system_value_and_type_text() -> None:
    patient = {
        "resourceType": "Patient",
        "identifier": [
            {"system": "urn:mrn", "value": "12345", "type": {"text": "Medical Record Number"}},
            {"value": "no-system"},
        ],
    }

    assert of(extract_index(patient), "identifier") == [
        TokenEntry("identifier", "urn:mrn", "12345", "medical record number"),
        TokenEntry("identifier", None, "no-system"),
    ]


def test_extract_contact_point_value_as_code_filtered_by_system() -> None:
    practitioner = {
        "resourceType": "Practitioner",
        "telecom": [
            {"system": "phone", "value": "555-0100", "use": "work"},
            {"system": "email", "value": "a@example.org"},
            {"use": "home"},
        ],
    }

    index = extract_index(practitioner)

    assert of(index, "telecom") == [
        TokenEntry("telecom", None, "555-0100"),
        TokenEntry("telecom", None, "a@example.org"),
    ]
    assert of(index, "phone") == [TokenEntry("phone", None, "555-0100")]
    assert of(index, "email") == [TokenEntry("email", None, "a@example.org")]
