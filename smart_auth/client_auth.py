"""Client authentication at the token, introspection and revocation endpoints.

RFC 6749 §2.3.1 (`client_secret_basic`, `client_secret_post`), RFC 7523 / SMART App Launch
2.2 `client-confidential-asymmetric` and `backend-services` (`private_key_jwt`): the assertion
is a JWT signed RS384 or ES384 (an explicit list: `alg: none`, HMAC and anything else are
refused) by a key of the client's registered JWKS or JWKS URL, with `iss` = `sub` = client id,
`aud` = the token endpoint URL, `exp` in the future and at most 5 minutes ahead, and a `jti`
never used before. Public clients send only `client_id`.

A JWKS URL is read when its cached set lapses (`JWKS_CACHE_SECONDS`) and again when an
assertion names a `kid` the cached set lacks (the client may have rotated its keys), but never
twice within `JWKS_REFETCH_SECONDS`: inside that interval an unknown `kid` is refused from the
cached set at once, so assertions cannot make us hammer a client's JWKS URL.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import math
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import unquote

import httpx
import orjson
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from joserfc.jws import extract_compact

from smart_auth.grants import Grants
from smart_auth.registry import Client, Registry, verify_secret

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_ALGS = ("RS384", "ES384")
MAX_ASSERTION_SECONDS = 300
JWKS_CACHE_SECONDS = 300
JWKS_REFETCH_SECONDS = 10.0
"""The shortest time (seconds) between two reads of one client's JWKS URL, whatever
assertions arrive: a forced re-read for an unknown `kid` waits this long after the last read."""


class OAuthError(Exception):
    """An OAuth error response (RFC 6749 §5.2): `error` code, description, HTTP status."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status


def bad_client(description: str) -> OAuthError:
    """`invalid_client` (401): the client could not be authenticated (RFC 6749 §5.2)."""
    return OAuthError("invalid_client", description, 401)


