"""Waitlist entries through every write path with authorization on: a patient token joins
the waitlist for itself by `$book` (status `waitlist`) or plain REST, may not set its
priority or join for someone else; an entry breaking its rules is 422 on REST, `$book` and
in a transaction; staff (`system/` token) set priorities; an entry takes no time."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer
from tests.smart.flows import appointment, bearer, parameters, patient_bearer, run_cli

MUNOZ = "demo-patient-munoz"
MULLER = "demo-patient-muller"
FHIR_JSON = {"Content-Type": "application/fhir+json"}
REPLACES = "https://fhir-scheduling.example.org/StructureDefinition/waitlist-replaces"
OFFER = "https://fhir-scheduling.example.org/StructureDefinition/waitlist-offer"


@pytest.fixture(scope="module")
def munoz(smart_server: LiveServer) -> dict[str, str]:
    return patient_bearer(
        smart_server.base_url,
        "launch/patient patient/Appointment.cruds patient/Slot.rs patient/Schedule.rs "
        "patient/PractitionerRole.rs",
    )


@pytest.fixture(scope="module")
def staff(smart_server: LiveServer) -> dict[str, str]:
    return bearer(run_cli(smart_server.settings, "token", "--scope", "system/*.cruds").strip())


def waiting(patient: str, **more: Any) -> dict[str, Any]:
    """A waitlist entry for Dr. Smith (demo) any time next Tuesday."""
    window = appointment(patient, 1, 0)
    body: dict[str, Any] = {
        "resourceType": "Appointment",
        "status": "waitlist",
        "participant": window["participant"],
        "requestedPeriod": [{"start": window["start"], "end": appointment(patient, 1, 23)["end"]}],
        **more,
    }
    return body


def _outcome(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text[:400]
    issue: dict[str, Any] = response.json()["issue"][0]
    assert issue["code"] == code, issue
    return issue


def test_patient_joins_the_waitlist_by_book_and_rest(
    browser: httpx.Client, munoz: dict[str, str]
) -> None:
    by_book = browser.post(
        "/fhir/Appointment/$book", json=parameters(waiting(MUNOZ)), headers={**munoz, **FHIR_JSON}
    )
    assert by_book.status_code == 200, by_book.text
    entry = by_book.json()["entry"][0]["resource"]
    assert entry["status"] == "waitlist" and "start" not in entry
    again = browser.post(
        "/fhir/Appointment/$book", json=parameters(waiting(MUNOZ)), headers={**munoz, **FHIR_JSON}
    )
    assert again.json()["entry"][0]["resource"]["id"] == entry["id"]  # a retry: same entry
    by_rest = browser.post("/fhir/Appointment", json=waiting(MUNOZ), headers={**munoz, **FHIR_JSON})
    assert by_rest.status_code == 201, by_rest.text  # two entries over one period: no time taken


def test_patient_may_not_set_priority_or_join_for_another(
    browser: httpx.Client, munoz: dict[str, str]
) -> None:
    first = browser.post(
        "/fhir/Appointment", json=waiting(MUNOZ, priority=1), headers={**munoz, **FHIR_JSON}
    )
    assert "priority" in _outcome(first, 403, "forbidden")["diagnostics"]
    book = browser.post(
        "/fhir/Appointment/$book",
        json=parameters(waiting(MUNOZ, priority=1)),
        headers={**munoz, **FHIR_JSON},
    )
    _outcome(book, 403, "forbidden")
    other = browser.post("/fhir/Appointment", json=waiting(MULLER), headers={**munoz, **FHIR_JSON})
    _outcome(other, 403, "forbidden")


def test_staff_set_priority_and_patient_keeps_it(
    browser: httpx.Client, munoz: dict[str, str], staff: dict[str, str]
) -> None:
    made = browser.post(
        "/fhir/Appointment", json=waiting(MUNOZ, priority=2), headers={**staff, **FHIR_JSON}
    )
    assert made.status_code == 201, made.text
    entry = made.json()
    changed = {**entry, "comment": "Mornings are best"}
    kept = browser.put(
        f"/fhir/Appointment/{entry['id']}", json=changed, headers={**munoz, **FHIR_JSON}
    )
    assert kept.status_code == 200, kept.text  # priority unchanged: the patient may edit
    raised = {**kept.json(), "priority": 1}
    refused = browser.put(
        f"/fhir/Appointment/{entry['id']}", json=raised, headers={**munoz, **FHIR_JSON}
    )
    _outcome(refused, 403, "forbidden")


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"requestedPeriod": None}, "requestedPeriod"),
        ({"requestedPeriod": [{"start": "2030-01-02T10:00:00Z"}]}, "start and an end"),
        (
            {"participant": [{"actor": {"reference": f"Patient/{MUNOZ}"}, "status": "accepted"}]},
            "waits for",
        ),
        (
            {
                "participant": [
                    {
                        "actor": {"reference": "PractitionerRole/demo-role-smith"},
                        "status": "accepted",
                    },
                    {"actor": {"reference": f"Patient/{MUNOZ}"}, "status": "accepted"},
                    {"actor": {"reference": f"Patient/{MULLER}"}, "status": "accepted"},
                ]
            },
            "exactly one Patient",
        ),
        (
            {"extension": [{"url": REPLACES, "valueReference": {"reference": "Appointment/nope"}}]},
            "waitlist-replaces",
        ),
    ],
)
def test_entries_breaking_the_rules_are_422_on_every_path(
    browser: httpx.Client, munoz: dict[str, str], change: dict[str, Any], words: str
) -> None:
    bad = {k: v for k, v in {**waiting(MUNOZ), **change}.items() if v is not None}
    rest = browser.post("/fhir/Appointment", json=bad, headers={**munoz, **FHIR_JSON})
    assert words in _outcome(rest, 422, "business-rule")["diagnostics"]
    book = browser.post(
        "/fhir/Appointment/$book", json=parameters(bad), headers={**munoz, **FHIR_JSON}
    )
    _outcome(book, 422, "business-rule")
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": bad, "request": {"method": "POST", "url": "Appointment"}}],
    }
    transaction = browser.post("/fhir", json=bundle, headers={**munoz, **FHIR_JSON})
    _outcome(transaction, 422, "business-rule")


def test_book_waitlist_with_cancelled_appt_id_keeps_it_as_the_appointment_it_replaces(
    browser: httpx.Client, munoz: dict[str, str]
) -> None:
    booked = browser.post(
        "/fhir/Appointment/$book",
        json=parameters(appointment(MUNOZ, 3, 15)),
        headers={**munoz, **FHIR_JSON},
    )
    assert booked.status_code == 200, booked.text
    current = booked.json()["entry"][0]["resource"]
    body = parameters(waiting(MUNOZ))
    body["parameter"].append(
        {
            "name": "cancelled-appt-id",
            "valueReference": {"reference": f"Appointment/{current['id']}"},
        }
    )
    joined = browser.post("/fhir/Appointment/$book", json=body, headers={**munoz, **FHIR_JSON})
    assert joined.status_code == 200, joined.text
    entry = joined.json()["entry"][0]["resource"]
    [replaces] = [e for e in entry["extension"] if e["url"] == REPLACES]
    assert replaces["valueReference"]["reference"] == f"Appointment/{current['id']}"
    still = browser.get(f"/fhir/Appointment/{current['id']}", headers=munoz).json()
    assert still["status"] == "booked"  # nothing is cancelled until an offer is booked


def test_patient_cannot_mark_an_appointment_as_a_waitlist_offer(
    browser: httpx.Client, munoz: dict[str, str], staff: dict[str, str]
) -> None:
    other = browser.post("/fhir/Appointment", json=waiting(MULLER), headers={**staff, **FHIR_JSON})
    assert other.status_code == 201, other.text
    mark = {"url": OFFER, "valueReference": {"reference": f"Appointment/{other.json()['id']}"}}
    forged = {**appointment(MUNOZ, 4, 10), "extension": [mark]}
    held = browser.post(
        "/fhir/Appointment/$hold", json=parameters(forged), headers={**munoz, **FHIR_JSON}
    )
    _outcome(held, 403, "forbidden")
    still = browser.get(f"/fhir/Appointment/{other.json()['id']}", headers=staff).json()
    assert still["status"] == "waitlist"
