"""Test helpers that act as a SMART app and its user's browser against a live server.

`authorize_in_browser` follows `/auth/authorize` the way a person would: it reads each HTML
form (login, patient picker, consent), fills it in and posts it, until the server redirects
to the app's `redirect_uri`; it returns that final URL (with `code` and `state`, or `error`).
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import time
import uuid
from dataclasses import dataclass
from html import unescape
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
from joserfc import jwt
from joserfc.jwk import KeySet

_INPUT = re.compile(r"<input[^>]*>")
_ATTR = re.compile(r'(\w+)="([^"]*)"')


def pkce_pair() -> tuple[str, str]:
    """A PKCE verifier and its S256 challenge."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def hidden_fields(html: str) -> dict[str, str]:
    """The hidden inputs of the page's forms (txn, step)."""
    out: dict[str, str] = {}
    for tag in _INPUT.findall(html):
        attrs = dict(_ATTR.findall(tag))
        if attrs.get("type") == "hidden":
            out[attrs["name"]] = unescape(attrs.get("value", ""))
    return out


def checked_boxes(html: str, name: str) -> list[tuple[str, str]]:
    """The `(name, value)` pairs a browser sends for the checked checkboxes called `name`."""
    out = []
    for tag in _INPUT.findall(html):
        attrs = dict(_ATTR.findall(tag))
        if attrs.get("type") == "checkbox" and attrs.get("name") == name and " checked" in tag:
            out.append((name, unescape(attrs["value"])))
    return out


def radio_values(html: str, name: str) -> list[str]:
    """The values of the radio buttons called `name`."""
    values = []
    for tag in _INPUT.findall(html):
        attrs = dict(_ATTR.findall(tag))
        if attrs.get("type") == "radio" and attrs.get("name") == name:
            values.append(unescape(attrs["value"]))
    return values


def query_of(url: str) -> dict[str, str]:
    """The query parameters of a URL (first values)."""
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def authorize_in_browser(
    http: httpx.Client,
    authorize_url: str,
    username: str,
    password: str,
    patient: str | None = None,
    decision: str = "allow",
) -> str:
    """Drive login, patient picker and consent; return the redirect back to the app."""
    page = http.get(authorize_url)
    assert page.status_code == 200, page.text[:500]
    form = hidden_fields(page.text)
    response = http.post(
        "/auth/authorize", data={**form, "username": username, "password": password}
    )
    for _ in range(3):
        if response.status_code in (302, 303):
            return response.headers["location"]
        assert response.status_code == 200, response.text[:500]
        form = hidden_fields(response.text)
        if form.get("step") == "search" or 'name="patient"' in response.text:
            choices = radio_values(response.text, "patient")
            chosen = patient or choices[0]
            pick = {k: v for k, v in form.items() if k == "txn"}
            response = http.post(
                "/auth/authorize", data={**pick, "step": "pick", "patient": chosen}
            )
        elif form.get("step") == "consent":
            fields = [*form.items(), ("decision", decision), *checked_boxes(response.text, "grant")]
            response = http.post(
                "/auth/authorize",
                content=urlencode(fields),
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
        else:
            raise AssertionError(f"unexpected page: {response.text[:500]}")
    raise AssertionError("the authorization did not finish")


@dataclass
class App:
    """A SMART app registration used by a test."""

    client_id: str
    redirect_uri: str
    base_url: str

    def authorize_url(
        self,
        scope: str,
        *,
        challenge: str | None,
        state: str = "st-1",
        method: str | None = "S256",
        aud: str | None = None,
        **extra: str,
    ) -> str:
        """The `/auth/authorize` URL an app would send its user to."""
        params: dict[str, str] = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "scope": scope,
            "aud": self.base_url if aud is None else aud,
        }
        if state:
            params["state"] = state
        if challenge is not None:
            params["code_challenge"] = challenge
        if method is not None:
            params["code_challenge_method"] = method
        params.update(extra)
        origin = self.base_url.rsplit("/fhir", 1)[0]
        return f"{origin}/auth/authorize?{urlencode(params)}"


