"""The web app's browser tests: Debian's chromium (`make browser` installs it; no browser
download) driven by Playwright, against `fhir-server`'s app on uvicorn (127.0.0.1) with the
demo clinic and authorization on."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tarfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest

from fhir_server.cli import _load_demo
from tests.conftest import LiveServer, make_settings

T = TypeVar("T")


def off_loop(fn: Callable[..., T], *args: Any) -> T:
    """Run `fn` in another thread: Playwright's sync API keeps an event loop running in this
    one, so code that calls `asyncio.run` (the demo loader, the CLI) runs beside it."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(fn, *args).result()


CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
"""Flags for this machine's closed network (no background connections)."""


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """A headless Debian chromium under Playwright, for one test module: Playwright's sync
    API keeps an event loop running in this thread while it is open, which the suites after
    this one (calling `asyncio.run`) must not find."""
    path = shutil.which("chromium")
    if path is None:
        pytest.skip("Debian's chromium is not installed: `make browser` installs it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def portal_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """uvicorn on 127.0.0.1 with authorization on, its own SQLite file and the demo clinic.
    One module's browser sessions act as the same few users within a minute, far faster
    than a person clicks (the provider flow alone sends ~150 requests as Dr. Smith): the
    per-user rate limit is raised so it cannot decide a test (tests/smart/test_rate_limits.py
    tests it)."""
    settings = make_settings(
        tmp_path_factory.mktemp("portal"), auth=True, rate_limit_per_user=10_000
    )
    server = LiveServer(settings)
    assert off_loop(lambda: asyncio.run(_load_demo(server.settings))) > 0
    with server:
        yield server


AXE_VERSION = "4.14.1"


@pytest.fixture(scope="session")
def axe_source(tmp_path_factory: pytest.TempPathFactory) -> str:
    """axe-core (npm, MPL-2.0) for accessibility checks run in the page: fetched once with
    `npm pack axe-core@AXE_VERSION` into ~/.cache/fhir-server-tests (never committed)."""
    cache = Path.home() / ".cache" / "fhir-server-tests" / f"axe-core-{AXE_VERSION}"
    script = cache / "axe.min.js"
    if not script.exists():
        if shutil.which("npm") is None:
            pytest.skip("npm is not installed: axe-core cannot be fetched")
        cache.mkdir(parents=True, exist_ok=True)
        work = tmp_path_factory.mktemp("axe")
        subprocess.run(
            ["npm", "pack", f"axe-core@{AXE_VERSION}", "--silent"],
            cwd=work,
            check=True,
            capture_output=True,
            timeout=120,
        )
        with tarfile.open(work / f"axe-core-{AXE_VERSION}.tgz") as archive:
            member = archive.extractfile("package/axe.min.js")
            assert member is not None
            script.write_bytes(member.read())
    return script.read_text()


@pytest.fixture(scope="session")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go: `$PORTAL_SCREENSHOTS` (`make screenshots` sets docs/screenshots,
    the README's), else the test run's artefacts folder."""
    chosen = os.environ.get("PORTAL_SCREENSHOTS")
    folder = Path(chosen) if chosen else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def page(chromium: Any) -> Iterator[Any]:
    """A fresh browser context and page (no cookies or storage from other tests)."""
    context = chromium.new_context(viewport={"width": 1024, "height": 800})
    page = context.new_page()
    yield page
    context.close()
