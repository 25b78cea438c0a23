"""Scopes enforced on every interaction: 401 without a token, 403 for too little scope,
filtered 200 where a search reaches outside the patient in context — across read, search,
`_include`/`_revinclude`, chaining, history, batch/transaction, `$everything` and the
scheduling operations (SMART.md "Rules that matter")."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer
from tests.smart.flows import (
    appointment,
    bearer,
    parameters,
    patient_bearer,
    patient_token,
    run_cli,
)

MUNOZ = "demo-patient-munoz"
MULLER = "demo-patient-muller"
FHIR_JSON = {"Content-Type": "application/fhir+json"}


@pytest.fixture(scope="module")
def munoz(smart_server: LiveServer) -> dict[str, str]:
    """A patient token for José Muñoz: his data, and the clinic's schedules and slots."""
    return patient_bearer(
        smart_server.base_url,
        "launch/patient patient/Patient.rs patient/Appointment.cruds patient/Slot.rs "
        "patient/Schedule.rs patient/PractitionerRole.rs",
    )


def _ids(bundle: dict[str, Any], rtype: str | None = None) -> list[str]:
    return [
        f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in bundle.get("entry", [])
        if rtype is None or e["resource"]["resourceType"] == rtype
    ]


def _forbidden(response: httpx.Response) -> None:
    assert response.status_code == 403, response.text[:300]
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["code"] == "forbidden"


def test_metadata_is_public_everything_else_needs_a_token(browser: httpx.Client) -> None:
    assert browser.get("/fhir/metadata").status_code == 200
    for method, path in [
        ("GET", "/fhir/Patient/demo-patient-munoz"),
        ("GET", "/fhir/_history"),
        ("POST", "/fhir"),
        ("GET", "/fhir/Slot/$find-slots"),
    ]:
        response = browser.request(method, path)
        assert response.status_code == 401, path
        assert response.json()["issue"][0]["code"] == "login"


def test_read_outside_patient_compartment_is_403(
    browser: httpx.Client, munoz: dict[str, str]
) -> None:
    assert browser.get(f"/fhir/Patient/{MUNOZ}", headers=munoz).status_code == 200
    assert browser.get("/fhir/Appointment/demo-appt-booked", headers=munoz).status_code == 200
    other = browser.get(f"/fhir/Patient/{MULLER}", headers=munoz)
    _forbidden(other)
    assert other.headers["www-authenticate"] == 'Bearer error="insufficient_scope"'
    _forbidden(browser.get("/fhir/Appointment/demo-appt-cancelled", headers=munoz))
    _forbidden(browser.get(f"/fhir/Patient/{MULLER}/_history/1", headers=munoz))
    _forbidden(browser.get("/fhir/Practitioner/demo-pract-smith", headers=munoz))


def test_search_is_narrowed_to_the_patient_and_includes_are_filtered(
    browser: httpx.Client, munoz: dict[str, str]
) -> None:
    patients = browser.get("/fhir/Patient?_count=50", headers=munoz).json()
    assert _ids(patients) == [f"Patient/{MUNOZ}"]
    appts = browser.get(
        "/fhir/Appointment?_include=Appointment:actor&_count=50", headers=munoz
    ).json()
    assert _ids(appts, "Appointment") == ["Appointment/demo-appt-booked"]
    included = _ids(appts)
    assert f"Patient/{MUNOZ}" in included
    assert "PractitionerRole/demo-role-smith" in included
    assert not [i for i in included if i.startswith("Practitioner/")]  # no Practitioner scope
    rev = browser.get(
        "/fhir/Patient?_revinclude=Appointment:patient&_id=demo-patient-nguyen", headers=munoz
    ).json()
    assert _ids(rev) == []
    compartment = browser.get(f"/fhir/Patient/{MULLER}/Appointment", headers=munoz).json()
    assert _ids(compartment) == []
    slots = browser.get("/fhir/Slot?_count=3", headers=munoz)
    assert slots.status_code == 200 and len(slots.json()["entry"]) == 3


