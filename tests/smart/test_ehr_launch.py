"""EHR launch (SMART App Launch 2.2 `app-launch.html` "EHR launch"): the launch context's
`user` must be who signs in; only clients registered as launch issuers create contexts."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer
from tests.smart.flows import (
    App,
    authorize_in_browser,
    backend_token,
    bearer,
    hidden_fields,
    pkce_pair,
    query_of,
    run_cli,
)

CALLBACK = "http://127.0.0.1:9000/callback"
EHR_SCOPE = "launch openid fhirUser patient/*.rs"
SystemToken = Callable[..., str]


@pytest.fixture(scope="module")
def system_token(smart_server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> SystemToken:
    """`system_token(client_id, *options)`: a client_credentials access token of a backend
    client with one ES384 key, registered through the CLI (`clients add ... *options`) the
    first time it is named."""
    folder = tmp_path_factory.mktemp("ehr-keys")
    settings = smart_server.settings
    run_cli(settings, "clients", "keygen", str(folder / "ehr"), "--alg", "ES384")
    private = json.loads((folder / "ehr.private.json").read_text())
    registered: set[str] = set()

    def token(client_id: str, *options: str) -> str:
        if client_id not in registered:
            run_cli(
                settings,
                "clients",
                "add",
                client_id,
                "--type",
                "backend",
                "--jwks-file",
                str(folder / "ehr.public.json"),
                "--scope",
                "system/*.rs",
                *options,
            )
            registered.add(client_id)
        return backend_token(smart_server.base_url, client_id, private, "system/Patient.rs")

    return token


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


def _post_launch(browser: httpx.Client, token: str) -> httpx.Response:
    """POST /auth/launch with `token`, for a context with the patient Munoz."""
    return browser.post(
        "/auth/launch", json={"patient": "demo-patient-munoz"}, headers=bearer(token)
    )


def _issuer_launch(browser: httpx.Client, system_token: SystemToken) -> dict[str, Any]:
    """The 201 body of a launch created by `ehr-launcher`, a backend client registered with
    `--launch-issuer`."""
    response = _post_launch(browser, system_token("ehr-launcher", "--launch-issuer"))
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


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
    assert query_of(back) == {
        "error": "access_denied",
        "error_description": "The user who signed in is not the user the EHR launched this app for",
        "state": "st-1",
    }  # no code
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
    assert event["outcomeDesc"] == (
        "The EHR launch is for Practitioner/demo-pract-smith, "
        "not for Practitioner/demo-pract-okafor"
    )


def test_authorize_ehr_launch_signed_in_as_its_user_issues_code(
    smart_server: LiveServer, browser: httpx.Client
) -> None:
    launch = _cli_launch(smart_server, "--user", "Practitioner/demo-pract-smith")
    _, challenge = pkce_pair()
    url = App("demo-app", CALLBACK, smart_server.base_url).authorize_url(
        EHR_SCOPE, challenge=challenge, launch=launch
    )
    params = query_of(authorize_in_browser(browser, url, "smith", "demo-smith"))
    assert params["state"] == "st-1"
    assert params["code"]


def test_launch_create_by_client_not_registered_as_launch_issuer_forbidden(
    smart_server: LiveServer, browser: httpx.Client, system_token: SystemToken
) -> None:
    admin = run_cli(smart_server.settings, "token", "--scope", "system/*.cruds").strip()
    for token, who in [(system_token("ehr-reader"), "ehr-reader"), (admin, "fhir-server-cli")]:
        response = _post_launch(browser, token)
        assert response.status_code == 403, response.text
        assert "www-authenticate" not in response.headers  # not a scope problem
        assert response.json() == {
            "resourceType": "OperationOutcome",
            "issue": [
                {
                    "severity": "error",
                    "code": "forbidden",
                    "diagnostics": f"Client {who} is not registered to create launch contexts "
                    "(fhir-server clients add --launch-issuer)",
                }
            ],
        }


def test_launch_create_by_launch_issuer_client_returns_launch_id(
    smart_server: LiveServer, browser: httpx.Client, system_token: SystemToken
) -> None:
    body = _issuer_launch(browser, system_token)
    assert set(body) == {"launch", "expires_in", "iss"}
    assert body["iss"] == smart_server.base_url


def _rewrite_client_record(server: LiveServer, client_id: str, drop: str) -> None:
    """Remove the field `drop` from a stored client record, as a record written before that
    field existed looks (straight in the live server's database)."""
    from fhir_server.storage.factory import open_store

    async def rewrite() -> None:
        store = open_store(server.settings.database_url)
        await store.start()
        try:
            doc: dict[str, Any] | None = await store.get_record("client", client_id)
            assert doc is not None and drop in doc
            del doc[drop]
            await store.put_record("client", client_id, doc)
        finally:
            await store.close()

    asyncio.run(rewrite())


def test_launch_create_by_client_stored_before_launch_issuer_existed_forbidden(
    smart_server: LiveServer, browser: httpx.Client, system_token: SystemToken
) -> None:
    system_token("ehr-old")  # registered (through the CLI) and able to authenticate
    _rewrite_client_record(smart_server, "ehr-old", "launch_issuer")
    response = _post_launch(browser, system_token("ehr-old"))
    assert response.status_code == 403, response.text
    assert response.json()["issue"][0]["code"] == "forbidden"


STYLE_FIELDS = {
    "color_background",
    "color_error",
    "color_highlight",
    "color_modal_backdrop",
    "color_success",
    "color_text",
    "dim_border_radius",
    "dim_font_size",
    "dim_spacing_size",
    "font_family_body",
    "font_family_heading",
    "smart_style_version",
}


def test_token_ehr_launch_without_style_hint_returns_default_smart_style_url(
    smart_server: LiveServer, browser: httpx.Client, system_token: SystemToken
) -> None:
    launch = _issuer_launch(browser, system_token)["launch"]
    verifier, challenge = pkce_pair()
    app = App("demo-app", CALLBACK, smart_server.base_url)
    url = app.authorize_url(f"{EHR_SCOPE} offline_access", challenge=challenge, launch=launch)
    code = query_of(authorize_in_browser(browser, url, "smith", "demo-smith"))["code"]
    token = browser.post(
        "/auth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": CALLBACK,
            "client_id": "demo-app",
            "code_verifier": verifier,
        },
    )
    assert token.status_code == 200, token.text
    style_url = smart_server.base_url.rsplit("/fhir", 1)[0] + "/auth/smart-style.json"
    assert token.json()["patient"] == "demo-patient-munoz"
    assert token.json()["smart_style_url"] == style_url
    refreshed = browser.post(
        "/auth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": token.json()["refresh_token"],
            "client_id": "demo-app",
        },
    )
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["smart_style_url"] == style_url
    style = httpx.get(style_url, headers={"Origin": "https://app.example"})
    assert style.status_code == 200
    assert style.headers["content-type"] == "application/json"
    assert style.headers["access-control-allow-origin"] == "*"
    body = style.json()
    assert set(body) == STYLE_FIELDS
    assert all(isinstance(value, str) for value in body.values())
    assert body["smart_style_version"] == "1"
