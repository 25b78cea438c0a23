"""Write-time index extraction (`resources.indexing`): every datatype conversion, resolve()
filtering, choice types, dates in zones, sort keys, compartments, and the whole example data."""

from __future__ import annotations

import copy
import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from resources import indexing
from resources.index_values import (
    DATE_MAX,
    DATE_MIN,
    DateEntry,
    IndexEntry,
    NumberEntry,
    QuantityEntry,
    ReferenceEntry,
    ResourceIndex,
    SortKey,
    StringEntry,
    TokenEntry,
    UriEntry,
)
from resources.indexing import (
    UNSUPPORTED_EXPRESSIONS,
    compartments_of,
    extract_index,
    normalize_string,
)
from resources.search_parameters import SearchParamDef, search_params

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
SECOND = 1_000_000
DAY = 86_400 * SECOND


def shared_data() -> Path:
    """`../shared/data` beside the repo, or skip the test when it is absent."""
    path = Path(__file__).resolve().parents[2].parent / "shared" / "data"
    if not path.is_dir():
        pytest.skip("needs ../shared/data (the shared data folder beside the repo)")
    return path


def example(name: str) -> dict[str, Any]:
    resource: dict[str, Any] = json.loads(
        (shared_data() / "hl7-r4" / "examples" / f"{name}.json").read_text()
    )
    return resource


def us(
    year: int,
    month: int,
    day: int,
    hour: int = 0,
    minute: int = 0,
    second: int = 0,
    micro: int = 0,
    tz: str = "UTC",
) -> int:
    """µs since the epoch of a wall-clock time in `tz`, computed with the stdlib alone."""
    moment = dt.datetime(year, month, day, hour, minute, second, micro, tzinfo=ZoneInfo(tz))
    return (moment - EPOCH) // dt.timedelta(microseconds=1)


def of(index: ResourceIndex, param: str) -> list[IndexEntry]:
    return [entry for entry in index.entries if entry.param == param]


def sort_key(index: ResourceIndex, param: str) -> SortKey | None:
    return next((key for key in index.sort_keys if key.param == param), None)


def ref(
    param: str, ref_type: str | None, ref_id: str | None, url: str | None = None
) -> ReferenceEntry:
    return ReferenceEntry(param=param, ref_type=ref_type, ref_id=ref_id, url=url)


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


# --- date -------------------------------------------------------------------------------------


def test_extract_date_datetime_and_instant_ranges_by_precision() -> None:
    appointment = {
        "resourceType": "Appointment",
        "meta": {"lastUpdated": "2026-11-22T04:33:41.123+00:00"},
        "start": "2026-12-01T09:00:00+01:00",
        "end": "2026-12-01T09:15:00+01:00",
    }

    index = extract_index(appointment)

    assert of(index, "_lastUpdated") == [
        DateEntry(
            "_lastUpdated", us(2026, 11, 22, 4, 33, 41, 123000), us(2026, 11, 22, 4, 33, 41, 124000)
        )
    ]
    assert of(index, "date") == [DateEntry("date", us(2026, 12, 1, 8), us(2026, 12, 1, 8) + SECOND)]


def test_extract_date_only_in_default_zone_whole_local_day() -> None:
    patient = {"resourceType": "Patient", "birthDate": "1990-07-01"}

    assert of(extract_index(patient, "America/New_York"), "birthdate") == [
        DateEntry("birthdate", us(1990, 7, 1, 4), us(1990, 7, 2, 4))
    ]


def test_extract_datetime_without_offset_in_dst_zone_uses_local_offset() -> None:
    summer = {"resourceType": "Slot", "start": "2026-07-01T09:00:00"}
    winter = {"resourceType": "Slot", "start": "2026-01-15T09:00:00"}

    assert of(extract_index(summer, "Europe/Paris"), "start") == [
        DateEntry("start", us(2026, 7, 1, 7), us(2026, 7, 1, 7) + SECOND)
    ]
    assert of(extract_index(winter, "Europe/Paris"), "start") == [
        DateEntry("start", us(2026, 1, 15, 8), us(2026, 1, 15, 8) + SECOND)
    ]


def test_extract_period_both_ends_and_open_ends() -> None:
    both = {
        "resourceType": "Schedule",
        "planningHorizon": {"start": "2026-12", "end": "2026-12-31"},
    }
    start_only = {"resourceType": "PractitionerRole", "period": {"start": "2012-01-01"}}
    end_only = {"resourceType": "PractitionerRole", "period": {"end": "2012-03-31"}}

    assert of(extract_index(both), "date") == [DateEntry("date", us(2026, 12, 1), us(2027, 1, 1))]
    assert of(extract_index(start_only), "date") == [DateEntry("date", us(2012, 1, 1), DATE_MAX)]
    assert of(extract_index(end_only), "date") == [DateEntry("date", DATE_MIN, us(2012, 4, 1))]


def test_extract_timing_each_event() -> None:
    request = {
        "resourceType": "ServiceRequest",
        "occurrenceTiming": {"event": ["2026-01-01", "2026-02-01T10:00:00Z"]},
    }

    assert of(extract_index(request), "occurrence") == [
        DateEntry("occurrence", us(2026, 1, 1), us(2026, 1, 2)),
        DateEntry("occurrence", us(2026, 2, 1, 10), us(2026, 2, 1, 10) + SECOND),
    ]


