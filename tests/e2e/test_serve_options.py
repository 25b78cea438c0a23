"""`fhir-server serve` as operators run it: HTTPS with `--ssl-certfile/--ssl-keyfile`, and a
graceful stop (SIGTERM: the request in flight is answered, the leases are given up so
another process takes the work over at once instead of after their 5 s lifetime)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import _free_port

SWEEPER_TOOK = "Hold sweeper: took the lease holds:sweeper"


def _serve(tmp: Path, port: int, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "FHIR_SERVER_DATABASE_URL": f"sqlite:///{tmp / 'fhir.db'}",
        "FHIR_SERVER_AUTH": "off",
        "FHIR_SERVER_ACCESS_LOG": "false",
    }
    command = [str(Path(sys.executable).parent / "fhir-server"), "serve", "--port", str(port)]
    command += ["--workers", "1", "--log-level", "info", *extra]
    with log.open("wb") as out:
        return subprocess.Popen(command, env=env, stdout=out, stderr=out)


def _ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            if httpx.get(url, timeout=1, verify=False).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(log.read_text())


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_https_with_a_certificate_and_its_base_url(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    port, log = _free_port(), tmp_path / "tls.log"
    server = _serve(tmp_path, port, log, "--ssl-certfile", str(cert), "--ssl-keyfile", str(key))
    try:
        _ready(f"https://127.0.0.1:{port}/healthz", server, log)
        trusted = ssl.create_default_context(cafile=str(cert))
        answer = httpx.get(f"https://127.0.0.1:{port}/fhir/Patient", verify=trusted)
        assert answer.status_code == 200
        links = [link["url"] for link in answer.json()["link"]]
        assert all(url.startswith(f"https://127.0.0.1:{port}/fhir/") for url in links), links
        assert "FHIR base URL: https://" in log.read_text()
        try:  # plain HTTP on the TLS port is refused
            plain = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
            assert plain.status_code >= 400
        except httpx.HTTPError:
            pass
    finally:
        server.terminate()
        server.wait(timeout=20)


def test_sigterm_answers_the_request_in_flight_and_gives_the_leases_up(tmp_path: Path) -> None:
    first_port, second_port = _free_port(), _free_port()
    first = _serve(tmp_path, first_port, tmp_path / "first.log")
    _ready(f"http://127.0.0.1:{first_port}/readyz", first, tmp_path / "first.log")
    deadline = time.monotonic() + 10
    while SWEEPER_TOOK not in (tmp_path / "first.log").read_text():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    second = _serve(tmp_path, second_port, tmp_path / "second.log")
    try:
        _ready(f"http://127.0.0.1:{second_port}/readyz", second, tmp_path / "second.log")
        time.sleep(1.5)  # the second process has tried the lease and found it held
        assert SWEEPER_TOOK not in (tmp_path / "second.log").read_text()
        entries = [
            {
                "resource": {"resourceType": "Patient", "id": f"inflight-{n}"},
                "request": {"method": "PUT", "url": f"Patient/inflight-{n}"},
            }
            for n in range(400)
        ]
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
        answers: list[httpx.Response] = []
        sender = threading.Thread(
            target=lambda: answers.append(
                httpx.post(f"http://127.0.0.1:{first_port}/fhir", json=bundle, timeout=60)
            )
        )
        sender.start()
        time.sleep(0.15)  # the transaction is being processed
        first.send_signal(signal.SIGTERM)
        stopped = time.monotonic()
        sender.join(timeout=60)
        assert answers and answers[0].status_code == 200, answers
        # uvicorn finishes the shutdown, then re-raises the signal for its supervisor
        assert first.wait(timeout=30) in (0, -signal.SIGTERM)
        assert "Application shutdown complete" in (tmp_path / "first.log").read_text()
        while SWEEPER_TOOK not in (tmp_path / "second.log").read_text():
            # a released lease is taken at the next renewal (every second), not after 5 s
            assert time.monotonic() - stopped < 3.5, (tmp_path / "second.log").read_text()
            time.sleep(0.05)
        found = httpx.get(f"http://127.0.0.1:{second_port}/fhir/Patient/inflight-399")
        assert found.status_code == 200
    finally:
        for process in (first, second):
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=20)
