"""A standalone patient launch by the JS SMART client `fhirclient` (npm, 2.6.3), unmodified,
through its Node API (`require("fhirclient")(request, response, storage)`), driven by
`tests/smart/js/smart_launch.mjs`.

What the library does, read from its source (`lib/smart.js`, `lib/security/server.js`):

* Discovery: `authorize()` calls `getSecurityExtensions(iss)`, which GETs
  `[iss]/.well-known/smart-configuration` and takes `authorization_endpoint`,
  `token_endpoint`, `registration_endpoint` and `code_challenge_methods_supported`; only when
  that request fails (or lacks the two endpoints) does it fall back to `/metadata`'s
  `oauth-uris` extension, and then it knows no code challenge methods. The state it stores
  therefore tells which document was used: `codeChallengeMethods == ["S256"]` can only come
  from the well-known document.
* PKCE: `pkceMode` defaults to "ifSupported": a `code_challenge` (S256 of a base64url
  verifier of 96 random bytes, 128 characters) is sent exactly when the server lists `S256` in
  `code_challenge_methods_supported` ("required" throws when it does not, "disabled" never
  sends one, "unsafeV1" always does). The verifier is kept in the session state and sent as
  `code_verifier` in the token request. No option is needed against this server.
* `aud` is the `iss` as given; the token request of a public client carries `client_id` in
  the form (no Basic header); the `patient` of the token response becomes `client.patient.id`
  and the `id_token`'s `fhirUser` claim `client.user.fhirUser`.
* Node: storage defaults to `request.session`; the script passes its own storage (a JSON file)
  so that `authorize()` and `ready()` run in two processes, like two requests to a web app.
  `authorize({noRedirect: true})` returns the authorize URL instead of writing a 302; the
  Python side plays the browser (`authorize_in_browser`) and hands the callback URL to
  `ready()`, which exchanges the code.

fhirclient is installed with npm into a cache outside the repository
(`$XDG_CACHE_HOME/fhir-scheduling-tests/js`, default `~/.cache/...`), once, from
`tests/smart/js/package.json`. The test is skipped only when `node` or `npm` is missing.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.conftest import LiveServer
from tests.smart.flows import authorize_in_browser, query_of
from tests.smart.test_fhirclient_python import FAMILY_MEDICINE, find_window, next_monday

JS_DIR = Path(__file__).parent / "js"
SCRIPT = JS_DIR / "smart_launch.mjs"
REDIRECT_URI = "http://127.0.0.1:9000/callback"
SCOPE = "openid fhirUser launch/patient offline_access patient/*.cruds"
PATIENT = "demo-patient-munoz"
DR_SMITH = "PractitionerRole/demo-role-smith"
NPM_TIMEOUT = 600
NODE_TIMEOUT = 60


def _cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "fhir-scheduling-tests" / "js"


def _wanted_version() -> str:
    manifest = json.loads((JS_DIR / "package.json").read_text())
    version: str = manifest["dependencies"]["fhirclient"]
    return version


def _installed_version(prefix: Path) -> str | None:
    manifest = prefix / "node_modules" / "fhirclient" / "package.json"
    if not manifest.is_file():
        return None
    version: str = json.loads(manifest.read_text())["version"]
    return version


@pytest.fixture(scope="module")
def fhirclient_prefix() -> Path:
    """A folder whose node_modules holds the pinned fhirclient (npm install on first use)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are needed to run the JS fhirclient (not found on PATH)")
    prefix = _cache_dir()
    prefix.mkdir(parents=True, exist_ok=True)
    wanted = _wanted_version()
    with (prefix / ".install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one installer at a time (parallel runs)
        if _installed_version(prefix) != wanted:
            shutil.copyfile(JS_DIR / "package.json", prefix / "package.json")
            for _attempt in range(3):  # a registry hiccup is retried, not a red CI
                done = subprocess.run(
                    [
                        npm,
                        "install",
                        "--no-audit",
                        "--no-fund",
                        "--ignore-scripts",
                        "--loglevel=error",
                    ],
                    cwd=prefix,
                    capture_output=True,
                    text=True,
                    timeout=NPM_TIMEOUT,
                    check=False,
                )
                if done.returncode == 0:
                    break
            assert done.returncode == 0, f"npm install failed:\n{done.stdout}\n{done.stderr}"
        assert _installed_version(prefix) == wanted
    return prefix


def _node(prefix: Path, *args: str) -> dict[str, Any]:
    """Run the launch script; its one line of stdout is JSON."""
    node = shutil.which("node")
    assert node is not None
    env = {**os.environ, "FHIRCLIENT_PREFIX": str(prefix), "NO_COLOR": "1"}
    done = subprocess.run(
        [node, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=NODE_TIMEOUT,
        env=env,
        check=False,
    )
    assert done.returncode == 0, f"node {args[0]} failed:\n{done.stderr}\n{done.stdout}"
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_fhirclient_js_standalone_launch_reads_patient_and_books(
    smart_server: LiveServer, browser: httpx.Client, fhirclient_prefix: Path, tmp_path: Path
) -> None:
    base = smart_server.base_url
    session = tmp_path / "session.json"
    options = {"iss": base, "clientId": "demo-app", "redirectUri": REDIRECT_URI, "scope": SCOPE}
    started = _node(fhirclient_prefix, "authorize", str(session), json.dumps(options))

    discovered = browser.get("/fhir/.well-known/smart-configuration").json()
    state = started["state"]
    assert state["authorizeUri"] == discovered["authorization_endpoint"]
    assert state["tokenUri"] == discovered["token_endpoint"]
    assert state["codeChallengeMethods"] == ["S256"]  # only the well-known JSON says so
    assert len(state["codeVerifier"]) == 128
    url = started["authorizeUrl"]
    assert url.startswith(f"{discovered['authorization_endpoint']}?"), url
    sent = query_of(url)
    assert sent["code_challenge"] == state["codeChallenge"]
    assert sent["code_challenge_method"] == "S256"
    assert sent["aud"] == base
    assert sent["state"] == started["key"]
    assert (sent["client_id"], sent["redirect_uri"], sent["scope"]) == (
        "demo-app",
        REDIRECT_URI,
        SCOPE,
    )

    back = authorize_in_browser(browser, url, "munoz", "demo-munoz")
    assert back.startswith(f"{REDIRECT_URI}?"), back
    assert "code" in query_of(back), back

    find = {
        **find_window(),
        "specialty": FAMILY_MEDICINE,
        "practitioner": "Practitioner/demo-pract-smith",
        "patient-reference": f"Patient/{PATIENT}",
        "_count": "3",
    }
    done = _node(fhirclient_prefix, "ready", str(session), back, json.dumps({"find": find}))

    assert done["patientId"] == PATIENT
    assert done["fhirUser"].endswith("Patient/demo-patient-munoz")
    token = done["tokenResponse"]
    assert token["patient"] == PATIENT
    assert token["hasAccessToken"] and token["hasRefreshToken"] and token["hasIdToken"]
    assert set(token["scope"].split()) == set(SCOPE.split())
    assert (done["patient"]["resourceType"], done["patient"]["id"]) == ("Patient", PATIENT)

    proposal = done["proposal"]
    assert proposal["status"] == "proposed"
    bundle = done["booked"]
    assert bundle["resourceType"] == "Bundle"
    (entry,) = bundle["entry"]
    booked = entry["resource"]
    assert (booked["resourceType"], booked["id"], booked["status"]) == (
        "Appointment",
        proposal["id"],
        "booked",
    )
    actors = {p["actor"]["reference"] for p in booked["participant"]}
    assert {f"Patient/{PATIENT}", DR_SMITH} <= actors
    local = datetime.fromisoformat(booked["start"]).astimezone(ZoneInfo("America/New_York"))
    assert local.date() == next_monday() and 9 <= local.hour < 17