def test_extract_invalid_date_and_extension_only_date_skipped() -> None:
    invalid = {"resourceType": "Patient", "birthDate": "1990-02-30"}
    extension_only = {
        "resourceType": "Patient",
        "_birthDate": {"extension": [{"url": "urn:x", "valueString": "unknown"}]},
    }

    assert of(extract_index(invalid), "birthdate") == []
    assert of(extract_index(extension_only), "birthdate") == []


# --- reference --------------------------------------------------------------------------------


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


# --- choice types, number, quantity, uri ------------------------------------------------------


def test_extract_choice_as_quantity_and_as_codeable_concept() -> None:
    quantity = {
        "resourceType": "Observation",
        "valueQuantity": {
            "value": 5.5,
            "unit": "mg",
            "system": "http://unitsofmeasure.org",
            "code": "mg",
        },
        "effectiveDateTime": "2026-01-01T10:00:00+02:00",
    }
    concept = {
        "resourceType": "Observation",
        "valueCodeableConcept": {
            "coding": [{"system": "urn:s", "code": "pos"}],
            "text": "Positive",
        },
        "effectivePeriod": {"start": "2026-01-01"},
    }

    quantity_index, concept_index = extract_index(quantity), extract_index(concept)

    assert of(quantity_index, "value-quantity") == [
        QuantityEntry("value-quantity", 5.5, "http://unitsofmeasure.org", "mg", "mg")
    ]
    assert of(quantity_index, "value-concept") == []
    assert of(quantity_index, "date") == [
        DateEntry("date", us(2026, 1, 1, 8), us(2026, 1, 1, 8) + SECOND)
    ]
    assert of(concept_index, "value-concept") == [
        TokenEntry("value-concept", "urn:s", "pos", "positive")
    ]
    assert of(concept_index, "value-string") == [
        StringEntry("value-string", "positive", "Positive")
    ]
    assert of(concept_index, "value-quantity") == []
    assert of(concept_index, "date") == [DateEntry("date", us(2026, 1, 1), DATE_MAX)]


def test_extract_choice_sampled_data_not_a_quantity() -> None:
    observation = {
        "resourceType": "Observation",
        "valueSampledData": {"origin": {"value": 0}, "period": 10, "dimensions": 1},
    }

    assert of(extract_index(observation), "value-quantity") == []


def test_extract_choice_function_as_date_and_age() -> None:
    condition = {
        "resourceType": "Condition",
        "onsetAge": {"value": 52, "unit": "yr", "system": "http://unitsofmeasure.org", "code": "a"},
        "abatementDateTime": "2020-05",
    }

    index = extract_index(condition)

    assert of(index, "onset-age") == [
        QuantityEntry("onset-age", 52.0, "http://unitsofmeasure.org", "a", "yr")
    ]
    assert of(index, "onset-date") == []
    assert of(index, "abatement-date") == [
        DateEntry("abatement-date", us(2020, 5, 1), us(2020, 6, 1))
    ]


def test_extract_number_decimal_and_integer() -> None:
    risk = {
        "resourceType": "RiskAssessment",
        "prediction": [{"probabilityDecimal": 0.25}, {"probabilityRange": {"low": {"value": 1}}}],
    }
    sequence = {"resourceType": "MolecularSequence", "variant": [{"start": 7}, {"start": 3}]}

    assert of(extract_index(risk), "probability") == [NumberEntry("probability", 0.25)]
    assert of(extract_index(sequence), "variant-start") == [
        NumberEntry("variant-start", 7.0),
        NumberEntry("variant-start", 3.0),
    ]
    assert sort_key(extract_index(sequence), "variant-start") == SortKey("variant-start", 3.0, 7.0)


def test_extract_money_and_duration_as_quantities() -> None:
    invoice = {"resourceType": "Invoice", "totalGross": {"value": 10.5, "currency": "EUR"}}
    encounter = {"resourceType": "Encounter", "length": {"value": 30, "unit": "min", "code": "min"}}

    assert of(extract_index(invoice), "totalgross") == [
        QuantityEntry("totalgross", 10.5, "urn:iso:std:iso:4217", "EUR", None)
    ]
    assert of(extract_index(encounter), "length") == [
        QuantityEntry("length", 30.0, None, "min", "min")
    ]


def test_extract_uri_canonical_and_url_values() -> None:
    patient = {
        "resourceType": "Patient",
        "meta": {
            "profile": ["http://hl7.org/fhir/StructureDefinition/Patient"],
            "source": "urn:src#1",
        },
    }
    subscription = {
        "resourceType": "Subscription",
        "channel": {"endpoint": "https://hook.example.org/x"},
    }

    assert of(extract_index(patient), "_profile") == [
        UriEntry("_profile", "http://hl7.org/fhir/StructureDefinition/Patient")
    ]
    assert of(extract_index(patient), "_source") == [UriEntry("_source", "urn:src#1")]
    assert of(extract_index(subscription), "url") == [UriEntry("url", "https://hook.example.org/x")]


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
    assert _check_all(resources) == []
    assert sorted(UNSUPPORTED_EXPRESSIONS) == []


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
