"""A standalone patient launch by the Python SMART client `fhirclient` (4.4.0, the library
published by SMART Health IT), unmodified, through its public API only.

What the library does, read from its source (`fhirclient/server.py`, `fhirclient/auth.py`):

* Discovery: `FHIRServer.get_capability()` GETs `[base]/metadata` and parses it with its own
  R4 `CapabilityStatement` model; `FHIRAuth.from_capability_security()` takes the authorize,
  token and register endpoints from the `rest[0].security` extension
  `http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris`. It never reads
  `.well-known/smart-configuration`, so the server has to keep announcing `oauth-uris` in
  `/metadata` for this client to find the authorization server (and the CapabilityStatement
  has to parse with its models, or discovery raises).
* PKCE: `FHIROAuth2Auth._authorize_params()` always sends `code_challenge` (S256 of a
  `secrets.token_urlsafe(64)` verifier, 86 characters) and `code_challenge_method=S256`, and
  `_code_exchange_params()` sends the `code_verifier`; there is no setting to turn it on or
  off, nothing has to be appended by the app.
* `aud` is the `api_base` exactly as configured (no trailing slash added), so it matches the
  server's base URL; `state` is a UUID, checked by `handle_callback()`.
* Scope: `desired_scope` prefixes `launch/patient` when no patient is known yet, so the
  request carries `launch/patient` twice; the token request also carries an extra `state`
  form field. The server has to tolerate both (it does).
* A public client: with no `app_secret` the token request has no HTTP Basic header and carries
  `client_id` in the form; the `id_token` is received and ignored (logged), `patient` becomes
  `client.patient_id`. Requests are signed by `server.auth.signed_headers()`; `post_json()`
  posts `application/fhir+json` with the bearer token.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import httpx
from fhirclient import client as fhir_client
from fhirclient.models.appointment import Appointment
from fhirclient.models.patient import Patient

from tests.conftest import LiveServer
from tests.smart.flows import authorize_in_browser, query_of

REDIRECT_URI = "http://127.0.0.1:9000/callback"
SCOPE = "openid fhirUser launch/patient offline_access patient/*.cruds"
PATIENT = "demo-patient-munoz"
FAMILY_MEDICINE = "http://nucc.org/provider-taxonomy|207Q00000X"
DR_SMITH = "PractitionerRole/demo-role-smith"


def next_monday() -> date:
    """The Monday of next week (Dr. Smith works Monday to Friday)."""
    today = datetime.now(UTC).date()
    return today + timedelta(days=7 - today.weekday())


def find_window() -> dict[str, str]:
    """A whole UTC day, next Monday, for `Appointment/$find`."""
    day = next_monday()
    return {
        "start": f"{day.isoformat()}T00:00:00Z",
        "end": f"{(day + timedelta(days=1)).isoformat()}T00:00:00Z",
    }


def book_parameters(proposal_id: str) -> dict[str, Any]:
    """`$book` input naming a `$find` proposal."""
    return {
        "resourceType": "Parameters",
        "parameter": [
            {
                "name": "appointment-reference",
                "valueReference": {"reference": f"Appointment/{proposal_id}"},
            }
        ],
    }


def only_resource(bundle: dict[str, Any]) -> dict[str, Any]:
    (entry,) = bundle["entry"]
    resource: dict[str, Any] = entry["resource"]
    return resource


def test_fhirclient_python_standalone_launch_reads_patient_and_books(
    smart_server: LiveServer, browser: httpx.Client
) -> None:
    base = smart_server.base_url
    saved: list[dict[str, Any]] = []
    smart = fhir_client.FHIRClient(
        settings={
            "app_id": "demo-app",
            "api_base": base,
            "redirect_uri": REDIRECT_URI,
            "scope": SCOPE,
        },
        save_func=saved.append,
    )
    assert not smart.ready

    authorize_url = smart.authorize_url
    sent = query_of(authorize_url)
    origin = base.rsplit("/fhir", 1)[0]
    assert authorize_url.startswith(f"{origin}/auth/authorize?"), authorize_url
    assert sent["code_challenge_method"] == "S256" and len(sent["code_challenge"]) == 43
    assert sent["aud"] == base
    assert sent["client_id"] == "demo-app" and sent["redirect_uri"] == REDIRECT_URI

    back = authorize_in_browser(browser, authorize_url, "munoz", "demo-munoz")
    assert back.startswith(f"{REDIRECT_URI}?"), back
    assert "code" in query_of(back), back
    smart.handle_callback(back)

    assert smart.ready
    assert smart.patient_id == PATIENT
    context = smart.launch_context or {}
    assert set(str(context["scope"]).split()) == set(SCOPE.split())
    assert context["token_type"].lower() == "bearer"
    assert smart.server.auth.refresh_token
    assert saved and saved[-1]["patient_id"] == PATIENT

    patient = Patient.read(PATIENT, smart.server)
    assert patient.id == PATIENT
    assert patient.name and patient.name[0].family
    assert smart.patient is not None and smart.patient.id == PATIENT

    query = {
        **find_window(),
        "specialty": FAMILY_MEDICINE,
        "practitioner": "Practitioner/demo-pract-smith",
        "patient-reference": f"Patient/{PATIENT}",
        "_count": "3",
    }
    found = smart.server.request_json(f"Appointment/$find?{urlencode(query)}")
    proposal = found["entry"][0]["resource"]
    assert proposal["status"] == "proposed"

    response = smart.server.post_json("Appointment/$book", book_parameters(proposal["id"]))
    assert response.status_code == 200, response.text
    booked = only_resource(response.json())
    assert (booked["id"], booked["status"]) == (proposal["id"], "booked")
    actors = {p["actor"]["reference"] for p in booked["participant"]}
    assert f"Patient/{PATIENT}" in actors
    assert DR_SMITH in actors

    stored = Appointment.read(booked["id"], smart.server)
    assert stored.status == "booked"
    start = datetime.fromisoformat(booked["start"])
    assert stored.start.datetime == start
    local = start.astimezone(ZoneInfo("America/New_York"))
    assert local.date() == next_monday() and 9 <= local.hour < 17

    unauthenticated = httpx.get(f"{base}/Appointment/{booked['id']}", timeout=30)
    assert unauthenticated.status_code == 401
