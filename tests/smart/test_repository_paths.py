"""Paths next to the tested ones, with authorization on: a patient token's transaction with
`ifNoneExist`, and the booking rules a patient token always meets on plain REST writes
(SCHEDULING.md "Booking rules on every path", SMART.md "Rules that matter")."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from fhir_server.demo_data import MRN
from tests.conftest import LiveServer
from tests.smart.flows import appointment, bearer, patient_bearer, patient_token

MUNOZ = "demo-patient-munoz"
MULLER = "demo-patient-muller"
FHIR_JSON = {"Content-Type": "application/fhir+json"}


@pytest.fixture(scope="module")
def munoz(smart_server: LiveServer) -> dict[str, str]:
    """A patient token for José Muñoz that may create Patients and Appointments."""
    return patient_bearer(
        smart_server.base_url,
        "launch/patient patient/Patient.cruds patient/Appointment.cruds patient/Slot.rs "
        "patient/Schedule.rs patient/PractitionerRole.rs",
    )


def _outcome(response: httpx.Response, status: int, code: str, detail: str | None = None) -> None:
    assert response.status_code == status, response.text[:400]
    issue = response.json()["issue"][0]
    assert issue["code"] == code, issue
    details = [c["code"] for c in (issue.get("details") or {}).get("coding", [])]
    assert details == ([detail] if detail else []), issue


def _booked(appt: dict[str, Any]) -> dict[str, Any]:
    return {**appt, "status": "booked"}


def test_transaction_if_none_exist_matching_another_patient_is_403(
    browser: httpx.Client, munoz: dict[str, str]
) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {"resourceType": "Patient", "name": [{"family": "Probe"}]},
                "request": {
                    "method": "POST",
                    "url": "Patient",
                    "ifNoneExist": f"identifier={MRN}|MRN-MULLER",
                },
            }
        ],
    }
    response = browser.post("/fhir", json=bundle, headers={**munoz, **FHIR_JSON})
    _outcome(response, 403, "forbidden")
    assert "Müller" not in response.text and "Muller" not in response.text


def test_create_outside_availability_with_patient_token_is_409(
    browser: httpx.Client, munoz: dict[str, str]
) -> None:
    late = _booked(appointment(MUNOZ, 1, 21))  # Tuesday 21:00 Boston: the clinic is closed
    response = browser.post("/fhir/Appointment", json=late, headers={**munoz, **FHIR_JSON})
    _outcome(response, 409, "conflict", "outside-availability")


def test_create_over_own_booking_absolute_reference_with_patient_token_is_409(
    smart_server: LiveServer, browser: httpx.Client, munoz: dict[str, str]
) -> None:
    first = _booked(appointment(MUNOZ, 3, 14))
    response = browser.post("/fhir/Appointment", json=first, headers={**munoz, **FHIR_JSON})
    assert response.status_code == 201, response.text
    again = _booked(appointment(MUNOZ, 3, 14))
    again["participant"][0]["actor"]["reference"] = (
        f"{smart_server.base_url}/PractitionerRole/demo-role-smith"
    )
    response = browser.post("/fhir/Appointment", json=again, headers={**munoz, **FHIR_JSON})
    assert response.status_code == 409, response.text


def test_patch_own_booking_to_after_hours_with_patient_token_is_409(
    browser: httpx.Client, munoz: dict[str, str]
) -> None:
    mine = _booked(appointment(MUNOZ, 3, 10))
    created = browser.post("/fhir/Appointment", json=mine, headers={**munoz, **FHIR_JSON})
    assert created.status_code == 201, created.text
    late = appointment(MUNOZ, 3, 22)
    patch = [
        {"op": "replace", "path": "/start", "value": late["start"]},
        {"op": "replace", "path": "/end", "value": late["end"]},
    ]
    response = browser.patch(
        f"/fhir/Appointment/{created.json()['id']}",
        json=patch,
        headers={**munoz, "Content-Type": "application/json-patch+json"},
    )
    _outcome(response, 409, "conflict", "outside-availability")


def test_book_override_availability_with_patient_token_is_403(
    browser: httpx.Client, munoz: dict[str, str]
) -> None:
    late = appointment(MUNOZ, 2, 21)
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "appointment-resource", "resource": late},
            {"name": "override-availability", "valueBoolean": True},
        ],
    }
    response = browser.post("/fhir/Appointment/$book", json=body, headers={**munoz, **FHIR_JSON})
    _outcome(response, 403, "forbidden")


def test_transaction_conditional_reference_to_another_patient_is_403(
    browser: httpx.Client, munoz: dict[str, str]
) -> None:
    probe = _booked(appointment(MUNOZ, 4, 9))
    probe["participant"][1]["actor"]["reference"] = f"Patient?identifier={MRN}|MRN-MULLER"
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": probe, "request": {"method": "POST", "url": "Appointment"}}],
    }
    response = browser.post("/fhir", json=bundle, headers={**munoz, **FHIR_JSON})
    _outcome(response, 403, "forbidden")


def test_find_with_patient_token_proposes_for_its_patient(
    browser: httpx.Client, munoz: dict[str, str]
) -> None:
    day = appointment(MUNOZ, 1, 9)["start"][:10]
    response = browser.get(
        f"/fhir/Appointment/$find?start={day}T00:00:00Z&end={day}T23:59:00Z&_count=2",
        headers=munoz,
    )
    assert response.status_code == 200, response.text
    proposals = [e["resource"] for e in response.json()["entry"]]
    assert proposals
    for proposal in proposals:
        refs = [p["actor"]["reference"] for p in proposal["participant"]]
        assert f"Patient/{MUNOZ}" in refs


def test_history_system_with_patient_wildcard_scope_is_403(
    smart_server: LiveServer, browser: httpx.Client
) -> None:
    wildcard = patient_bearer(smart_server.base_url, "launch/patient patient/*.rs")
    _outcome(browser.get("/fhir/_history", headers=wildcard), 403, "forbidden")
    own = browser.get(f"/fhir/Patient/{MUNOZ}/_history", headers=wildcard)
    assert own.status_code == 200, own.text


def test_find_slots_with_slot_scope_only_includes_no_schedules(
    smart_server: LiveServer, browser: httpx.Client
) -> None:
    slots_only = patient_bearer(smart_server.base_url, "launch/patient patient/Slot.rs")
    day = appointment(MUNOZ, 1, 9)["start"][:10]
    response = browser.get(
        f"/fhir/Slot/$find-slots?start={day}T00:00:00Z&end={day}T23:59:00Z&_count=3",
        headers=slots_only,
    )
    assert response.status_code == 200, response.text
    kinds = {(e["resource"]["resourceType"], e["search"]["mode"]) for e in response.json()["entry"]}
    assert kinds == {("Slot", "match")}


def test_update_as_create_for_another_patient_with_read_update_token_is_403(
    smart_server: LiveServer, browser: httpx.Client
) -> None:
    no_create = patient_bearer(smart_server.base_url, "launch/patient patient/Appointment.ru")
    theirs = {**_booked(appointment(MULLER, 4, 15)), "id": "put-created-for-muller"}
    response = browser.put(
        "/fhir/Appointment/put-created-for-muller",
        json=theirs,
        headers={**no_create, **FHIR_JSON},
    )
    _outcome(response, 403, "forbidden")


def test_practitioner_user_token_books_outside_hours_only_by_rest_or_override_audited(
    smart_server: LiveServer, browser: httpx.Client
) -> None:
    token = patient_token(
        browser,
        smart_server.base_url,
        "user/Appointment.cruds user/AuditEvent.rs",
        username="smith",
        password="demo-smith",
    )
    headers = {**bearer(token), **FHIR_JSON}
    late = appointment(MULLER, 4, 20)  # Friday 20:00 Boston: Dr. Smith has gone home
    book = {
        "resourceType": "Parameters",
        "parameter": [{"name": "appointment-resource", "resource": late}],
    }
    response = browser.post("/fhir/Appointment/$book", json=book, headers=headers)
    assert response.status_code == 409, response.text
    assert response.json()["issue"][0]["details"]["coding"][0]["code"] == "outside-availability"
    rest = browser.post("/fhir/Appointment", json=_booked(late), headers=headers)
    assert rest.status_code == 201, rest.text
    events = browser.get(
        f"/fhir/AuditEvent?entity=Appointment/{rest.json()['id']}", headers=headers
    ).json()
    (event,) = [e["resource"] for e in events["entry"]]
    assert event["subtype"][-1]["code"] == "availability-override"
    assert event["agent"][0]["who"] == {"display": "Practitioner/demo-pract-smith"}
    later = appointment(MULLER, 4, 21)
    override = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "appointment-resource", "resource": later},
            {"name": "override-availability", "valueBoolean": True},
        ],
    }
    response = browser.post("/fhir/Appointment/$book", json=override, headers=headers)
    assert response.status_code == 200, response.text
