"""Authorization request and code exchange refusals, as Inferno's SMART App Launch STU2.2
tests check them: PKCE missing/blank/plain/wrong, bad `aud`, unknown client and unregistered
`redirect_uri` refused without a redirect, missing `state`, code replay, consent denied."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import LiveServer
from tests.smart.flows import App, authorize_in_browser, pkce_pair, query_of

SCOPE = "launch/patient openid fhirUser patient/*.rs"
CALLBACK = "http://127.0.0.1:9000/callback"


def _app(server: LiveServer, client_id: str = "demo-app", redirect: str = CALLBACK) -> App:
    return App(client_id, redirect, server.base_url)


def _code(server: LiveServer, browser: httpx.Client) -> tuple[str, str]:
    verifier, challenge = pkce_pair()
    back = authorize_in_browser(
        browser, _app(server).authorize_url(SCOPE, challenge=challenge), "munoz", "demo-munoz"
    )
    return query_of(back)["code"], verifier


def _exchange(browser: httpx.Client, code: str, verifier: str | None) -> httpx.Response:
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": CALLBACK,
        "client_id": "demo-app",
    }
    if verifier is not None:
        data["code_verifier"] = verifier
    return browser.post("/auth/token", data=data)


@pytest.mark.parametrize(
    ("client_id", "redirect", "aud"),
    [
        ("no-such-app", CALLBACK, None),
        ("demo-app", "http://127.0.0.1:9000/elsewhere", None),
        ("demo-app", "https://attacker.example/cb", None),
        ("demo-app", CALLBACK, "https://other.example/fhir"),
    ],
    ids=["unknown-client", "unregistered-redirect", "foreign-redirect", "bad-aud"],
)
def test_authorize_untrusted_request_refused_without_redirect(
    smart_server: LiveServer,
    browser: httpx.Client,
    client_id: str,
    redirect: str,
    aud: str | None,
) -> None:
    _, challenge = pkce_pair()
    url = _app(smart_server, client_id, redirect).authorize_url(SCOPE, challenge=challenge, aud=aud)
    response = browser.get(url)
    assert response.status_code == 400
    assert "location" not in response.headers
    assert "Authorization refused" in response.text


@pytest.mark.parametrize(
    ("challenge", "method"),
    [(None, None), ("", "S256"), ("abc", "plain"), ("abc", None)],
    ids=["missing", "blank", "plain", "no-method"],
)
def test_authorize_without_s256_pkce_redirects_invalid_request(
    smart_server: LiveServer, browser: httpx.Client, challenge: str | None, method: str | None
) -> None:
    url = _app(smart_server).authorize_url(SCOPE, challenge=challenge, method=method)
    response = browser.get(url)
    assert response.status_code == 302
    params = query_of(response.headers["location"])
    assert params["error"] == "invalid_request"
    assert params["state"] == "st-1"


def test_authorize_without_state_redirects_invalid_request(
    smart_server: LiveServer, browser: httpx.Client
) -> None:
    _, challenge = pkce_pair()
    response = browser.get(_app(smart_server).authorize_url(SCOPE, challenge=challenge, state=""))
    assert response.status_code == 302
    assert query_of(response.headers["location"])["error"] == "invalid_request"


def test_token_wrong_or_missing_verifier_is_invalid_grant(
    smart_server: LiveServer, browser: httpx.Client
) -> None:
    code, _ = _code(smart_server, browser)
    wrong = _exchange(browser, code, "x" * 50)
    assert wrong.status_code == 400
    assert wrong.json()["error"] == "invalid_grant"
    code, _ = _code(smart_server, browser)
    missing = _exchange(browser, code, None)
    assert missing.status_code == 400
    assert missing.json()["error"] == "invalid_request"


def test_code_replay_is_refused_and_revokes_the_first_token(
    smart_server: LiveServer, browser: httpx.Client
) -> None:
    code, verifier = _code(smart_server, browser)
    first = _exchange(browser, code, verifier)
    assert first.status_code == 200, first.text
    token = first.json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    assert browser.get("/fhir/Patient/demo-patient-munoz", headers=auth).status_code == 200
    replay = _exchange(browser, code, verifier)
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"
    assert browser.get("/fhir/Patient/demo-patient-munoz", headers=auth).status_code == 401


def test_wrong_password_shows_login_again_and_denied_consent_redirects_access_denied(
    smart_server: LiveServer, browser: httpx.Client
) -> None:
    from tests.smart.flows import hidden_fields

    _, challenge = pkce_pair()
    url = _app(smart_server).authorize_url(SCOPE, challenge=challenge)
    page = browser.get(url)
    wrong = browser.post(
        "/auth/authorize",
        data={**hidden_fields(page.text), "username": "munoz", "password": "nope"},
    )
    assert wrong.status_code == 401
    assert "Wrong username or password" in wrong.text
    back = authorize_in_browser(browser, url, "munoz", "demo-munoz", decision="deny")
    params = query_of(back)
    assert params["error"] == "access_denied"
    assert params["state"] == "st-1"


def test_practitioner_login_picks_a_patient_for_launch_patient(
    smart_server: LiveServer, browser: httpx.Client
) -> None:
    verifier, challenge = pkce_pair()
    url = _app(smart_server).authorize_url(
        "launch/patient openid fhirUser user/Appointment.rs patient/*.rs", challenge=challenge
    )
    back = authorize_in_browser(browser, url, "smith", "demo-smith", patient="demo-patient-muller")
    token = _exchange(browser, query_of(back)["code"], verifier).json()
    assert token["patient"] == "demo-patient-muller"
    introspected = browser.post(
        "/auth/introspect",
        data={"token": token["access_token"]},
        headers={"Authorization": f"Bearer {token['access_token']}"},
    ).json()
    assert introspected["active"] is True
    assert introspected["fhirUser"] == "Practitioner/demo-pract-smith"
    assert introspected["patient"] == "demo-patient-muller"


def test_introspection_and_revocation(smart_server: LiveServer, browser: httpx.Client) -> None:
    code, verifier = _code(smart_server, browser)
    token = _exchange(browser, code, verifier).json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    active = browser.post("/auth/introspect", data={"token": token}, headers=auth).json()
    assert active["active"] is True
    assert active["client_id"] == "demo-app"
    assert active["patient"] == "demo-patient-munoz"
    inactive = browser.post("/auth/introspect", data={"token": "garbage"}, headers=auth).json()
    assert inactive == {"active": False}
    revoked = browser.post("/auth/revoke", data={"token": token, "client_id": "demo-app"})
    assert revoked.status_code == 200
    assert browser.get("/fhir/Patient/demo-patient-munoz", headers=auth).status_code == 401
    code, verifier = _code(smart_server, browser)
    other = _exchange(browser, code, verifier).json()["access_token"]
    after = browser.post(
        "/auth/introspect", data={"token": token}, headers={"Authorization": f"Bearer {other}"}
    ).json()
    assert after == {"active": False}


def test_user_may_allow_only_some_scopes(smart_server: LiveServer, browser: httpx.Client) -> None:
    from urllib.parse import urlencode

    from tests.smart.flows import checked_boxes, hidden_fields

    verifier, challenge = pkce_pair()
    scope = "launch/patient patient/Patient.rs patient/Appointment.rs"
    page = browser.get(_app(smart_server).authorize_url(scope, challenge=challenge))
    consent = browser.post(
        "/auth/authorize",
        data={**hidden_fields(page.text), "username": "munoz", "password": "demo-munoz"},
    )
    boxes = checked_boxes(consent.text, "grant")
    assert sorted(v for _, v in boxes) == sorted(scope.split())
    kept = [b for b in boxes if b[1] != "patient/Appointment.rs"]
    form = [*hidden_fields(consent.text).items(), ("decision", "allow"), *kept]
    back = browser.post(
        "/auth/authorize",
        content=urlencode(form),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    token = _exchange(browser, query_of(back.headers["location"])["code"], verifier).json()
    assert token["scope"] == "launch/patient patient/Patient.rs"
    auth = {"Authorization": f"Bearer {token['access_token']}"}
    assert browser.get("/fhir/Appointment", headers=auth).status_code == 403
    page = browser.get(_app(smart_server).authorize_url(scope, challenge=challenge))
    consent = browser.post(
        "/auth/authorize",
        data={**hidden_fields(page.text), "username": "munoz", "password": "demo-munoz"},
    )
    none = browser.post(
        "/auth/authorize", data={**hidden_fields(consent.text), "decision": "allow"}
    )
    assert query_of(none.headers["location"])["error"] == "access_denied"
