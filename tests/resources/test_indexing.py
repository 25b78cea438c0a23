"""Write-time index extraction (`resources.indexing`): sort keys, compartments, the edges
(unknown types and zones, the resource left unchanged, unparsable expressions), and the whole
example data. Each datatype's conversion: test_indexing_strings_tokens.py,
test_indexing_dates.py, test_indexing_references.py, test_indexing_choices_quantities.py."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest

from resources import indexing
from resources.index_values import ResourceIndex, SortKey, TokenEntry
from resources.indexing import UNSUPPORTED_EXPRESSIONS, compartments_of, extract_index
from resources.search_parameters import SearchParamDef, search_params
from tests.resources.indexing_helpers import example, of, shared_data, sort_key, us

# --- sort keys --------------------------------------------------------------------------------


def test_sort_keys_smallest_ascending_largest_descending() -> None:
    request = {
        "resourceType": "ServiceRequest",
        "subject": {"reference": "Patient/b"},
        "code": {"coding": [{"system": "urn:s", "code": "B2"}, {"system": "urn:s", "code": "A1"}]},
        "occurrenceTiming": {"event": ["2026-03-01", "2026-01-01"]},
    }

    index = extract_index(request)

    assert sort_key(index, "occurrence") == SortKey("occurrence", us(2026, 1, 1), us(2026, 3, 2))
    assert sort_key(index, "code") == SortKey("code", "A1", "B2")
    assert sort_key(index, "subject") == SortKey("subject", "Patient/b", "Patient/b")
    assert sort_key(index, "authored") is None


@pytest.mark.shared_data
def test_sort_keys_hl7_patient_example_names_and_birthdate() -> None:
    index = extract_index(example("Patient-example"))

    assert sort_key(index, "family") == SortKey("family", "chalmers", "windsor")
    assert sort_key(index, "given") == SortKey("given", "james", "peter")
    assert sort_key(index, "birthdate") == SortKey("birthdate", us(1974, 12, 25), us(1974, 12, 26))
    assert [key.param for key in index.sort_keys] == list(
        dict.fromkeys(e.param for e in index.entries)
    )


# --- compartments -----------------------------------------------------------------------------


def test_compartments_patient_own_id_links_and_general_practitioner() -> None:
    patient = {
        "resourceType": "Patient",
        "id": "p1",
        "link": [{"other": {"reference": "Patient/p0"}, "type": "replaces"}],
        "generalPractitioner": [{"reference": "Practitioner/d1"}],
    }

    assert extract_index(patient).compartments == ("Patient/p0", "Patient/p1", "Practitioner/d1")


def test_compartments_practitioner_itself_and_practitioner_role() -> None:
    practitioner = {"resourceType": "Practitioner", "id": "d1"}
    role = {
        "resourceType": "PractitionerRole",
        "id": "r1",
        "practitioner": {"reference": "Practitioner/d1"},
    }

    assert extract_index(practitioner).compartments == ("Practitioner/d1",)
    assert extract_index(role).compartments == ("Practitioner/d1",)


def test_compartments_encounter_by_param_and_absolute_reference() -> None:
    encounter = {
        "resourceType": "Encounter",
        "subject": {"reference": "http://other.example.org/fhir/Patient/p9"},
        "participant": [{"individual": {"reference": "Practitioner/d2"}}],
        "serviceProvider": {"reference": "Organization/o1"},
    }

    # an absolute reference names a resource on another server: not this server's compartment
    assert extract_index(encounter).compartments == ("Practitioner/d2",)


def test_compartments_slot_and_patient_without_id_none() -> None:
    assert (
        extract_index(
            {"resourceType": "Slot", "id": "s1", "schedule": {"reference": "Schedule/x"}}
        ).compartments
        == ()
    )
    assert extract_index({"resourceType": "Patient"}).compartments == ()


# --- edges ------------------------------------------------------------------------------------


def test_extract_unknown_or_missing_resource_type_empty_index() -> None:
    assert extract_index({"resourceType": "NoSuchThing", "id": "x"}) == ResourceIndex((), ())
    assert extract_index({"id": "x"}) == ResourceIndex((), ())


def test_extract_unknown_default_zone_raises_value_error() -> None:
    with pytest.raises(ValueError, match=r"^unknown time zone 'Mars/Olympus'$"):
        extract_index({"resourceType": "Patient"}, "Mars/Olympus")


def test_extract_resource_left_unchanged() -> None:
    appointment = {
        "resourceType": "Appointment",
        "id": "a1",
        "participant": [{"actor": {"reference": "Patient/p1"}, "status": "accepted"}],
        "start": "2026-12-01T09:00:00Z",
    }
    before = copy.deepcopy(appointment)

    extract_index(appointment)

    assert appointment == before


@pytest.fixture
def broken_gender(monkeypatch: pytest.MonkeyPatch) -> Iterator[set[str]]:
    """Patient's `gender` replaced by an expression fhirpathpy cannot parse."""
    recorded: set[str] = set()
    broken = SearchParamDef("gender", "token", "Patient.gender.where(", (), "Patient-gender")
    real = search_params

    def patched(resource_type: str) -> dict[str, SearchParamDef]:
        return {**real(resource_type), "gender": broken}

    monkeypatch.setattr(indexing, "search_params", patched)
    monkeypatch.setattr(indexing, "UNSUPPORTED_EXPRESSIONS", recorded)
    indexing._plan.cache_clear()
    yield recorded
    indexing._plan.cache_clear()


