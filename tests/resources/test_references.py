"""The one reference parser (`resources.references`): every spelling of a reference to this
server resolves to one key; foreign, contained and `urn:` references never do."""

from __future__ import annotations

import pytest

from resources.references import local_key, normalize_base, parse_reference

BASES = ("http://test/fhir",)


@pytest.mark.parametrize(
    ("text", "kind", "key", "version"),
    [
        ("Patient/7", "local", "Patient/7", None),
        ("Patient/7/_history/2", "local", "Patient/7", "2"),
        ("http://test/fhir/Patient/7", "local", "Patient/7", None),
        ("HTTP://TEST/fhir/Patient/7/_history/3", "local", "Patient/7", "3"),
        ("http://test/fhir/Patient/7/", "other", None, None),
        ("https://other.example/fhir/Patient/7", "foreign", None, None),
        ("http://test/other/Patient/7", "foreign", None, None),
        ("#p1", "contained", None, None),
        ("urn:uuid:9d7b1c1e-0000-4000-8000-000000000001", "urn", None, None),
        ("Unknown/7", "other", None, None),
        ("Patient/7/extra", "other", None, None),
        ("http://hl7.org/fhir/StructureDefinition/timezone", "foreign", None, None),
        ("Patient/with space", "other", None, None),
    ],
)
def test_parse_reference_every_spelling(
    text: str, kind: str, key: str | None, version: str | None
) -> None:
    found = parse_reference(text, BASES)
    assert (found.kind, found.key, found.version) == (kind, key, version)


def test_parse_reference_absolute_without_bases_is_foreign() -> None:
    found = parse_reference("http://test/fhir/Patient/7")
    assert (found.kind, found.resource_type, found.id, found.base) == (
        "foreign",
        "Patient",
        "7",
        "http://test/fhir",
    )


def test_local_key_of_reference_objects() -> None:
    assert local_key({"reference": "http://test/fhir/Schedule/s/_history/9"}, BASES) == "Schedule/s"
    assert local_key({"identifier": {"value": "x"}}, BASES) is None
    assert local_key(None, BASES) is None


def test_normalize_base_case_and_trailing_slash() -> None:
    assert normalize_base("HTTP://Host:8080/fhir/") == "http://host:8080/fhir"
    assert normalize_base("http://host/FHIR") == "http://host/FHIR"  # paths keep their case
