"""Write-time index extraction (`resources.indexing`) of choice types (`value[x]` as Quantity
or CodeableConcept, SampledData, Age and dateTime), numbers, Money and Duration as
quantities, and uri, canonical and url values."""

from __future__ import annotations

from resources.index_values import (
    DATE_MAX,
    DateEntry,
    NumberEntry,
    QuantityEntry,
    SortKey,
    StringEntry,
    TokenEntry,
    UriEntry,
)
from resources.indexing import extract_index
from tests.resources.indexing_helpers import SECOND, of, sort_key, us


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