class JwksCache:
    """Clients' JWKS fetched from their `jwks_uri` (httpx), cached for `JWKS_CACHE_SECONDS`;
    one URL is read at most once per `refetch_seconds`.

    Args:
        refetch_seconds: the shortest time between two reads of one URL (seconds).
        clock: monotonic seconds (`time.monotonic`; tests move it forward).
    """

    def __init__(
        self,
        refetch_seconds: float = JWKS_REFETCH_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.refetch_seconds = refetch_seconds
        self.clock = clock
        self._cache: dict[str, tuple[float, dict[str, Any]]] = {}
        self._read_at: dict[str, float] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def get(self, uri: str, *, fresh: bool = False) -> dict[str, Any]:
        """The JWK Set at `uri`: the cached one while it is valid, unless `fresh` asks for a
        new read, which happens only when the last read (or attempt) is `refetch_seconds`
        old; until then the cached set answers. Concurrent callers of one URL share a read.

        Raises:
            OAuthError: `invalid_client` (401) if it cannot be fetched, or nothing valid is
                cached and the last attempt failed under `refetch_seconds` ago.
        """
        valid = self._valid(uri)
        if valid is not None and not fresh:
            return valid
        async with self._locks.setdefault(uri, asyncio.Lock()):  # one read at a time per URL
            valid = self._valid(uri)
            now = self.clock()
            if now - self._read_at.get(uri, -math.inf) < self.refetch_seconds:
                if valid is not None:
                    return valid
                raise bad_client("The client's JWKS URL could not be read; try again later")
            self._read_at[uri] = now
            data = await _fetch_jwks(uri)
            self._cache[uri] = (now + JWKS_CACHE_SECONDS, data)
            return data

    def _valid(self, uri: str) -> dict[str, Any] | None:
        hit = self._cache.get(uri)
        return hit[1] if hit and hit[0] > self.clock() else None


async def _fetch_jwks(uri: str) -> dict[str, Any]:
    """GET a JWK Set (10 s timeout, no redirects). Raises OAuthError(invalid_client)."""
    try:
        async with httpx.AsyncClient(timeout=10, follow_redirects=False) as http:
            response = await http.get(uri, headers={"Accept": "application/json"})
        response.raise_for_status()
        data = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise bad_client("The client's JWKS URL could not be read") from exc
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise bad_client("The client's JWKS URL holds no JWK Set")
    return data


def _basic(headers: Mapping[str, str]) -> tuple[str, str] | None:
    value = headers.get("authorization", "")
    if not value.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(value[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise bad_client("Malformed HTTP Basic credentials") from exc
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        raise bad_client("Malformed HTTP Basic credentials")
    return unquote(client_id), unquote(secret)


async def authenticate_client(
    form: Mapping[str, str],
    headers: Mapping[str, str],
    registry: Registry,
    grants: Grants,
    token_url: str,
    jwks: JwksCache,
) -> Client:
    """The client making this request, authenticated as its registration demands.

    Raises:
        OAuthError: `invalid_client` (401) for an unknown client, a wrong secret or a bad
            assertion; `invalid_request` (400) when no client is named.
    """
    basic = _basic(headers)
    assertion = form.get("client_assertion")
    client_id = basic[0] if basic else form.get("client_id")
    if assertion is not None:
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            raise bad_client(f"client_assertion_type must be {ASSERTION_TYPE}")
        return await _assertion_client(assertion, client_id, registry, grants, token_url, jwks)
    if not client_id:
        raise OAuthError("invalid_request", "No client identified (client_id missing)")
    client = await registry.client(client_id)
    if client is None:
        raise bad_client("Unknown client")
    secret = basic[1] if basic else form.get("client_secret")
    if client.type == "confidential-symmetric":
        if not secret or not client.secret_hash or not verify_secret(client.secret_hash, secret):
            raise bad_client("Client authentication failed")
    elif client.asymmetric:
        raise bad_client("This client must authenticate with a private_key_jwt assertion")
    elif secret:
        raise bad_client("A public client has no secret")
    return client


async def _assertion_client(
    assertion: str,
    named: str | None,
    registry: Registry,
    grants: Grants,
    token_url: str,
    jwks: JwksCache,
) -> Client:
    try:
        compact = extract_compact(assertion.encode())
        header = compact.protected
        unverified = orjson.loads(compact.payload)
    except (JoseError, ValueError) as exc:
        raise bad_client("The client assertion is not a JWS") from exc
    alg = header.get("alg")
    if alg not in ASSERTION_ALGS:
        raise OAuthError(
            "invalid_client",
            f"Client assertions must be signed with {' or '.join(ASSERTION_ALGS)}, not {alg!r}",
            401,
        )
    issuer = unverified.get("iss") if isinstance(unverified, dict) else None
    client_id = named or issuer
    client = await registry.client(str(client_id)) if client_id else None
    if client is None or not client.asymmetric:
        raise bad_client("Unknown client or not registered for private_key_jwt")
    key_set = await _client_keys(client, jwks, fresh=False)
    kid = header.get("kid")
    try:
        key = key_set.get_by_kid(kid) if kid else None
    except (ValueError, JoseError):
        key = None
    if key is None and client.jwks_uri:  # rotated? read its JWKS again (JWKS_REFETCH_SECONDS)
        key_set = await _client_keys(client, jwks, fresh=True)
        try:
            key = key_set.get_by_kid(kid) if kid else None
        except (ValueError, JoseError):
            key = None
    if key is None:
        raise bad_client(f"No key of the client's JWKS has kid {kid!r}")
    try:
        claims = jwt.decode(assertion, key, algorithms=[str(alg)]).claims
    except (JoseError, ValueError) as exc:
        raise bad_client("The client assertion's signature is invalid") from exc
    _check_assertion_claims(claims, client.client_id, token_url)
    if not await grants.use_jti(client.client_id, str(claims["jti"]), int(claims["exp"])):
        raise bad_client("The client assertion's jti was used before")
    return client


def _check_assertion_claims(claims: dict[str, Any], client_id: str, token_url: str) -> None:
    now = time.time()
    if claims.get("iss") != client_id or claims.get("sub") != client_id:
        raise bad_client("The assertion's iss and sub must be the client id")
    aud = claims.get("aud")
    if aud != token_url and not (isinstance(aud, list) and token_url in aud):
        raise bad_client(f"The assertion's aud must be {token_url}")
    exp = claims.get("exp")
    if not isinstance(exp, int | float) or exp <= now:
        raise bad_client("The client assertion has expired")
    if exp > now + MAX_ASSERTION_SECONDS + 5:
        raise bad_client("The assertion's exp is more than 5 minutes ahead")
    if not isinstance(claims.get("jti"), str) or not claims["jti"]:
        raise bad_client("The client assertion has no jti")


async def _client_keys(client: Client, jwks: JwksCache, *, fresh: bool) -> KeySet:
    data = client.jwks if client.jwks else None
    if data is None and client.jwks_uri:
        data = await jwks.get(client.jwks_uri, fresh=fresh)
    if not data:
        raise bad_client("The client has no registered keys")
    usable = [
        k for k in data.get("keys", []) if isinstance(k, dict) and k.get("kty") in ("RSA", "EC")
    ]
    try:
        return KeySet.import_key_set({"keys": usable})
    except (JoseError, ValueError) as exc:
        raise bad_client("The client's JWKS cannot be read") from exc