def client_assertion(
    private_jwks: dict[str, Any],
    client_id: str,
    token_url: str,
    *,
    alg: str,
    exp_in: int = 240,
    jti: str | None = None,
    kid: str | None = None,
    aud: str | None = None,
) -> str:
    """A `private_key_jwt` client assertion signed with the signing key of `private_jwks`."""
    signing = [k for k in private_jwks["keys"] if "sign" in k.get("key_ops", ["sign"])]
    key = KeySet.import_key_set({"keys": signing}).keys[0]
    now = int(time.time())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": aud or token_url,
        "exp": now + exp_in,
        "iat": now,
        "jti": jti or str(uuid.uuid4()),
    }
    header = {"alg": alg, "kid": kid or key.kid, "typ": "JWT"}
    return jwt.encode(header, claims, key, algorithms=[alg])


ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def backend_token(
    base_url: str, client_id: str, private_jwks: dict[str, Any], scope: str, alg: str = "ES384"
) -> str:
    """A SMART Backend Services access token of `client_id` (client_credentials with a
    `private_key_jwt` assertion signed by `private_jwks`) from the server of `base_url`."""
    token_url = base_url.rsplit("/fhir", 1)[0] + "/auth/token"
    response = httpx.post(
        token_url,
        data={
            "grant_type": "client_credentials",
            "scope": scope,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": client_assertion(private_jwks, client_id, token_url, alg=alg),
        },
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


ACCESS_LOG_LINE = '{"ts":'
"""How a line of the server's access log starts (`fhir_server.api.request_log`)."""


def run_cli(settings: Any, *args: str, input: str | None = None) -> str:
    """Run `fhir-server ARGS` in-process on the live server's database and keys (as an
    administrator would, while the server runs); returns stdout, asserting exit code 0."""
    import os

    from typer.testing import CliRunner

    from fhir_server.cli import app

    env = {
        "FHIR_SERVER_DATABASE_URL": settings.database_url,
        "FHIR_SERVER_BASE_URL": settings.base_url,
        "FHIR_SERVER_SIGNING_KEYS": settings.signing_keys,
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        result = CliRunner().invoke(app, list(args), input=input)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    assert result.exit_code == 0, (result.output, result.exception)
    # CliRunner swaps sys.stdout for the whole process: an access-log line the live server's
    # thread writes meanwhile lands in the command's output; leave those out
    lines = str(result.stdout).splitlines(keepends=True)
    return "".join(line for line in lines if not line.startswith(ACCESS_LOG_LINE))


def patient_token(
    http: httpx.Client,
    base_url: str,
    scope: str,
    username: str = "munoz",
    password: str = "demo-munoz",
    patient: str | None = None,
) -> dict[str, Any]:
    """A token response for the demo app after a full authorization code flow with PKCE
    (checking the redirect, `state` and `Cache-Control: no-store` on the way)."""
    verifier, challenge = pkce_pair()
    app = App("demo-app", "http://127.0.0.1:9000/callback", base_url)
    back = authorize_in_browser(
        http, app.authorize_url(scope, challenge=challenge), username, password, patient
    )
    assert back.startswith(f"{app.redirect_uri}?"), back
    params = query_of(back)
    assert params["state"] == "st-1"
    response = http.post(
        "/auth/token",
        data={
            "grant_type": "authorization_code",
            "code": params["code"],
            "redirect_uri": app.redirect_uri,
            "client_id": app.client_id,
            "code_verifier": verifier,
        },
    )
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body: dict[str, Any] = response.json()
    return body


def patient_bearer(
    base_url: str, scope: str, patient: str = "demo-patient-munoz"
) -> dict[str, str]:
    """The Authorization header of a token of the demo patient `munoz` with `scope`, from a
    full authorization code flow against the server at `base_url` (asserting its patient)."""
    origin = base_url.rsplit("/fhir", 1)[0]
    with httpx.Client(base_url=origin, follow_redirects=False, timeout=30) as http:
        token = patient_token(http, base_url, scope)
    assert token["patient"] == patient
    return bearer(token)


def bearer(token: dict[str, Any] | str) -> dict[str, str]:
    """The Authorization header for a token response (or a bare token)."""
    value = token if isinstance(token, str) else token["access_token"]
    return {"Authorization": f"Bearer {value}"}


def appointment(patient: str, day_offset: int, hour: int, minutes: int = 30) -> dict[str, Any]:
    """A proposed Appointment with Dr. Smith (demo) next week, `hour` local Boston time."""
    import datetime as dt
    from zoneinfo import ZoneInfo

    zone = ZoneInfo("America/New_York")
    today = dt.datetime.now(zone).date()
    monday = today + dt.timedelta(days=7 - today.weekday())
    start = dt.datetime.combine(monday + dt.timedelta(days=day_offset), dt.time(hour), zone)
    end = start + dt.timedelta(minutes=minutes)
    return {
        "resourceType": "Appointment",
        "status": "proposed",
        "start": start.isoformat(),
        "end": end.isoformat(),
        "participant": [
            {"actor": {"reference": "PractitionerRole/demo-role-smith"}, "status": "accepted"},
            {"actor": {"reference": f"Patient/{patient}"}, "status": "accepted"},
        ],
    }


def parameters(resource: dict[str, Any]) -> dict[str, Any]:
    """A Parameters body with one `appointment-resource`."""
    return {
        "resourceType": "Parameters",
        "parameter": [{"name": "appointment-resource", "resource": resource}],
    }
