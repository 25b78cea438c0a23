"""Confidential clients at the token endpoint: a symmetric client authenticates with HTTP
Basic (`client_secret_basic`) or the form (`client_secret_post`), an asymmetric one with a
`private_key_jwt` assertion (SMART App Launch 2.2 `client-confidential-*`); unknown clients and
wrong secrets get `invalid_client` (401)."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.conftest import LiveServer
from tests.smart.flows import (
    App,
    authorize_in_browser,
    client_assertion,
    pkce_pair,
    query_of,
    run_cli,
)

CALLBACK = "http://127.0.0.1:9100/cb"
SCOPE = "launch/patient openid fhirUser patient/Patient.rs"


@pytest.fixture(scope="module")
def secret(smart_server: LiveServer) -> str:
    """A confidential-symmetric client `portal`, registered through the CLI."""
    out = run_cli(
        smart_server.settings,
        "clients",
        "add",
        "portal",
        "--type",
        "confidential-symmetric",
        "--redirect-uri",
        CALLBACK,
        "--scope",
        SCOPE,
    )
    return out.strip().splitlines()[-1]


def _code(server: LiveServer, http: httpx.Client, client_id: str) -> tuple[str, str]:
    verifier, challenge = pkce_pair()
    url = App(client_id, CALLBACK, server.base_url).authorize_url(SCOPE, challenge=challenge)
    return query_of(authorize_in_browser(http, url, "munoz", "demo-munoz"))["code"], verifier


def _form(code: str, verifier: str) -> dict[str, str]:
    return {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": CALLBACK,
        "code_verifier": verifier,
    }


def test_symmetric_client_basic_and_post_authentication(
    smart_server: LiveServer, browser: httpx.Client, secret: str
) -> None:
    code, verifier = _code(smart_server, browser, "portal")
    basic = browser.post("/auth/token", data=_form(code, verifier), auth=("portal", secret))
    assert basic.status_code == 200, basic.text
    assert basic.json()["patient"] == "demo-patient-munoz"
    code, verifier = _code(smart_server, browser, "portal")
    post = browser.post(
        "/auth/token",
        data={**_form(code, verifier), "client_id": "portal", "client_secret": secret},
    )
    assert post.status_code == 200, post.text


def test_symmetric_client_wrong_or_missing_secret_is_invalid_client(
    smart_server: LiveServer, browser: httpx.Client, secret: str
) -> None:
    code, verifier = _code(smart_server, browser, "portal")
    wrong = browser.post("/auth/token", data=_form(code, verifier), auth=("portal", "nope"))
    assert wrong.status_code == 401
    assert wrong.json()["error"] == "invalid_client"
    missing = browser.post("/auth/token", data={**_form(code, verifier), "client_id": "portal"})
    assert missing.status_code == 401
    unknown = browser.post("/auth/token", data={**_form(code, verifier), "client_id": "nobody"})
    assert unknown.status_code == 401
    assert unknown.headers["cache-control"] == "no-store"


def test_code_of_one_client_cannot_be_redeemed_by_another(
    smart_server: LiveServer, browser: httpx.Client, secret: str
) -> None:
    code, verifier = _code(smart_server, browser, "portal")
    stolen = browser.post("/auth/token", data={**_form(code, verifier), "client_id": "demo-app"})
    assert stolen.status_code == 400
    assert stolen.json()["error"] == "invalid_grant"


def test_asymmetric_client_authenticates_with_private_key_jwt(
    smart_server: LiveServer, browser: httpx.Client, tmp_path_factory: pytest.TempPathFactory
) -> None:
    folder = tmp_path_factory.mktemp("keys")
    run_cli(smart_server.settings, "clients", "keygen", str(folder / "app"), "--alg", "ES384")
    run_cli(
        smart_server.settings,
        "clients",
        "add",
        "signed-app",
        "--type",
        "confidential-asymmetric",
        "--jwks-file",
        str(folder / "app.public.json"),
        "--redirect-uri",
        CALLBACK,
        "--scope",
        SCOPE,
    )
    private = json.loads((folder / "app.private.json").read_text())
    code, verifier = _code(smart_server, browser, "signed-app")
    token_url = smart_server.base_url.rsplit("/fhir", 1)[0] + "/auth/token"
    no_assertion = browser.post(
        "/auth/token", data={**_form(code, verifier), "client_id": "signed-app"}
    )
    assert no_assertion.status_code == 401
    code, verifier = _code(smart_server, browser, "signed-app")
    signed = browser.post(
        "/auth/token",
        data={
            **_form(code, verifier),
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": client_assertion(private, "signed-app", token_url, alg="ES384"),
        },
    )
    assert signed.status_code == 200, signed.text
    assert signed.json()["scope"]


def test_ehr_launch_refused_for_an_app_not_registered_for_launch(
    smart_server: LiveServer, browser: httpx.Client, secret: str
) -> None:
    _, challenge = pkce_pair()
    app = App("portal", CALLBACK, smart_server.base_url)
    response = browser.get(app.authorize_url(SCOPE, challenge=challenge, launch="any"))
    assert response.status_code == 302
    assert query_of(response.headers["location"])["error"] == "invalid_scope"
