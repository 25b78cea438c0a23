"""Backend clients registered with a JWKS URL (`--jwks-url`): their keys are read from that URL
(a tiny HTTP server on 127.0.0.1 here, counting its requests), read again when an assertion
names a kid the cached set lacks, but not more than once per `JWKS_REFETCH_SECONDS` per URL."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer
from tests.smart.flows import client_assertion, run_cli

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@dataclass
class JwksHost:
    """What the JWKS URL publishes, and how many times it was read."""

    url: str = ""
    published: dict[str, Any] = field(default_factory=dict)
    fetches: int = 0

    def publish(self, public_file: Path) -> None:
        """Publish (only) the JWK Set in `public_file`."""
        self.published = json.loads(public_file.read_text())


@pytest.fixture
def jwks_host() -> Iterator[JwksHost]:
    """An HTTP server on 127.0.0.1 serving one JWK Set at `/jwks.json`."""
    host = JwksHost()
    lock = threading.Lock()

    class Jwks(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            with lock:
                host.fetches += 1
            body = json.dumps(host.published).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            return None

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Jwks)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    host.url = f"http://127.0.0.1:{httpd.server_address[1]}/jwks.json"
    try:
        yield host
    finally:
        httpd.shutdown()
        httpd.server_close()


Ask = Callable[..., httpx.Response]


@pytest.fixture
def keys_and_client(
    smart_server: LiveServer, jwks_host: JwksHost, tmp_path: Path
) -> tuple[Path, Ask]:
    """Two key pairs made by the CLI (`one`: ES384, `two`: RS384) in a folder, `one`
    published, and a backend client registered with the JWKS URL; returns the folder and
    `ask(key_name, alg, kid=None)`, a client_credentials request signed with that key."""
    settings = smart_server.settings
    run_cli(settings, "clients", "keygen", str(tmp_path / "one"), "--alg", "ES384")
    run_cli(settings, "clients", "keygen", str(tmp_path / "two"), "--alg", "RS384")
    jwks_host.publish(tmp_path / "one.public.json")
    client_id = "ehr-url"
    run_cli(
        settings,
        *("clients", "add", client_id, "--type", "backend", "--jwks-url", jwks_host.url),
        *("--scope", "system/Patient.rs"),
    )
    token_url = smart_server.base_url.rsplit("/fhir", 1)[0] + "/auth/token"

    def ask(key: str, alg: str, kid: str | None = None) -> httpx.Response:
        private = json.loads((tmp_path / f"{key}.private.json").read_text())
        jwt = client_assertion(private, client_id, token_url, alg=alg, kid=kid)
        return httpx.post(
            token_url,
            data={
                "grant_type": "client_credentials",
                "scope": "system/Patient.rs",
                "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": jwt,
            },
        )

    return tmp_path, ask


def test_client_credentials_unknown_kid_refetches_jwks_at_most_once_per_interval(
    smart_server: LiveServer,
    jwks_host: JwksHost,
    keys_and_client: tuple[Path, Ask],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder, ask = keys_and_client
    with ThreadPoolExecutor(max_workers=5) as pool:
        first = list(pool.map(lambda _: ask("one", "ES384"), range(5)))  # a cold cache
        assert [r.status_code for r in first] == [200] * 5
        assert jwks_host.fetches == 1  # one read shared by concurrent requests
        refused = list(pool.map(lambda _: ask("one", "ES384", kid="rotated-away"), range(20)))
    for response in refused:
        assert response.status_code == 401
        assert response.json() == {
            "error": "invalid_client",
            "error_description": "No key of the client's JWKS has kid 'rotated-away'",
        }
    assert jwks_host.fetches == 1  # refused from the cached set, the URL left alone
    jwks_host.publish(folder / "two.public.json")  # a genuine rotation...
    assert ask("two", "RS384").status_code == 401  # ...within the interval: not read yet
    assert jwks_host.fetches == 1
    from smart_auth.client_auth import JWKS_REFETCH_SECONDS

    cache = smart_server.app.state.auth.jwks
    later = time.monotonic() + JWKS_REFETCH_SECONDS + 1
    monkeypatch.setattr(cache, "clock", lambda: later)
    rotated = ask("two", "RS384")  # after it: read again, the new key is found
    assert rotated.status_code == 200, rotated.text
    assert jwks_host.fetches == 2
    assert ask("one", "ES384").status_code == 401  # no longer published
    assert jwks_host.fetches == 2
