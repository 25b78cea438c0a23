"""Paths next to the tested ones, with authorization on: a patient token's transaction with
`ifNoneExist`, and the booking rules a patient token always meets on plain REST writes
(SCHEDULING.md "Booking rules on every path", SMART.md "Rules that matter")."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from fhir_server.demo_data import MRN
from tests.conftest import LiveServer
from tests.smart.flows import appointment, bearer, patient_token

MUNOZ = "demo-patient-munoz"
MULLER = "demo-patient-muller"
FHIR_JSON = {"Content-Type": "application/fhir+json"}


@pytest.fixture(scope="module")
def munoz(smart_server: LiveServer) -> dict[str, str]:
    """A patient token for José Muñoz that may create Patients and Appointments."""
    origin = smart_server.base_url.rsplit("/fhir", 1)[0]
    with httpx.Client(base_url=origin, follow_redirects=False, timeout=30) as http:
        token = patient_token(
            http,
            smart_server.base_url,
            "launch/patient patient/Patient.cruds patient/Appointment.cruds patient/Slot.rs "
            "patient/Schedule.rs patient/PractitionerRole.rs",
        )
    assert token["patient"] == MUNOZ
    return bearer(token)


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
