"""EHR launch (SMART App Launch 2.2 `app-launch.html` "EHR launch"): the launch context's
`user` must be who signs in; only clients registered as launch issuers create contexts."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import LiveServer
from tests.smart.flows import App, bearer, hidden_fields, pkce_pair, query_of, run_cli

CALLBACK = "http://127.0.0.1:9000/callback"
EHR_SCOPE = "launch openid fhirUser patient/*.rs"


@pytest.fixture(scope="module")
def okafor(smart_server: LiveServer) -> tuple[str, str]:
    """A second practitioner login, `okafor`, acting as Practitioner/demo-pract-okafor."""
    password = "okafor-demo-pass"
    run_cli(
        smart_server.settings,
        "users",
        "add",
        "okafor",
        "--fhir-user",
        "Practitioner/demo-pract-okafor",
        "--password-stdin",
        input=f"{password}\n",
    )
    return "okafor", password


def _cli_launch(server: LiveServer, *args: str) -> str:
    """A launch id created by `fhir-server launch` (the administrator's EHR stand-in)."""
    printed = run_cli(server.settings, "launch", "--patient", "demo-patient-munoz", *args)
    return query_of(f"?{printed.strip()}")["launch"]


def test_authorize_ehr_launch_signed_in_as_another_user_access_denied(
    smart_server: LiveServer, browser: httpx.Client, okafor: tuple[str, str]
) -> None:
    launch = _cli_launch(smart_server, "--user", "Practitioner/demo-pract-smith")
    _, challenge = pkce_pair()
    url = App("demo-app", CALLBACK, smart_server.base_url).authorize_url(
        EHR_SCOPE, challenge=challenge, launch=launch
    )
    form = hidden_fields(browser.get(url).text)
    username, password = okafor
    login = browser.post(
        "/auth/authorize", data={**form, "username": username, "password": password}
    )
    assert login.status_code == 302, login.text[:300]
    back = login.headers["location"]
    assert back.startswith(f"{CALLBACK}?")
    params = query_of(back)
    assert params["error"] == "access_denied"
    assert params["state"] == "st-1"
    assert "Practitioner/demo-pract-smith" in params["error_description"]
    assert "code" not in params
    # the sign-in is over: its consent step cannot be posted any more
    consent = browser.post(
        "/auth/authorize", data={"txn": form["txn"], "step": "consent", "decision": "allow"}
    )
    assert consent.status_code == 400
    assert "location" not in consent.headers
    # and the launch was used up
    again = browser.get(url)
    assert again.status_code == 302
    assert query_of(again.headers["location"])["error"] == "invalid_request"
    admin = bearer(run_cli(smart_server.settings, "token", "--scope", "system/*.rs").strip())
    events = browser.get(
        "/fhir/AuditEvent?_count=50&subtype=launch-user-mismatch", headers=admin
    ).json()
    (event,) = [e["resource"] for e in events.get("entry", [])]
    assert event["outcome"] == "4"
    assert event["agent"][0]["who"] == {"reference": "Practitioner/demo-pract-okafor"}
    assert "Practitioner/demo-pract-smith" in event["outcomeDesc"]


def test_authorize_ehr_launch_signed_in_as_its_user_issues_code(
    smart_server: LiveServer, browser: httpx.Client
) -> None:
    from tests.smart.flows import authorize_in_browser

    launch = _cli_launch(smart_server, "--user", "Practitioner/demo-pract-smith")
    _, challenge = pkce_pair()
    url = App("demo-app", CALLBACK, smart_server.base_url).authorize_url(
        EHR_SCOPE, challenge=challenge, launch=launch
    )
    params = query_of(authorize_in_browser(browser, url, "smith", "demo-smith"))
    assert params["state"] == "st-1"
    assert params["code"]
