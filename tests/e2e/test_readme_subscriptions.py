"""The README's Subscriptions walkthrough works as printed: run as one bash script (the
receiver, the Subscription, a booking) against a live server with the demo clinic and
authorization on, with the README's `TOKEN`, on a free port instead of 9999."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import LiveServer, _free_port
from tests.e2e.test_readme import as_run_here, readme_block
from tests.e2e.test_readme import demo_server as demo_server  # noqa: PLC0414 (fixture)
from tests.e2e.test_readme import token as token  # noqa: PLC0414 (fixture)


def test_readme_subscription_walkthrough_receives_the_booking(
    demo_server: LiveServer, token: str, tmp_path: Path
) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    script = readme_block("<!-- readme-subscriptions")
    script = as_run_here(script, demo_server).replace("9999", str(_free_port()))
    done = subprocess.run(
        ["bash", "-c", script],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, "TOKEN": token},
    )
    assert done.returncode == 0, done.stderr
    bundles = [
        json.loads(line)
        for line in done.stdout.splitlines()
        if line.startswith('{"resourceType":"Bundle"')
    ]
    kinds = [
        next(p["valueCode"] for p in b["entry"][0]["resource"]["parameter"] if p["name"] == "type")
        for b in bundles
    ]
    assert kinds == ["handshake", "event-notification"], done.stdout[:2000]
    appointment = bundles[1]["entry"][1]["resource"]
    assert appointment["resourceType"] == "Appointment"
    assert appointment["status"] == "booked"
