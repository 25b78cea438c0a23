"""The README's waitlist walkthrough works as printed: run as one bash script against a live
server with the demo clinic, authorization on and a real SMTP server (aiosmtpd) on
127.0.0.1; José Muñoz's offer mail arrives and its `Confirm booking` link books him."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from aiosmtpd.controller import Controller

from fhir_server.cli import _load_demo
from tests.conftest import LiveServer, _free_port, make_settings
from tests.e2e.test_readme import as_run_here, readme_block, server_env
from tests.subscriptions.receiver import Mailbox


def test_readme_waitlist_walkthrough_offers_and_books(tmp_path: Path) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    box, port = Mailbox(), _free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    settings = make_settings(
        tmp_path, auth=True, smtp_url=f"smtp://127.0.0.1:{port}", dispatch_seconds=0.5
    )
    server = LiveServer(settings)
    assert asyncio.run(_load_demo(server.settings)) > 0
    try:
        with server:
            script = as_run_here(readme_block("<!-- readme-waitlist"), server)
            done = subprocess.run(
                ["bash", "-c", script],
                check=False,
                capture_output=True,
                text=True,
                timeout=60,
                cwd=tmp_path,
                env=server_env(server),
            )
            assert done.returncode == 0, done.stderr
            assert '"status":"waitlist"' in done.stdout, done.stdout[:2000]
            deadline, offer = time.monotonic() + 20, None
            while offer is None and time.monotonic() < deadline:
                offer = next((m for m in list(box.messages) if "free" in str(m["Subject"])), None)
                time.sleep(0.05)
            assert offer is not None, [m["Subject"] for m in box.messages]
            assert offer["To"] == "munoz@patients.example"
            found = re.search(r"Confirm booking: (\S+)", offer.get_content())
            assert found is not None
            with httpx.Client(timeout=15, headers={"Accept": "text/html"}) as page:
                assert "Confirm booking</button>" in page.get(found.group(1)).text
                booked = page.post(found.group(1))
            assert booked.status_code == 200 and "Booked" in booked.text, booked.text
    finally:
        controller.stop()
