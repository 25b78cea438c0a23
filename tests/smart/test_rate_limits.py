"""Rate limits on a live server with small limits (`smart_auth.rate_limits`): per signed-in
user, per client, sign-ins per address; the administrator's CLI tokens are not limited. Each
refusal is 429 with Retry-After and an OperationOutcome `throttled` (an HTML page for the
sign-in form). Counting across processes: tests/e2e/test_workers.py."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest

from fhir_server.cli import _load_demo
from tests.conftest import LiveServer, make_settings
from tests.smart.flows import (
    App,
    bearer,
    hidden_fields,
    patient_token,
    pkce_pair,
    run_cli,
)

READ = "/fhir/Patient/demo-patient-munoz"


def fresh_window() -> None:
    """Wait for a new UTC minute if this one ends within 5 s (the limits' windows are
    fixed minutes: a test must not straddle two)."""
    second = time.time() % 60
    if second > 55:
        time.sleep(60 - second + 0.1)


@pytest.fixture
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    tmp = tmp_path_factory.mktemp("limits")
    settings = make_settings(
        tmp, auth=True, rate_limit_per_user=5, rate_limit_per_client=8, logins_per_minute=4
    )
    server = LiveServer(settings)
    assert asyncio.run(_load_demo(server.settings)) > 0
    with server:
        yield server


def _throttled(response: httpx.Response, words: str) -> None:
    assert response.status_code == 429, response.text
    assert 1 <= int(response.headers["retry-after"]) <= 60
    issue = response.json()["issue"][0]
    assert issue["code"] == "throttled" and words in issue["diagnostics"], issue


def test_user_then_client_limits_and_admin_tokens_unlimited(limited: LiveServer) -> None:
    fresh_window()
    origin = limited.base_url.rsplit("/fhir", 1)[0]
    with httpx.Client(base_url=origin, follow_redirects=False, timeout=30) as http:
        munoz = bearer(patient_token(http, limited.base_url, "launch/patient patient/*.rs"))
        smith = bearer(
            patient_token(
                http,
                limited.base_url,
                "launch/patient patient/*.rs",
                "smith",
                "demo-smith",
                "demo-patient-munoz",
            )
        )
        for _ in range(5):
            assert http.get(READ, headers=munoz).status_code == 200
        _throttled(http.get(READ, headers=munoz), "requests a minute for this user")
        # the app made 5 counted requests so far: Dr. Smith gets 3 more, then the app's limit
        for _ in range(3):
            assert http.get(READ, headers=smith).status_code == 200
        _throttled(http.get(READ, headers=smith), "requests a minute for this app")
        admin = bearer(run_cli(limited.settings, "token", "--scope", "system/*.rs").strip())
        for _ in range(20):
            assert http.get(READ, headers=admin).status_code == 200


def test_sign_ins_are_limited_per_address(limited: LiveServer) -> None:
    fresh_window()
    origin = limited.base_url.rsplit("/fhir", 1)[0]
    _, challenge = pkce_pair()
    app = App("demo-app", "http://127.0.0.1:9000/callback", limited.base_url)
    with httpx.Client(base_url=origin, follow_redirects=False, timeout=30) as http:
        login = http.get(app.authorize_url("launch/patient patient/*.rs", challenge=challenge))
        fields = hidden_fields(login.text)
        statuses = []
        for n in range(5):
            form = {**fields, "username": f"nobody-{n}", "password": "wrong-password"}
            answer = http.post("/auth/authorize", data=form)
            statuses.append(answer.status_code)
        assert statuses == [401, 401, 401, 401, 429]
        assert "Too many sign-ins" in answer.text and "retry-after" in answer.headers
        # the right password is refused too until the window ends
        right = {**fields, "username": "munoz", "password": "demo-munoz"}
        assert http.post("/auth/authorize", data=right).status_code == 429
