"""Shared fixtures: the ASGI app on a fresh SQLite file, a live uvicorn server, shared data."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from fhir_server.app import build_repositories, create_app
from fhir_server.config import Settings
from fhir_server.repository import RepositoryFactory
from smart_auth.policy import ScopePolicy
from smart_auth.scopes import ScopeSet
from tests.engines import ALL_ENGINES, make_store

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_data(*parts: str) -> Path:
    """A path under ../shared/data, or skip the test with a clear reason when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(
            f"needs ../shared/data ({path} is absent: the shared data folder beside the repo)"
        )
    return path


def make_settings(tmp_path: Path, **extra: object) -> Settings:
    """Settings for a fresh SQLite file under `tmp_path`. Authorization is off unless the
    test asks for it (`auth=True`, with `base_url`): the FHIR core's tests exercise the core;
    `tests/smart/` exercises authorization."""
    values: dict[str, object] = {
        "database_url": f"sqlite:///{tmp_path / 'fhir.db'}",
        "auth": False,
        "signing_keys": str(tmp_path / "signing-keys.json"),
        "export_dir": str(tmp_path / "exports"),
    }
    values.update(extra)
    return Settings(**values)  # type: ignore[arg-type]


ALL_CLIENTS = (*ALL_ENGINES, "sqlite+token")
"""The API suites run on every engine with authorization off, and on SQLite once more with
authorization on and an administrator's `system/*.cruds` token on every request."""
TEST_BASE_URL = "http://test/fhir"


@pytest.fixture(params=ALL_CLIENTS)
async def client(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client on the app through ASGITransport, lifespan run, on a fresh store of
    each engine (SQLite, mongomock; a real MongoDB when FHIR_SERVER_TEST_MONGODB_URL is set);
    `sqlite+token`: SQLite with authorization on and a system token sent on every request."""
    engine, _, token = str(request.param).partition("+")
    store, drop = make_store(engine, tmp_path)
    settings = (
        make_settings(tmp_path, auth=True, base_url=TEST_BASE_URL)
        if token
        else make_settings(tmp_path)
    )
    app = create_app(settings, store=store)
    try:
        async with app.router.lifespan_context(app):
            headers = {}
            if token:
                minted = await app.state.auth.mint_admin_token("system/*.cruds", 3600)
                headers["Authorization"] = f"Bearer {minted}"
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url=TEST_BASE_URL, headers=headers
            ) as c:
                yield c
    finally:
        if drop is not None:
            await drop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    """uvicorn serving the app on 127.0.0.1 in a background thread; `with_base`: the public
    base URL is configured (as `fhir-server serve` does) even with authorization off."""

    def __init__(self, settings: Settings, *, with_base: bool = False) -> None:
        self.port = _free_port()
        if (settings.auth or with_base) and not settings.base_url:
            settings = settings.model_copy(update={"base_url": self.base_url})
        self.settings = settings
        self.app = create_app(settings)
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/fhir"

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A real uvicorn server on 127.0.0.1 with its own SQLite file (one per test module)."""
    tmp = tmp_path_factory.mktemp("live")
    with LiveServer(make_settings(tmp)) as server:
        yield server


@pytest.fixture(params=ALL_ENGINES)
async def factory(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[RepositoryFactory]:
    """The repositories of a fresh, started store of each engine, wired as the server wires
    them (`fhir_server.app.build_repositories`), base URL `TEST_BASE_URL`; for tests of the
    core without HTTP."""
    store, drop = make_store(request.param, tmp_path)
    await store.start()
    try:
        yield build_repositories(store, make_settings(tmp_path, base_url=TEST_BASE_URL))
    finally:
        if drop is not None:
            await drop()
        await store.close()


def patient_policy(patient: str, scopes: str = "patient/*.cruds") -> ScopePolicy:
    """The policy of a patient app's token for `Patient/{patient}`."""
    return ScopePolicy(ScopeSet.parse(scopes), patient=patient, client_id="app")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
