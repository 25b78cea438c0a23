"""Extension readers and StructureDefinitions (`operations.scheduling.extensions`)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class

from operations.scheduling.definitions import structure_definitions
from operations.scheduling.extensions import (
    DEFAULT_BASE,
    DEFAULT_VISIT_US,
    SLOT_CAPACITY_URL,
    TIMEZONE_URL,
    UCUM,
    AvailabilityEntry,
    BookingParameters,
    ExtensionError,
    availability_entries,
    booking_parameters,
    buffer_after_us,
    buffer_before_us,
    extension_url,
    max_bookings_per_day,
    slot_capacity,
    timezone_code,
    visit_duration_us,
)
from resources.validation import validate_resource
from tests.conftest import shared_data

MINUTE = 60_000_000
OTHER_BASE = "https://scheduling.hospital.example/fhir/StructureDefinition"


def minutes(ext_id: str, value: Any, code: str = "min", base: str = DEFAULT_BASE) -> dict[str, Any]:
    duration = {"value": value, "unit": "min", "system": UCUM, "code": code}
    return {"url": extension_url(ext_id, base), "valueDuration": duration}


def rule(*parts: tuple[str, str, Any], base: str = DEFAULT_BASE) -> dict[str, Any]:
    return {
        "url": extension_url("schedule-availability", base),
        "extension": [{"url": name, key: value} for name, key, value in parts],
    }


def schedule(*extensions: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Schedule",
        "id": "s1",
        "extension": list(extensions),
        "actor": [{"reference": "Practitioner/p1"}],
    }


def test_extension_url_trailing_slash_single_separator() -> None:
    assert extension_url("visit-duration", OTHER_BASE + "/") == f"{OTHER_BASE}/visit-duration"


def test_timezone_code_present_returns_code_absent_none() -> None:
    located = {"extension": [{"url": TIMEZONE_URL, "valueCode": "Europe/Berlin"}]}
    assert timezone_code(located) == "Europe/Berlin"
    assert timezone_code({}) is None


def test_timezone_code_wrong_value_type_raises() -> None:
    with pytest.raises(ExtensionError, match="valueCode"):
        timezone_code({"extension": [{"url": TIMEZONE_URL, "valueString": "UTC"}]})


def test_slot_capacity_absent_defaults_to_one() -> None:
    assert slot_capacity({"resourceType": "Slot"}) == 1


@pytest.mark.parametrize(
    "bad", [{"valueInteger": -1}, {"valueInteger": True}, {"valueString": "3"}]
)
def test_slot_capacity_malformed_raises(bad: dict[str, Any]) -> None:
    with pytest.raises(ExtensionError, match="slot-capacity"):
        slot_capacity({"extension": [{"url": SLOT_CAPACITY_URL, **bad}]})


@pytest.mark.shared_data
def test_slot_capacity_smart_scheduling_links_slots_read_100() -> None:
    path = shared_data("smart-scheduling-links", "slots-2021-W09.ndjson")
    with path.open() as lines:
        slots = [json.loads(line) for _, line in zip(range(20), lines, strict=False)]
    assert {slot_capacity(slot) for slot in slots} == {100}


def test_visit_duration_minutes_returns_us() -> None:
    assert visit_duration_us(schedule(minutes("visit-duration", 20))) == 20 * MINUTE
    assert visit_duration_us(schedule(minutes("visit-duration", 7.5))) == 450_000_000
    assert visit_duration_us(schedule()) is None


def test_visit_duration_other_base_only_reads_that_base() -> None:
    resource = schedule(minutes("visit-duration", 45, base=OTHER_BASE))
    assert visit_duration_us(resource) is None
    assert visit_duration_us(resource, OTHER_BASE) == 45 * MINUTE


@pytest.mark.parametrize(
    ("extension", "message"),
    [
        (minutes("visit-duration", 30, code="h"), "UCUM minutes"),
        (minutes("visit-duration", 0), "out of range"),
        (minutes("visit-duration", "30"), "numeric"),
        ({"url": extension_url("visit-duration"), "valueInteger": 30}, "valueDuration"),
    ],
)
def test_visit_duration_malformed_raises(extension: dict[str, Any], message: str) -> None:
    with pytest.raises(ExtensionError, match=message):
        visit_duration_us(schedule(extension))


def test_buffers_zero_allowed_negative_raises() -> None:
    resource = schedule(minutes("buffer-before", 0), minutes("buffer-after", 10))
    assert buffer_before_us(resource) == 0
    assert buffer_after_us(resource) == 10 * MINUTE
    with pytest.raises(ExtensionError, match="out of range"):
        buffer_after_us(schedule(minutes("buffer-after", -5)))


def test_max_bookings_per_day_positive_int_read_zero_raises() -> None:
    url = extension_url("max-bookings-per-day")
    assert max_bookings_per_day(schedule({"url": url, "valuePositiveInt": 8})) == 8
    with pytest.raises(ExtensionError, match="positiveInt"):
        max_bookings_per_day(schedule({"url": url, "valuePositiveInt": 0}))


def test_availability_entries_one_per_rule_in_document_order() -> None:
    resource = schedule(
        rule(
            ("daysOfWeek", "valueCode", "mon"),
            ("daysOfWeek", "valueCode", "wed"),
            ("availableStartTime", "valueTime", "09:00:00"),
            ("availableEndTime", "valueTime", "12:00:00"),
            ("comment", "valueString", "unknown parts are ignored"),
        ),
        minutes("visit-duration", 15),
        rule(("daysOfWeek", "valueCode", "sat"), ("allDay", "valueBoolean", True)),
    )
    assert availability_entries(resource) == [
        AvailabilityEntry(("mon", "wed"), False, "09:00:00", "12:00:00"),
        AvailabilityEntry(("sat",), True, None, None),
    ]


def test_availability_entries_repeated_single_part_raises() -> None:
    twice = rule(("allDay", "valueBoolean", True), ("allDay", "valueBoolean", False))
    with pytest.raises(ExtensionError, match="repeats 'allDay'"):
        availability_entries(schedule(twice))


def test_availability_entries_wrong_value_type_raises() -> None:
    with pytest.raises(ExtensionError, match="valueTime"):
        availability_entries(schedule(rule(("availableStartTime", "valueString", "09:00"))))


def test_booking_parameters_each_from_schedule_then_service_then_default() -> None:
    url = extension_url("max-bookings-per-day")
    service = {
        "resourceType": "HealthcareService",
        "extension": [
            minutes("visit-duration", 45),
            minutes("buffer-after", 5),
            {"url": url, "valuePositiveInt": 12},
        ],
    }
    resource = schedule(minutes("visit-duration", 20), {"url": url, "valuePositiveInt": 6})
    assert booking_parameters(resource, [service]) == BookingParameters(
        visit_us=20 * MINUTE, buffer_before_us=0, buffer_after_us=5 * MINUTE, max_per_day=6
    )
    assert booking_parameters(schedule()) == BookingParameters(DEFAULT_VISIT_US, 0, 0, None)


@pytest.mark.parametrize("base", [DEFAULT_BASE, OTHER_BASE])
def test_structure_definitions_valid_r4_extension_definitions(base: str) -> None:
    model = get_fhir_model_class("StructureDefinition")
    definitions = structure_definitions(base)
    assert [sd["id"] for sd in definitions] == [
        "schedule-availability",
        "visit-duration",
        "buffer-before",
        "buffer-after",
        "max-bookings-per-day",
        "hold-expires",
        "proposal-expires",
        "reminder-opt-out",
        "waitlist-replaces",
        "waitlist-offer",
    ]
    for sd in definitions:
        parsed: Any = model.model_validate(sd)
        validate_resource(sd)
        assert parsed.url == f"{base}/{sd['id']}"
        assert (parsed.kind, parsed.type, parsed.derivation) == (
            "complex-type",
            "Extension",
            "constraint",
        )
        assert parsed.baseDefinition == "http://hl7.org/fhir/StructureDefinition/Extension"
        assert parsed.context
        fixed = [e for e in sd["differential"]["element"] if e["id"] == "Extension.url"]
        assert fixed == [{"id": "Extension.url", "path": "Extension.url", "fixedUri": parsed.url}]


def test_structure_definitions_contexts_match_the_spec() -> None:
    contexts = {
        sd["id"]: [c["expression"] for c in sd["context"]] for sd in structure_definitions()
    }
    assert contexts == {
        "schedule-availability": ["Schedule"],
        "visit-duration": ["Schedule", "HealthcareService"],
        "buffer-before": ["Schedule", "HealthcareService"],
        "buffer-after": ["Schedule", "HealthcareService"],
        "max-bookings-per-day": ["Schedule", "HealthcareService"],
        "hold-expires": ["Appointment"],
        "proposal-expires": ["Appointment"],
        "reminder-opt-out": ["Patient"],
        "waitlist-replaces": ["Appointment"],
        "waitlist-offer": ["Appointment"],
    }


def test_structure_definitions_availability_slices_every_part() -> None:
    availability = structure_definitions()[0]
    slices = {
        e["sliceName"]: e["max"]
        for e in availability["differential"]["element"]
        if "sliceName" in e
    }
    assert slices == {
        "daysOfWeek": "*",
        "allDay": "1",
        "availableStartTime": "1",
        "availableEndTime": "1",
    }


def test_schedule_with_every_extension_is_valid_r4_and_read_back() -> None:
    url = extension_url("max-bookings-per-day")
    resource = schedule(
        rule(
            ("daysOfWeek", "valueCode", "mon"),
            ("availableStartTime", "valueTime", "09:00:00"),
            ("availableEndTime", "valueTime", "17:00:00"),
        ),
        minutes("visit-duration", 20),
        minutes("buffer-before", 5),
        minutes("buffer-after", 5),
        {"url": url, "valuePositiveInt": 10},
        {"url": TIMEZONE_URL, "valueCode": "Europe/Berlin"},
    )
    validate_resource(resource)
    assert booking_parameters(resource) == BookingParameters(
        20 * MINUTE, 5 * MINUTE, 5 * MINUTE, 10
    )
    assert timezone_code(resource) == "Europe/Berlin"
