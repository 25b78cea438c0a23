"""Tests for resources.summary: `_summary` and `_elements` (R4 `search.html#summary`)."""

from __future__ import annotations

import copy
import importlib
import pkgutil
from typing import Any

import pytest
from fhir.resources import R4B

from resources.errors import Invalid
from resources.summary import _resource_shape, apply_elements, apply_summary

SUBSETTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
}
DIV = '<div xmlns="http://www.w3.org/1999/xhtml">Peter Chalmers</div>'


def _patient() -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": "p1",
        "meta": {"versionId": "3", "tag": [{"system": "urn:t", "code": "vip"}]},
        "text": {"status": "generated", "div": DIV},
        "extension": [{"url": "urn:e", "valueString": "x"}],
        "identifier": [{"system": "urn:mrn", "value": "12345"}],
        "active": True,
        "name": [{"family": "Chalmers", "given": ["Peter"]}],
        "gender": "male",
        "birthDate": "1974-12-25",
        "_birthDate": {
            "extension": [{"url": "urn:birthTime", "valueDateTime": "1974-12-25T14:35:45-05:00"}]
        },
        "deceasedBoolean": False,
        "maritalStatus": {"text": "married"},
        "contact": [{"name": {"family": "Chalmers"}}],
        "communication": [{"language": {"text": "English"}}],
        "managingOrganization": {"reference": "Organization/1"},
        "link": [{"other": {"reference": "Patient/p2"}, "type": "seealso", "id": "l1"}],
    }


def _appointment() -> dict[str, Any]:
    return {
        "resourceType": "Appointment",
        "id": "a1",
        "text": {"status": "generated", "div": DIV},
        "status": "booked",
        "serviceType": [{"text": "GP"}],
        "description": "Follow-up",
        "start": "2026-12-01T09:00:00Z",
        "end": "2026-12-01T09:30:00Z",
        "slot": [{"reference": "Slot/1"}],
        "comment": "bring results",
        "participant": [
            {
                "type": [{"text": "attender"}],
                "actor": {"reference": "Practitioner/7"},
                "required": "required",
                "status": "accepted",
                "period": {"start": "2026-12-01T09:00:00Z"},
            },
            {"actor": {"reference": "Patient/p1"}, "status": "accepted"},
        ],
    }


def _slot() -> dict[str, Any]:
    return {
        "resourceType": "Slot",
        "id": "s1",
        "text": {"status": "generated", "div": DIV},
        "serviceType": [{"text": "GP"}],
        "schedule": {"reference": "Schedule/7"},
        "status": "free",
        "start": "2026-12-01T09:00:00Z",
        "end": "2026-12-01T09:30:00Z",
        "overbooked": False,
        "comment": "walk-ins welcome",
    }


def test_summary_true_patient_keeps_summary_elements_tagged() -> None:
    patient = _patient()
    pristine = copy.deepcopy(patient)

    result = apply_summary(patient, "true")

    assert patient == pristine
    assert result == {
        "resourceType": "Patient",
        "id": "p1",
        "meta": {"versionId": "3", "tag": [{"system": "urn:t", "code": "vip"}, SUBSETTED]},
        "identifier": [{"system": "urn:mrn", "value": "12345"}],
        "active": True,
        "name": [{"family": "Chalmers", "given": ["Peter"]}],
        "gender": "male",
        "birthDate": "1974-12-25",
        "_birthDate": pristine["_birthDate"],
        "deceasedBoolean": False,
        "managingOrganization": {"reference": "Organization/1"},
        "link": [{"other": {"reference": "Patient/p2"}, "type": "seealso"}],
    }
    assert list(result)[:3] == ["resourceType", "id", "meta"]


def test_summary_text_patient_keeps_text_id_meta() -> None:
    result = apply_summary(_patient(), "text")

    assert result == {
        "resourceType": "Patient",
        "id": "p1",
        "meta": {"versionId": "3", "tag": [{"system": "urn:t", "code": "vip"}, SUBSETTED]},
        "text": {"status": "generated", "div": DIV},
    }


def test_summary_data_patient_removes_only_text() -> None:
    patient = _patient()

    result = apply_summary(patient, "data")

    expected = {k: v for k, v in patient.items() if k != "text"}
    expected["meta"] = {"versionId": "3", "tag": [{"system": "urn:t", "code": "vip"}, SUBSETTED]}
    assert result == expected


def test_summary_false_patient_returns_equal_copy_untagged() -> None:
    patient = _patient()

    result = apply_summary(patient, "false")

    assert result == patient
    assert result is not patient


def test_summary_data_without_text_nothing_removed_untagged() -> None:
    slot = {k: v for k, v in _slot().items() if k != "text"}

    assert apply_summary(slot, "data") == slot


def test_summary_true_already_subsetted_tag_not_duplicated() -> None:
    slot = {**_slot(), "meta": {"tag": [SUBSETTED]}}

    result = apply_summary(slot, "true")

    assert result["meta"] == {"tag": [SUBSETTED]}


