"""`AuthServer.policy` on a token it has seen before (`smart_auth.server`): the signature is
not checked again, but the token's expiry, its grant's revocation and the rate limits still
are, on every request. In process, on SQLite, against the authorization server itself."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fhir_server.app import create_app
from resources.errors import TooManyRequests, Unauthorized
from smart_auth.grants import Grant
from smart_auth.server import AuthServer
from smart_auth.tokens import mint_access_token
from tests.conftest import make_settings

BASE = "http://test/fhir"


@pytest.fixture
async def auth(tmp_path: Path) -> AsyncIterator[AuthServer]:
    """The authorization server of an app with a user limit of 3 and a client limit of 5
    requests a minute."""
    settings = make_settings(
        tmp_path, auth=True, base_url=BASE, rate_limit_per_user=3, rate_limit_per_client=5
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        server: AuthServer = app.state.auth
        yield server


async def _token(auth: AuthServer, subject: str, lifetime: int = 3600) -> tuple[str, str]:
    """`(Authorization header value, grant id)` of a fresh user token of client `app1`."""
    grant = Grant(id=f"g-{subject}", client_id="app1", scope="user/*.rs", subject=subject)
    await auth.grants.save(grant, 3600)
    token, _ = mint_access_token(
        auth.server_keys(),
        base_url=BASE,
        subject=subject,
        client_id="app1",
        scope="user/*.rs",
        grant=grant.id,
        lifetime=lifetime,
    )
    return f"Bearer {token}", grant.id


def _wait_for_a_fresh_minute() -> None:
    """The limits count fixed UTC minutes: a test must not straddle two."""
    second = time.time() % 60
    if second > 55:
        time.sleep(60 - second + 0.1)


async def test_a_token_seen_before_is_refused_once_it_expires(auth: AuthServer) -> None:
    header, _ = await _token(auth, "u1", lifetime=1)
    policy = await auth.policy(header)
    assert policy.client_id == "app1"
    assert (await auth.policy(header)) is policy  # remembered: the same policy, no re-check
    await asyncio.sleep(2.05)  # `exp` is in whole seconds: past it for sure
    with pytest.raises(Unauthorized, match="expired"):
        await auth.policy(header)


async def test_a_token_seen_before_is_refused_once_its_grant_is_revoked(auth: AuthServer) -> None:
    header, grant = await _token(auth, "u2")
    await auth.policy(header)
    await auth.policy(header)
    assert await auth.grants.revoke(grant)
    with pytest.raises(Unauthorized, match="revoked"):
        await auth.policy(header)


async def test_every_request_of_a_token_seen_before_counts_against_both_limits(
    auth: AuthServer,
) -> None:
    _wait_for_a_fresh_minute()
    first, _ = await _token(auth, "u3")
    for _ in range(3):
        await auth.policy(first)
    with pytest.raises(TooManyRequests, match="this user"):
        await auth.policy(first)
    # app1 has 3 requests counted (the refused one stopped at the user's limit): 2 more
    second, _ = await _token(auth, "u4")
    await auth.policy(second)
    await auth.policy(second)
    with pytest.raises(TooManyRequests, match="this app"):
        await auth.policy(second)
