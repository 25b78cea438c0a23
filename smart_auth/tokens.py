"""Access tokens and id tokens: JWTs signed by the server's own key (joserfc).

An access token (SMART.md "Rules that matter") is a JWS with `kid` in its header and claims
`iss` (the FHIR base URL), `aud` (the FHIR base URL), `sub`, `client_id`, `scope`, `grant` (the
server-side grant record, so revocation bites at once), `jti`, `iat`, `exp` (seconds since the
epoch), and `patient`, `encounter`, `fhirUser` when in context. The id token (OpenID Connect
Core §2) has `iss`, `sub`, `aud` = client id, `nonce`, `fhirUser` (an absolute URL).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jws import extract_compact

from smart_auth.keys import SIGNING_ALG, ServerKeys

ACCEPTED_ALGS = ["RS256", "ES384"]


class InvalidToken(Exception):
    """The bearer token is not one of ours, is expired, or was tampered with."""


@dataclass(frozen=True, slots=True)
class AccessClaims:
    """The verified claims of an access token."""

    subject: str
    client_id: str
    scope: str
    grant: str
    jti: str
    issued_at: int
    expires_at: int
    patient: str | None = None
    encounter: str | None = None
    fhir_user: str | None = None


def mint_access_token(
    keys: ServerKeys,
    *,
    base_url: str,
    subject: str,
    client_id: str,
    scope: str,
    grant: str,
    lifetime: int,
    patient: str | None = None,
    encounter: str | None = None,
    fhir_user: str | None = None,
) -> tuple[str, AccessClaims]:
    """Sign an access token valid for `lifetime` seconds; returns it and its claims."""
    now = int(time.time())
    claims = AccessClaims(
        subject=subject,
        client_id=client_id,
        scope=scope,
        grant=grant,
        jti=secrets.token_urlsafe(16),
        issued_at=now,
        expires_at=now + lifetime,
        patient=patient,
        encounter=encounter,
        fhir_user=fhir_user,
    )
    payload: dict[str, Any] = {
        "iss": base_url,
        "aud": base_url,
        "sub": subject,
        "client_id": client_id,
        "scope": scope,
        "grant": grant,
        "jti": claims.jti,
        "iat": now,
        "exp": claims.expires_at,
    }
    for name, value in (("patient", patient), ("encounter", encounter), ("fhirUser", fhir_user)):
        if value:
            payload[name] = value
    return _sign(keys, payload), claims


def mint_id_token(
    keys: ServerKeys,
    *,
    base_url: str,
    subject: str,
    client_id: str,
    lifetime: int,
    fhir_user: str | None,
    nonce: str | None,
    name: str | None = None,
) -> str:
    """Sign an OpenID Connect id token for `client_id` (`fhirUser` as an absolute URL)."""
    now = int(time.time())
    payload: dict[str, Any] = {
        "iss": base_url,
        "sub": subject,
        "aud": client_id,
        "iat": now,
        "exp": now + lifetime,
        "auth_time": now,
    }
    if fhir_user:
        payload["fhirUser"] = f"{base_url}/{fhir_user}"
    if nonce:
        payload["nonce"] = nonce
    if name:
        payload["name"] = name
    return _sign(keys, payload)


def _sign(keys: ServerKeys, payload: dict[str, Any]) -> str:
    key = keys.signing(SIGNING_ALG)
    header = {"alg": key.alg, "kid": key.kid, "typ": "JWT"}
    return jwt.encode(header, payload, keys.private_jwk(key), algorithms=[key.alg])


def verify_access_token(keys: ServerKeys, token: str, base_url: str) -> AccessClaims:
    """Check signature (our live keys, RS256/ES384 only), `iss`, `aud` and `exp`.

    Raises:
        InvalidToken: with a short reason (never the token itself).
    """
    try:
        decoded = jwt.decode(token, keys.verification_set(), algorithms=ACCEPTED_ALGS)
    except (JoseError, ValueError) as exc:
        raise InvalidToken(f"the token is not a valid signed JWT of this server ({exc})") from exc
    c = decoded.claims
    if c.get("iss") != base_url or c.get("aud") != base_url:
        raise InvalidToken("the token was not issued for this FHIR server")
    exp = c.get("exp")
    if not isinstance(exp, int) or exp <= time.time():
        raise InvalidToken("the token has expired")
    try:
        return AccessClaims(
            subject=str(c["sub"]),
            client_id=str(c["client_id"]),
            scope=str(c["scope"]),
            grant=str(c["grant"]),
            jti=str(c["jti"]),
            issued_at=int(c["iat"]),
            expires_at=exp,
            patient=c.get("patient"),
            encounter=c.get("encounter"),
            fhir_user=c.get("fhirUser"),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidToken("the token lacks required claims") from exc


def token_kid(token: str) -> str | None:
    """The `kid` of a JWS header, without verifying anything (None if unreadable)."""
    try:
        header = extract_compact(token.encode()).protected
    except (JoseError, ValueError):
        return None
    kid = header.get("kid")
    return kid if isinstance(kid, str) else None