def test_chaining_into_an_unscoped_type_is_403(
    browser: httpx.Client, munoz: dict[str, str]
) -> None:
    _forbidden(browser.get("/fhir/Appointment?actor:Practitioner.name=smith", headers=munoz))
    _forbidden(browser.get("/fhir/Patient?_has:Observation:patient:code=1234", headers=munoz))
    ok = browser.get("/fhir/Appointment?patient.name=munoz", headers=munoz)
    assert ok.status_code == 200


def test_history_across_resources_is_403_for_a_patient_token(
    browser: httpx.Client, munoz: dict[str, str]
) -> None:
    _forbidden(browser.get("/fhir/_history", headers=munoz))
    _forbidden(browser.get("/fhir/Patient/_history", headers=munoz))
    own = browser.get(f"/fhir/Patient/{MUNOZ}/_history", headers=munoz)
    assert own.status_code == 200


def test_writes_need_their_permission_and_stay_in_the_compartment(
    smart_server: LiveServer, browser: httpx.Client, munoz: dict[str, str]
) -> None:
    _forbidden(
        browser.post(
            "/fhir/Practitioner",
            json={"resourceType": "Practitioner"},
            headers={**munoz, **FHIR_JSON},
        )
    )
    _forbidden(
        browser.put(
            f"/fhir/Patient/{MUNOZ}",
            json={"resourceType": "Patient", "id": MUNOZ},
            headers={**munoz, **FHIR_JSON},
        )
    )  # patient/Patient.rs: no u
    other = appointment(MULLER, 0, 15)
    _forbidden(browser.post("/fhir/Appointment", json=other, headers={**munoz, **FHIR_JSON}))
    admin = bearer(run_cli(smart_server.settings, "token", "--scope", "system/*.rs").strip())
    found = browser.get("/fhir/Appointment?patient=Patient/demo-patient-muller", headers=admin)
    assert found.json().get("total", 0) == 0  # nothing was written


def test_transaction_entries_are_checked_and_nothing_is_written(
    smart_server: LiveServer, browser: httpx.Client, munoz: dict[str, str]
) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": appointment(MUNOZ, 1, 9),
                "request": {"method": "POST", "url": "Appointment"},
            },
            {
                "resource": appointment(MULLER, 1, 10),
                "request": {"method": "POST", "url": "Appointment"},
            },
        ],
    }
    _forbidden(browser.post("/fhir", json=bundle, headers={**munoz, **FHIR_JSON}))
    batch = {**bundle, "type": "batch"}
    response = browser.post("/fhir", json=batch, headers={**munoz, **FHIR_JSON})
    assert response.status_code == 200
    statuses = [e["response"]["status"] for e in response.json()["entry"]]
    assert statuses[0].startswith("201") and statuses[1].startswith("403")


def test_scheduling_operations_are_confined_to_the_patient(
    browser: httpx.Client, munoz: dict[str, str]
) -> None:
    headers = {**munoz, **FHIR_JSON}
    _forbidden(
        browser.post(
            "/fhir/Appointment/$hold", json=parameters(appointment(MULLER, 2, 9)), headers=headers
        )
    )
    _forbidden(
        browser.post(
            "/fhir/Appointment/$book", json=parameters(appointment(MULLER, 2, 10)), headers=headers
        )
    )
    week = appointment(MUNOZ, 2, 0)["start"][:10]
    _forbidden(
        browser.get(
            f"/fhir/Appointment/$find?start={week}T00:00:00Z&end={week}T23:59:00Z"
            f"&patient-reference=Patient/{MULLER}",
            headers=munoz,
        )
    )
    booked = browser.post(
        "/fhir/Appointment/$book", json=parameters(appointment(MUNOZ, 2, 11)), headers=headers
    )
    assert booked.status_code == 200, booked.text
    bundle = booked.json()
    assert bundle["resourceType"] == "Bundle"
    (appt,) = [e["resource"] for e in bundle["entry"]]
    assert appt["status"] == "booked"
    slots = browser.get(
        f"/fhir/Slot/$find-slots?start={week}T00:00:00Z&end={week}T23:59:00Z", headers=munoz
    )
    assert slots.status_code == 200


