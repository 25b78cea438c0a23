"""SMART Backend Services (client_credentials + private_key_jwt) with the SMART spec's own
example keys (`shared/data/smart-app-launch-ig/`, RS384 and ES384), and the refusals Inferno
checks: `alg: none`, expired, replayed `jti`, wrong `aud`, unknown `kid`, `exp` too far ahead."""

from __future__ import annotations

import base64
import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer, shared_data
from tests.smart.flows import client_assertion, run_cli

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def _keys(alg: str) -> tuple[dict[str, Any], Path]:
    folder = shared_data("smart-app-launch-ig")
    private = json.loads((folder / f"{alg}.private.json").read_text())
    return private, folder / f"{alg}.public.json"


@pytest.fixture(scope="module")
def backend(smart_server: LiveServer) -> LiveServer:
    """Two backend clients registered through the CLI, one per example key set; the RS384
    one, `ehr-rs384`, is the EHR: registered as a launch issuer."""
    for alg, options in (("RS384", ["--launch-issuer"]), ("ES384", [])):
        _, public = _keys(alg)
        run_cli(
            smart_server.settings,
            "clients",
            "add",
            f"ehr-{alg.lower()}",
            "--type",
            "backend",
            "--jwks-file",
            str(public),
            "--scope",
            "system/*.rs system/Appointment.cruds system/Slot.rs",
            *options,
        )
    return smart_server


def _token(
    http: httpx.Client,
    server: LiveServer,
    alg: str,
    scope: str = "system/Patient.rs",
    **assertion: Any,
) -> httpx.Response:
    private, _ = _keys(alg)
    token_url = server.base_url.rsplit("/fhir", 1)[0] + "/auth/token"
    jwt = client_assertion(private, f"ehr-{alg.lower()}", token_url, alg=alg, **assertion)
    return http.post(
        "/auth/token",
        data={
            "grant_type": "client_credentials",
            "scope": scope,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": jwt,
        },
    )


@pytest.mark.parametrize("alg", ["RS384", "ES384"])
def test_client_credentials_with_spec_example_key_grants_system_token(
    backend: LiveServer, browser: httpx.Client, alg: str
) -> None:
    response = _token(browser, backend, alg, "system/Patient.rs system/Appointment.cruds")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "system/Patient.rs system/Appointment.cruds"
    assert "refresh_token" not in body and body["expires_in"] > 0
    auth = {"Authorization": f"Bearer {body['access_token']}"}
    patients = browser.get("/fhir/Patient?_count=2", headers=auth)
    assert patients.status_code == 200
    assert len(patients.json()["entry"]) == 2
    denied = browser.get("/fhir/Practitioner", headers=auth)
    assert denied.status_code == 403
    assert denied.json()["issue"][0]["code"] == "forbidden"


def test_client_credentials_scope_outside_ceiling_is_invalid_scope(
    backend: LiveServer, browser: httpx.Client
) -> None:
    response = _token(browser, backend, "RS384", "system/Practitioner.cruds")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_scope"


def _unsigned(client_id: str, token_url: str) -> str:
    def b64(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    now = int(time.time())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": token_url,
        "exp": now + 60,
        "jti": str(uuid.uuid4()),
    }
    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}."


