"""A real HTTP receiver of rest-hook notifications on 127.0.0.1, in a background thread.

It records every request (method, path, headers, body, time of receipt) and answers 200, or
`fail_status` (500) for the first `fail_first` requests. `stop()` closes the port (the
endpoint is then down: connections are refused) and `start()` opens it again on the same
port. `Mailbox` is the aiosmtpd handler of a real SMTP server that keeps every message.
"""

from __future__ import annotations

import email
import email.policy
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.conftest import _free_port


@dataclass(frozen=True)
class Received:
    """One request as the receiver saw it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


class Receiver:
    """The receiver (module docstring)."""

    def __init__(self, fail_first: int = 0, fail_status: int = 500) -> None:
        self.port = _free_port()
        self.fail_first = fail_first
        self.fail_status = fail_status
        self.requests: list[Received] = []
        self.failed = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with receiver._lock:
                    if receiver.failed < receiver.fail_first:
                        receiver.failed += 1
                        status = receiver.fail_status
                    else:
                        status = 200
                        receiver.requests.append(
                            Received(self.command, self.path, dict(self.headers), body, time.time())
                        )
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_PUT = do_POST = do_DELETE = _any  # noqa: N815 (http.server names)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def wait_for(self, n: int, timeout: float = 15.0) -> list[Received]:
        """The first `n` requests received, waiting up to `timeout` seconds for them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.requests) >= n:
                    return list(self.requests)
            time.sleep(0.02)
        with self._lock:
            raise AssertionError(f"received {len(self.requests)} of {n}: {self.requests}")


class Mailbox:
    """aiosmtpd handler keeping every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.lock:
            self.messages.append(message)  # type: ignore[arg-type]
        return "250 OK"

    def wait_for(self, n: int, timeout: float = 15.0) -> list[email.message.EmailMessage]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.messages) >= n:
                    return list(self.messages)
            time.sleep(0.02)
        raise AssertionError(f"received {len(self.messages)} of {n} messages")