def test_everything_is_confined_and_filtered_by_type(
    browser: httpx.Client, munoz: dict[str, str]
) -> None:
    _forbidden(browser.get(f"/fhir/Patient/{MULLER}/$everything", headers=munoz))
    own = browser.get(f"/fhir/Patient/{MUNOZ}/$everything", headers=munoz).json()
    types = {e["resource"]["resourceType"] for e in own["entry"]}
    assert types <= {"Patient", "Appointment"}
    assert "AuditEvent" not in types


def test_v1_read_scope_reads_but_cannot_write(
    smart_server: LiveServer, browser: httpx.Client
) -> None:
    token = patient_token(browser, smart_server.base_url, "launch/patient patient/*.read")
    auth = {**bearer(token), **FHIR_JSON}
    assert browser.get(f"/fhir/Patient/{MUNOZ}", headers=auth).status_code == 200
    _forbidden(browser.post("/fhir/Appointment", json=appointment(MUNOZ, 3, 9), headers=auth))
    _forbidden(browser.delete("/fhir/Appointment/demo-appt-booked", headers=auth))


def test_user_scope_reaches_every_patient_and_granular_scope_filters(
    smart_server: LiveServer, browser: httpx.Client
) -> None:
    token = patient_token(
        browser,
        smart_server.base_url,
        "user/Appointment.rs",
        username="smith",
        password="demo-smith",
    )
    found = browser.get("/fhir/Appointment?_count=100", headers=bearer(token)).json()
    ids = _ids(found)
    assert "Appointment/demo-appt-booked" in ids and "Appointment/demo-appt-cancelled" in ids
    granular = patient_token(
        browser,
        smart_server.base_url,
        "user/Appointment.rs?status=cancelled",
        username="smith",
        password="demo-smith",
    )
    assert granular["scope"] == "user/Appointment.rs?status=cancelled"
    only = browser.get("/fhir/Appointment?_count=100", headers=bearer(granular)).json()
    statuses = {e["resource"]["status"] for e in only.get("entry", [])}
    assert statuses == {"cancelled"}
    _forbidden(browser.get("/fhir/Appointment/demo-appt-booked", headers=bearer(granular)))
    ok = browser.get("/fhir/Appointment/demo-appt-cancelled", headers=bearer(granular))
    assert ok.status_code == 200


def test_denials_are_audited(smart_server: LiveServer, browser: httpx.Client) -> None:
    admin = bearer(run_cli(smart_server.settings, "token", "--scope", "system/*.rs").strip())
    events = browser.get("/fhir/AuditEvent?_count=200&subtype=access-denied", headers=admin).json()
    assert events.get("entry"), "no access-denied AuditEvent"
    logins = browser.get("/fhir/AuditEvent?_count=200&subtype=login", headers=admin).json()
    assert logins.get("entry")
    text = str(events) + str(logins)
    assert "Bearer" not in text and "access_token" not in text


def test_booking_audit_names_the_token_holder(
    smart_server: LiveServer, browser: httpx.Client, munoz: dict[str, str]
) -> None:
    booked = browser.post(
        "/fhir/Appointment/$book",
        json=parameters(appointment(MUNOZ, 3, 14)),
        headers={**munoz, **FHIR_JSON},
    )
    assert booked.status_code == 200, booked.text
    admin = bearer(run_cli(smart_server.settings, "token", "--scope", "system/*.rs").strip())
    events = browser.get(
        "/fhir/AuditEvent?subtype=urn:ihe:event-type-code|ITI-117&_count=100", headers=admin
    ).json()
    requestors = {
        agent["who"].get("display")
        for entry in events["entry"]
        for agent in entry["resource"]["agent"]
        if agent.get("requestor")
    }
    assert f"Patient/{MUNOZ}" in requestors


def test_conditional_create_does_not_reveal_another_patients_match(
    smart_server: LiveServer, browser: httpx.Client, munoz: dict[str, str]
) -> None:
    headers = {**munoz, **FHIR_JSON, "If-None-Exist": "_id=demo-appt-cancelled"}
    _forbidden(browser.post("/fhir/Appointment", json=appointment(MUNOZ, 4, 9), headers=headers))
