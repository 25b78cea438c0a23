"""Signing keys (generated on first start, `kid` = RFC 7638 thumbprint, rotation keeping the
old key published) and login hygiene (throttling, a patient cannot pick another patient)."""

from __future__ import annotations

import os
import stat

import httpx
from joserfc.jwk import KeySet

from tests.conftest import LiveServer
from tests.smart.flows import App, bearer, hidden_fields, pkce_pair, run_cli


def test_jwks_public_only_kid_is_thumbprint_and_key_file_private(
    smart_server: LiveServer, browser: httpx.Client
) -> None:
    jwks = browser.get("/auth/jwks").json()
    assert {k["alg"] for k in jwks["keys"]} == {"RS256", "ES384"}
    for key in jwks["keys"]:
        assert not {"d", "p", "q"} & set(key)
        assert KeySet.import_key_set({"keys": [key]}).keys[0].thumbprint() == key["kid"]
    mode = os.stat(smart_server.settings.signing_keys).st_mode
    assert stat.S_IMODE(mode) == 0o600


def test_key_rotation_keeps_old_tokens_valid_and_signs_with_the_new_key(
    smart_server: LiveServer, browser: httpx.Client
) -> None:
    before = {k["kid"] for k in browser.get("/auth/jwks").json()["keys"]}
    old = run_cli(smart_server.settings, "token", "--scope", "system/Patient.rs").strip()
    printed = run_cli(smart_server.settings, "keys", "rotate")
    assert printed.count("active") == 2 and printed.count("retired") >= 2
    new = run_cli(smart_server.settings, "token", "--scope", "system/Patient.rs").strip()
    assert browser.get("/fhir/Patient?_count=1", headers=bearer(new)).status_code == 200
    assert browser.get("/fhir/Patient?_count=1", headers=bearer(old)).status_code == 200
    after = {k["kid"] for k in browser.get("/auth/jwks").json()["keys"]}
    assert before < after  # the retired keys stay published until their tokens expire


def _login_form(server: LiveServer, browser: httpx.Client) -> dict[str, str]:
    """The hidden fields of a fresh login page of the demo app."""
    _, challenge = pkce_pair()
    app = App("demo-app", "http://127.0.0.1:9000/callback", server.base_url)
    url = app.authorize_url("launch/patient patient/*.rs", challenge=challenge)
    return hidden_fields(browser.get(url).text)


def test_five_wrong_passwords_lock_the_username(
    smart_server: LiveServer, browser: httpx.Client
) -> None:
    form = _login_form(smart_server, browser)
    codes = [
        browser.post(
            "/auth/authorize", data={**form, "username": "smith", "password": "x"}
        ).status_code
        for _ in range(6)
    ]
    assert codes == [401] * 5 + [429]
    right = browser.post(
        "/auth/authorize", data={**form, "username": "smith", "password": "demo-smith"}
    )
    assert right.status_code == 429  # locked for the window, even with the right password
    assert "Too many failed sign-ins" in right.text


def test_patient_user_cannot_list_or_pick_other_patients(
    smart_server: LiveServer, browser: httpx.Client
) -> None:
    form = _login_form(smart_server, browser)
    consent = browser.post(
        "/auth/authorize", data={**form, "username": "munoz", "password": "demo-munoz"}
    )
    assert "It will open the record of <strong>José Muñoz</strong>" in consent.text  # no picker
    txn = {"txn": form["txn"]}
    listing = browser.post("/auth/authorize", data={**txn, "step": "search", "q": "m"})
    assert listing.status_code == 403
    pick = browser.post(
        "/auth/authorize", data={**txn, "step": "pick", "patient": "demo-patient-muller"}
    )
    assert pick.status_code == 403


def test_cli_users_add_then_that_user_signs_in(
    smart_server: LiveServer, browser: httpx.Client
) -> None:
    from tests.smart.flows import patient_token

    run_cli(
        smart_server.settings,
        "users",
        "add",
        "jdoe",
        "--fhir-user",
        "Practitioner/demo-pract-smith",
        "--password-stdin",
        input="correct horse battery\n",
    )
    token = patient_token(
        browser,
        smart_server.base_url,
        "openid fhirUser user/Patient.rs",
        username="jdoe",
        password="correct horse battery",
    )
    assert token["scope"] == "openid fhirUser user/Patient.rs"
    found = browser.get("/fhir/Patient?_count=3", headers=bearer(token))
    assert found.status_code == 200 and len(found.json()["entry"]) == 3


def test_cli_token_is_revoked_by_posting_it_with_itself_as_bearer(
    smart_server: LiveServer, browser: httpx.Client
) -> None:
    token = run_cli(smart_server.settings, "token", "--scope", "system/Patient.rs").strip()
    other = run_cli(smart_server.settings, "token", "--scope", "system/Patient.rs").strip()
    assert browser.get("/fhir/Patient?_count=1", headers=bearer(token)).status_code == 200
    # another grant's bearer may not revoke it: ignored (RFC 7009 answers 200 either way)
    assert browser.post("/auth/revoke", data={"token": token}, headers=bearer(other)).is_success
    assert browser.get("/fhir/Patient?_count=1", headers=bearer(token)).status_code == 200
    # a forged bearer is refused outright
    refused = browser.post("/auth/revoke", data={"token": token}, headers=bearer(token + "x"))
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_token"
    revoked = browser.post("/auth/revoke", data={"token": token}, headers=bearer(token))
    assert revoked.status_code == 200 and revoked.headers["cache-control"] == "no-store"
    gone = browser.get("/fhir/Patient?_count=1", headers=bearer(token))
    assert gone.status_code == 401 and gone.json()["resourceType"] == "OperationOutcome"
    assert browser.get("/fhir/Patient?_count=1", headers=bearer(other)).status_code == 200
    # a missing token parameter is an OAuth invalid_request, bearer or not
    empty = browser.post("/auth/revoke", data={}, headers=bearer(other))
    assert empty.status_code == 400 and empty.json()["error"] == "invalid_request"