def test_summary_true_appointment_keeps_mandatory_participant_summary_parts() -> None:
    appointment = _appointment()
    pristine = copy.deepcopy(appointment)

    result = apply_summary(appointment, "true")

    assert appointment == pristine
    assert result == {
        "resourceType": "Appointment",
        "id": "a1",
        "meta": {"tag": [SUBSETTED]},
        "status": "booked",
        "serviceType": [{"text": "GP"}],
        "start": "2026-12-01T09:00:00Z",
        "end": "2026-12-01T09:30:00Z",
        "participant": [
            {
                "type": [{"text": "attender"}],
                "actor": {"reference": "Practitioner/7"},
                "required": "required",
                "status": "accepted",
            },
            {"actor": {"reference": "Patient/p1"}, "status": "accepted"},
        ],
    }


def test_summary_text_appointment_keeps_mandatory_status_and_participant() -> None:
    appointment = _appointment()

    result = apply_summary(appointment, "text")

    assert result == {
        "resourceType": "Appointment",
        "id": "a1",
        "meta": {"tag": [SUBSETTED]},
        "text": {"status": "generated", "div": DIV},
        "status": "booked",
        "participant": appointment["participant"],
    }


def test_summary_true_slot_keeps_schedule_status_times() -> None:
    result = apply_summary(_slot(), "true")

    assert result == {
        "resourceType": "Slot",
        "id": "s1",
        "meta": {"tag": [SUBSETTED]},
        "serviceType": [{"text": "GP"}],
        "schedule": {"reference": "Schedule/7"},
        "status": "free",
        "start": "2026-12-01T09:00:00Z",
        "end": "2026-12-01T09:30:00Z",
    }


def test_summary_text_slot_keeps_mandatory_elements() -> None:
    result = apply_summary(_slot(), "text")

    assert result == {
        "resourceType": "Slot",
        "id": "s1",
        "meta": {"tag": [SUBSETTED]},
        "text": {"status": "generated", "div": DIV},
        "schedule": {"reference": "Schedule/7"},
        "status": "free",
        "start": "2026-12-01T09:00:00Z",
        "end": "2026-12-01T09:30:00Z",
    }


@pytest.mark.parametrize("mode", ["count", "TRUE", "summary", ""])
def test_summary_unsupported_mode_raises_invalid(mode: str) -> None:
    with pytest.raises(Invalid) as caught:
        apply_summary(_slot(), mode)

    assert caught.value.status == 400
    assert caught.value.outcome() == {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "error",
                "code": "invalid",
                "diagnostics": f"_summary={mode!r} cannot be applied to a resource; expected one "
                "of 'true', 'text', 'data' or 'false' ('count' applies to searches only)",
            }
        ],
    }


def test_summary_unknown_resource_type_raises_invalid_not_supported() -> None:
    with pytest.raises(Invalid) as caught:
        apply_summary({"resourceType": "Nope", "id": "1"}, "true")

    assert caught.value.outcome() == {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "error",
                "code": "not-supported",
                "diagnostics": "'Nope' is not a known FHIR resource type",
            }
        ],
    }


def test_elements_patient_keeps_named_choice_and_companions() -> None:
    patient = _patient()
    pristine = copy.deepcopy(patient)

    result = apply_elements(patient, ["name,birthDate", " Patient.deceased", "nonsense"])

    assert patient == pristine
    assert result == {
        "resourceType": "Patient",
        "id": "p1",
        "meta": {"versionId": "3", "tag": [{"system": "urn:t", "code": "vip"}, SUBSETTED]},
        "name": [{"family": "Chalmers", "given": ["Peter"]}],
        "birthDate": "1974-12-25",
        "_birthDate": pristine["_birthDate"],
        "deceasedBoolean": False,
    }


def test_elements_nested_path_keeps_whole_top_level_element() -> None:
    result = apply_elements(_patient(), ["Patient.name.family"])

    assert result["name"] == [{"family": "Chalmers", "given": ["Peter"]}]
    assert set(result) == {"resourceType", "id", "meta", "name"}


def test_elements_appointment_adds_mandatory_elements() -> None:
    appointment = _appointment()

    result = apply_elements(appointment, ["start"])

    assert result == {
        "resourceType": "Appointment",
        "id": "a1",
        "meta": {"tag": [SUBSETTED]},
        "status": "booked",
        "start": "2026-12-01T09:00:00Z",
        "participant": appointment["participant"],
    }


def test_elements_slot_all_elements_named_untagged() -> None:
    slot = _slot()

    result = apply_elements(slot, [",".join(k for k in slot if k != "resourceType")])

    assert result == slot


def test_elements_empty_list_returns_whole_resource() -> None:
    slot = _slot()

    assert apply_elements(slot, ["", " "]) == slot


def test_summary_and_elements_every_r4b_resource_type_work() -> None:
    names = {
        name
        for info in pkgutil.iter_modules(R4B.__path__)
        for name in vars(importlib.import_module(f"fhir.resources.R4B.{info.name}"))
        if _resource_shape(name) is not None
    }

    for name in sorted(names):
        resource = {"resourceType": name, "id": "x", "text": {"status": "empty", "div": DIV}}
        assert apply_summary(resource, "true") == {
            "resourceType": name,
            "id": "x",
            "meta": {"tag": [SUBSETTED]},
        }
        assert apply_elements(resource, ["id"]) == apply_summary(resource, "true")
    assert len(names) == 141