def test_assertion_alg_none_is_refused(backend: LiveServer, browser: httpx.Client) -> None:
    token_url = backend.base_url.rsplit("/fhir", 1)[0] + "/auth/token"
    response = browser.post(
        "/auth/token",
        data={
            "grant_type": "client_credentials",
            "scope": "system/Patient.rs",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": _unsigned("ehr-rs384", token_url),
        },
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


@pytest.mark.parametrize(
    ("assertion", "why"),
    [
        ({"exp_in": -30}, "expired"),
        ({"exp_in": 3600}, "5 minutes"),
        ({"aud": "https://elsewhere.example/token"}, "aud"),
        ({"kid": "no-such-kid"}, "kid"),
    ],
    ids=["expired", "exp-too-far", "wrong-aud", "unknown-kid"],
)
def test_bad_assertion_is_invalid_client(
    backend: LiveServer, browser: httpx.Client, assertion: dict[str, Any], why: str
) -> None:
    response = _token(browser, backend, "ES384", **assertion)
    assert response.status_code == 401
    body = response.json()
    assert body["error"] == "invalid_client"
    assert why in body["error_description"]


def test_replayed_jti_is_refused(backend: LiveServer, browser: httpx.Client) -> None:
    jti = str(uuid.uuid4())
    assert _token(browser, backend, "RS384", jti=jti).status_code == 200
    replay = _token(browser, backend, "RS384", jti=jti)
    assert replay.status_code == 401
    assert "jti" in replay.json()["error_description"]


def test_ehr_launch_context_reaches_the_token_response(
    backend: LiveServer, browser: httpx.Client
) -> None:
    from tests.smart.flows import App, authorize_in_browser, pkce_pair, query_of

    system = _token(browser, backend, "RS384").json()["access_token"]
    created = browser.post(
        "/auth/launch",
        json={
            "patient": "demo-patient-munoz",
            "encounter": "enc-1",
            "need_patient_banner": False,
            "smart_style_url": "https://ehr.example/style.json",
        },
        headers={"Authorization": f"Bearer {system}"},
    )
    assert created.status_code == 201, created.text
    launch = created.json()["launch"]
    assert created.json()["iss"] == backend.base_url
    verifier, challenge = pkce_pair()
    app = App("demo-app", "http://127.0.0.1:9000/callback", backend.base_url)
    url = app.authorize_url(
        "launch openid fhirUser patient/*.rs", challenge=challenge, launch=launch
    )
    back = authorize_in_browser(browser, url, "smith", "demo-smith")
    token = browser.post(
        "/auth/token",
        data={
            "grant_type": "authorization_code",
            "code": query_of(back)["code"],
            "redirect_uri": app.redirect_uri,
            "client_id": "demo-app",
            "code_verifier": verifier,
        },
    ).json()
    assert token["patient"] == "demo-patient-munoz"
    assert token["encounter"] == "enc-1"
    assert token["need_patient_banner"] is False
    assert token["smart_style_url"] == "https://ehr.example/style.json"
    reused = browser.get(url)
    assert reused.status_code == 302
    assert query_of(reused.headers["location"])["error"] == "invalid_request"


def test_cli_launch_prints_a_usable_launch_url(backend: LiveServer) -> None:
    out = run_cli(
        backend.settings, "launch", "--patient", "demo-patient-munoz", "--client", "demo-app"
    ).strip()
    assert out.startswith("http://127.0.0.1:9000/launch?iss=")
    assert "launch=" in out


def test_launch_endpoint_errors_are_operation_outcomes(
    backend: LiveServer, browser: httpx.Client
) -> None:
    anonymous = browser.post("/auth/launch", json={"patient": "demo-patient-munoz"})
    assert anonymous.status_code == 401
    assert anonymous.json()["issue"][0]["code"] == "login"
    system = {"Authorization": f"Bearer {_token(browser, backend, 'RS384').json()['access_token']}"}
    for body, code in [
        (b"not json", "invalid"),
        (b'{"patient": 7}', "invalid"),
        (b'{"pateint": "x"}', "invalid"),
    ]:
        bad = browser.post("/auth/launch", content=body, headers=system)
        assert bad.status_code == 400, bad.text
        outcome = bad.json()
        assert outcome["resourceType"] == "OperationOutcome"
        assert outcome["issue"][0]["code"] == code
    patient = run_cli(backend.settings, "token", "--scope", "patient/*.rs").strip()
    forbidden = browser.post(
        "/auth/launch",
        json={"patient": "demo-patient-munoz"},
        headers={"Authorization": f"Bearer {patient}"},
    )
    assert forbidden.status_code == 403
    assert forbidden.json()["issue"][0]["code"] == "forbidden"