def test_extract_unparsable_expression_skipped_and_recorded(broken_gender: set[str]) -> None:
    index = extract_index({"resourceType": "Patient", "id": "p1", "gender": "male"})

    assert of(index, "gender") == []
    assert of(index, "_id") == [TokenEntry("_id", None, "p1")]
    assert broken_gender == {"Patient.gender.where("}


# --- every example resource -------------------------------------------------------------------


def _check_all(resources: list[dict[str, Any]]) -> list[str]:
    """Extract every resource; the problems found (exceptions, missing `_id`)."""
    problems = []
    for resource in resources:
        label = f"{resource.get('resourceType')}/{resource.get('id')}"
        try:
            index = extract_index(resource, "America/New_York")
        except Exception as error:  # report them all, not just the first
            problems.append(f"{label}: {error!r}")
            continue
        if "id" in resource and of(index, "_id") != [TokenEntry("_id", None, resource["id"])]:
            problems.append(f"{label}: _id not indexed")
    return problems


@pytest.mark.shared_data
def test_extract_every_hl7_example_without_error() -> None:
    resources = []
    for path in sorted((shared_data() / "hl7-r4" / "examples").glob("*.json")):
        resource = json.loads(path.read_text())
        resources.append(resource)
        resources.extend(e["resource"] for e in resource.get("entry", ()) if "resource" in e)

    assert len(resources) > 92
    earlier = set(UNSUPPORTED_EXPRESSIONS)  # what other suites' data ran into (e.g. Synthea)
    UNSUPPORTED_EXPRESSIONS.clear()
    try:
        assert _check_all(resources) == []
        assert sorted(UNSUPPORTED_EXPRESSIONS) == []
    finally:
        UNSUPPORTED_EXPRESSIONS.update(earlier)


@pytest.mark.shared_data
def test_compartments_of_every_hl7_example_equals_the_full_extraction() -> None:
    resources = []
    for path in sorted((shared_data() / "hl7-r4" / "examples").glob("*.json")):
        resource = json.loads(path.read_text())
        resources.append(resource)
        resources.extend(e["resource"] for e in resource.get("entry", ()) if "resource" in e)
    in_some = [r for r in resources if extract_index(r).compartments]
    assert len(in_some) > 20
    for resource in resources:
        assert compartments_of(resource) == extract_index(resource).compartments, resource["id"]


@pytest.mark.shared_data
@pytest.mark.parametrize(
    "name", ["Patient", "Practitioner", "PractitionerRole", "Location", "Organization"]
)
def test_extract_every_synthea_line_without_error(name: str) -> None:
    path = shared_data() / "synthea-bulk-1000" / f"{name}.000.ndjson"
    resources = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    assert len(resources) >= 835
    assert _check_all(resources) == []
    assert sorted(UNSUPPORTED_EXPRESSIONS) == []
