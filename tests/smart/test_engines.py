"""The authorization server on every storage engine (SQLite, mongomock; a real MongoDB when
FHIR_SERVER_TEST_MONGODB_URL is set): codes, grants, refresh rotation, assertion `jti`s and
revocation all live in the engine's record store, so each flow runs on each engine, in
process through ASGITransport."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from fhir_server.app import create_app
from fhir_server.demo_access import register_demo_access
from smart_auth.registry import Client
from tests.conftest import make_settings, shared_data
from tests.engines import ALL_ENGINES, make_store
from tests.smart.flows import (
    App,
    checked_boxes,
    client_assertion,
    hidden_fields,
    pkce_pair,
    query_of,
)

BASE = "http://test/fhir"
TOKEN_URL = "http://test/auth/token"


@pytest.fixture(params=ALL_ENGINES)
async def http(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client on the app with authorization on, over a fresh store of each engine,
    with the demo access (app and logins) and a backend client with the spec's RS384 key."""
    store, drop = make_store(request.param, tmp_path)
    app = create_app(make_settings(tmp_path, auth=True, base_url=BASE), store=store)
    try:
        async with app.router.lifespan_context(app):
            await register_demo_access(store)
            public = json.loads(
                (shared_data("smart-app-launch-ig") / "RS384.public.json").read_text()
            )
            await app.state.auth.registry.save_client(
                Client("ehr", "backend", scope="system/*.rs", jwks=public)
            )
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
                c.headers["X-Test-Engine"] = request.param
                yield c
    finally:
        if drop is not None:
            await drop()


async def _code_flow(http: httpx.AsyncClient, scope: str, replay: bool) -> dict[str, Any]:
    verifier, challenge = pkce_pair()
    app = App("demo-app", "http://127.0.0.1:9000/callback", BASE)
    page = await http.get(app.authorize_url(scope, challenge=challenge))
    consent = await http.post(
        "/auth/authorize",
        data={**hidden_fields(page.text), "username": "munoz", "password": "demo-munoz"},
    )
    fields = [
        *hidden_fields(consent.text).items(),
        ("decision", "allow"),
        *checked_boxes(consent.text, "grant"),
    ]
    back = await http.post(
        "/auth/authorize",
        content=urlencode(fields),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert back.status_code == 302, back.text
    code = query_of(back.headers["location"])["code"]
    exchange = {
        "grant_type": "authorization_code",
        "code": code,
        "client_id": "demo-app",
        "redirect_uri": app.redirect_uri,
        "code_verifier": verifier,
    }
    token = await http.post("/auth/token", data=exchange)
    assert token.status_code == 200, token.text
    body: dict[str, Any] = token.json()
    if replay:
        again = await http.post("/auth/token", data=exchange)
        assert again.json()["error"] == "invalid_grant"
    return body


async def test_code_flow_refresh_rotation_and_replay_on_each_engine(
    http: httpx.AsyncClient,
) -> None:
    first = await _code_flow(http, "launch/patient offline_access patient/Patient.rs", True)
    auth = {"Authorization": f"Bearer {first['access_token']}"}
    assert (await http.get("/fhir/Patient", headers=auth)).status_code == 401  # code replayed
    second = await _code_flow(http, "launch/patient offline_access patient/Patient.rs", False)
    auth = {"Authorization": f"Bearer {second['access_token']}"}
    found = (await http.get("/fhir/Patient", headers=auth)).json()
    assert [e["resource"]["id"] for e in found.get("entry", [])] == []  # no demo clinic loaded
    refreshed = await http.post(
        "/auth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": second["refresh_token"],
            "client_id": "demo-app",
        },
    )
    assert refreshed.status_code == 200, refreshed.text
    reused = await http.post(
        "/auth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": second["refresh_token"],
            "client_id": "demo-app",
        },
    )
    assert reused.json()["error"] == "invalid_grant"
    newer = {"Authorization": f"Bearer {refreshed.json()['access_token']}"}
    assert (await http.get("/fhir/Patient", headers=newer)).status_code == 401  # grant revoked


async def test_backend_jti_replay_and_revocation_on_each_engine(http: httpx.AsyncClient) -> None:
    private = json.loads((shared_data("smart-app-launch-ig") / "RS384.private.json").read_text())
    assertion = client_assertion(private, "ehr", TOKEN_URL, alg="RS384")
    form = {
        "grant_type": "client_credentials",
        "scope": "system/Patient.rs",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion,
    }
    token = await http.post("/auth/token", data=form)
    assert token.status_code == 200, token.text
    again = await http.post("/auth/token", data=form)
    assert again.status_code == 401
    access = token.json()["access_token"]
    auth = {"Authorization": f"Bearer {access}"}
    assert (await http.get("/fhir/Patient", headers=auth)).status_code == 200
    revoke = {
        **form,
        "token": access,
        "client_assertion": client_assertion(
            private, "ehr", "http://test/auth/revoke", alg="RS384"
        ),
    }
    assert (await http.post("/auth/revoke", data=revoke)).status_code == 200
    assert (await http.get("/fhir/Patient", headers=auth)).status_code == 401
