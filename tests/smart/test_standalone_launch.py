"""Standalone launch end to end (SMART App Launch 2.2 §2.0): discovery, authorize with PKCE,
login, consent, code exchange, FHIR calls within the granted scopes, refresh, revocation."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import LiveServer
from tests.smart.flows import patient_token

PATIENT_SCOPE = "openid fhirUser launch/patient offline_access patient/*.cruds"


def _login(server: LiveServer, browser: httpx.Client, scope: str) -> dict[str, Any]:
    return patient_token(browser, server.base_url, scope)


def _refresh(
    browser: httpx.Client, refresh_token: object, scope: str | None = None
) -> httpx.Response:
    data = {"grant_type": "refresh_token", "refresh_token": str(refresh_token)}
    data["client_id"] = "demo-app"  # a public client names itself
    if scope is not None:
        data["scope"] = scope
    return browser.post("/auth/token", data=data)


def test_discovery_smart_configuration_lists_spec_fields(
    smart_server: LiveServer, browser: httpx.Client
) -> None:
    doc = browser.get("/fhir/.well-known/smart-configuration").json()
    for field in (
        "issuer",
        "jwks_uri",
        "authorization_endpoint",
        "token_endpoint",
        "grant_types_supported",
        "capabilities",
        "code_challenge_methods_supported",
        "introspection_endpoint",
        "revocation_endpoint",
        "scopes_supported",
        "token_endpoint_auth_methods_supported",
        "response_types_supported",
    ):
        assert field in doc, field
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert doc["issuer"] == smart_server.base_url
    assert "launch-ehr" in doc["capabilities"] and "permission-v2" in doc["capabilities"]
    meta = browser.get("/fhir/metadata").json()
    security = meta["rest"][0]["security"]
    uris = {e["url"]: e["valueUri"] for e in security["extension"][0]["extension"]}
    assert uris["authorize"] == doc["authorization_endpoint"]
    assert uris["token"] == doc["token_endpoint"]


def test_fhir_request_without_token_is_401_with_www_authenticate(
    smart_server: LiveServer, browser: httpx.Client
) -> None:
    response = browser.get("/fhir/Patient")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["code"] == "login"
    bad = browser.get("/fhir/Patient", headers={"Authorization": "Bearer not-a-token"})
    assert bad.status_code == 401
    assert 'error="invalid_token"' in bad.headers["www-authenticate"]


def test_standalone_patient_launch_grants_patient_context_and_confines(
    smart_server: LiveServer, browser: httpx.Client
) -> None:
    token = _login(smart_server, browser, PATIENT_SCOPE)
    assert token["token_type"] == "Bearer"
    assert token["patient"] == "demo-patient-munoz"
    assert "id_token" in token and "refresh_token" in token
    assert set(str(token["scope"]).split()) == set(PATIENT_SCOPE.split())
    auth = {"Authorization": f"Bearer {token['access_token']}"}
    me = browser.get("/fhir/Patient/demo-patient-munoz", headers=auth)
    assert me.status_code == 200, me.text
    other = browser.get("/fhir/Patient/demo-patient-muller", headers=auth)
    assert other.status_code == 403
    assert other.json()["issue"][0]["code"] == "forbidden"
    found = browser.get("/fhir/Patient", headers=auth).json()
    assert [e["resource"]["id"] for e in found.get("entry", [])] == ["demo-patient-munoz"]
    appts = browser.get("/fhir/Appointment?_include=Appointment:actor", headers=auth).json()
    for entry in appts.get("entry", []):
        resource = entry["resource"]
        if resource["resourceType"] == "Patient":
            assert resource["id"] == "demo-patient-munoz"
    slots = browser.get("/fhir/Slot?_count=3", headers=auth)
    assert slots.status_code == 200


def test_refresh_rotates_and_reuse_revokes_the_grant(
    smart_server: LiveServer, browser: httpx.Client
) -> None:
    token = _login(smart_server, browser, PATIENT_SCOPE)
    first = _refresh(browser, token["refresh_token"])
    assert first.status_code == 200, first.text
    rotated = first.json()
    assert rotated["refresh_token"] != token["refresh_token"]
    narrower = _refresh(
        browser, rotated["refresh_token"], scope="patient/Appointment.rs offline_access"
    )
    assert narrower.status_code == 200, narrower.text
    assert narrower.json()["scope"] == "offline_access patient/Appointment.rs"
    wider = _refresh(browser, narrower.json()["refresh_token"], scope="user/*.cruds")
    assert wider.status_code == 400
    assert wider.json()["error"] == "invalid_scope"
    replay = _refresh(browser, token["refresh_token"])
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"
    auth = {"Authorization": f"Bearer {rotated['access_token']}"}
    assert browser.get("/fhir/Patient/demo-patient-munoz", headers=auth).status_code == 401


def test_cors_browser_app_preflight_and_response_headers(
    smart_server: LiveServer, browser: httpx.Client
) -> None:
    origin = {"Origin": "http://127.0.0.1:9000"}
    preflight = browser.options(
        "/fhir/Patient", headers={**origin, "Access-Control-Request-Method": "GET"}
    )
    assert preflight.status_code == 204
    assert "Authorization" in preflight.headers["access-control-allow-headers"]
    response = browser.get("/fhir/Patient", headers=origin)
    assert response.status_code == 401
    assert response.headers["access-control-allow-origin"] == "*"
    discovery = browser.get("/fhir/.well-known/smart-configuration", headers=origin)
    assert discovery.headers["access-control-allow-origin"] == "*"
    token = browser.options("/auth/token", headers=origin)
    assert token.headers["access-control-allow-origin"] == "http://127.0.0.1:9000"
    stranger = browser.options("/auth/token", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in stranger.headers


def test_id_token_verifies_with_published_keys_and_names_a_readable_fhir_user(
    smart_server: LiveServer, browser: httpx.Client
) -> None:
    from joserfc import jwt
    from joserfc.jwk import KeySet

    token = _login(smart_server, browser, "openid fhirUser launch/patient patient/Patient.rs")
    oidc = browser.get("/fhir/.well-known/openid-configuration").json()
    assert oidc["issuer"] == smart_server.base_url
    keys = KeySet.import_key_set(httpx.get(oidc["jwks_uri"]).json())
    claims = jwt.decode(str(token["id_token"]), keys, algorithms=["RS256"]).claims
    assert claims["iss"] == oidc["issuer"]
    assert claims["aud"] == "demo-app"
    assert claims["fhirUser"] == f"{smart_server.base_url}/Patient/demo-patient-munoz"
    me = httpx.get(claims["fhirUser"], headers={"Authorization": f"Bearer {token['access_token']}"})
    assert me.status_code == 200
    assert me.json()["id"] == "demo-patient-munoz"
