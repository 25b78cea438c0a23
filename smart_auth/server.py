"""The authorization server's core: token grants, introspection, revocation, bearer checks.

No HTTP here (the endpoints are in `smart_auth.routes`): inputs are form fields, outputs are
the JSON bodies of SMART App Launch 2.2 / RFC 6749 §5.1, errors are `OAuthError`s.

Grant types (`/auth/token`):

* `authorization_code` — PKCE S256 required (RFC 7636), `redirect_uri` equal to the one
  authorized, the same client; the response carries `patient`/`encounter` in context,
  `id_token` for `openid`, `refresh_token` only with `offline_access`/`online_access`, and on
  EHR launch `need_patient_banner` and `smart_style_url`;
* `refresh_token` — rotation; a narrower `scope` may be asked, never a wider one;
* `client_credentials` — backend services with a `private_key_jwt` assertion, `system/` scopes.
"""

from __future__ import annotations

import hmac
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from authlib.oauth2.rfc7636 import create_s256_code_challenge

from resources.errors import Unauthorized
from smart_auth.client_auth import JwksCache, OAuthError, authenticate_client
from smart_auth.grants import Grant, Grants
from smart_auth.keys import KeyFile, KeyRecords, ServerKeys, load_keys
from smart_auth.policy import ScopePolicy
from smart_auth.registry import Client, Registry
from smart_auth.scopes import ScopeSet
from smart_auth.tokens import (
    AccessClaims,
    InvalidToken,
    mint_access_token,
    mint_id_token,
    token_kid,
    verify_access_token,
)

KEY_RELOAD_SECONDS = 5.0
VERIFIED_CACHE = 4096  # tokens whose signature and claims were checked (LRU), per process
AuditHook = Callable[[str, dict[str, Any]], Awaitable[None]]
"""Records an authorization event: `(event code, details)`; see `smart_auth.audit`."""


@dataclass(frozen=True, slots=True)
class AuthSettings:
    """What the authorization server needs to know.

    Attributes:
        base_url: the public FHIR base URL (`iss` and the required `aud`).
        access_seconds / refresh_seconds / code_seconds / launch_seconds: lifetimes.
        default_tz: zone for index extraction in compartment checks.
    """

    base_url: str
    access_seconds: int = 3600
    refresh_seconds: int = 90 * 24 * 3600
    code_seconds: int = 60
    launch_seconds: int = 3600
    default_tz: str = "UTC"

    @property
    def origin(self) -> str:
        """`scheme://host:port` of the base URL (where `/auth/...` lives)."""
        scheme, _, rest = self.base_url.partition("://")
        return f"{scheme}://{rest.split('/', 1)[0]}"

    def endpoint(self, name: str) -> str:
        """The absolute URL of `/auth/{name}`."""
        return f"{self.origin}/auth/{name}"


def pkce_s256(verifier: str) -> str:
    """BASE64URL(SHA256(verifier)) without padding (RFC 7636 §4.2), by authlib."""
    return str(create_s256_code_challenge(verifier))


class AuthServer:
    """Tokens for registered clients, over one RecordStore.

    Args:
        settings: URLs and lifetimes.
        registry: clients and users.
        grants: grant, code, refresh and launch records.
        keys: where the signing keys live.
        audit: records authorization events (None: not recorded).
    """

    def __init__(
        self,
        settings: AuthSettings,
        registry: Registry,
        grants: Grants,
        keys: KeyFile | KeyRecords,
        audit: AuditHook | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.grants = grants
        self.key_source = keys
        self.keys: ServerKeys | None = None
        self.jwks = JwksCache()
        self.audit = audit
        self._reload_after = 0.0
        self._verified: OrderedDict[str, tuple[AccessClaims, ScopePolicy]] = OrderedDict()

    async def start(self) -> None:
        """Load (or generate) the signing keys."""
        self.keys = await load_keys(self.key_source, self._retention())

    def _retention(self) -> int:
        return max(self.settings.access_seconds, 300)

    def server_keys(self) -> ServerKeys:
        """The loaded key set."""
        assert self.keys is not None, "AuthServer.start() was not awaited"
        return self.keys

    async def _record(self, event: str, **details: Any) -> None:
        if self.audit is not None:
            await self.audit(event, details)

    # -- /auth/token ------------------------------------------------------------------------

    async def token(self, form: Mapping[str, str], headers: Mapping[str, str]) -> dict[str, Any]:
        """Answer a token request (RFC 6749 §5.1 body).

        Raises:
            OAuthError: `invalid_request`, `invalid_client` (401), `invalid_grant`,
                `unauthorized_client`, `unsupported_grant_type`, `invalid_scope`.
        """
        grant_type = form.get("grant_type")
        if grant_type not in ("authorization_code", "refresh_token", "client_credentials"):
            raise OAuthError(
                "unsupported_grant_type", f"grant_type {grant_type!r} is not supported"
            )
        try:
            client = await authenticate_client(
                form,
                headers,
                self.registry,
                self.grants,
                self.settings.endpoint("token"),
                self.jwks,
            )
            if grant_type == "authorization_code":
                return await self._authorization_code(client, form)
            if grant_type == "refresh_token":
                return await self._refresh(client, form)
            return await self._client_credentials(client, form)
        except OAuthError as exc:
            await self._record(
                "token-denied",
                client_id=form.get("client_id"),
                grant_type=grant_type,
                reason=exc.description,
            )
            raise

    async def _authorization_code(self, client: Client, form: Mapping[str, str]) -> dict[str, Any]:
        if client.type == "backend":
            raise OAuthError("unauthorized_client", "A backend client uses client_credentials")
        code = form.get("code")
        if not code:
            raise OAuthError("invalid_request", "code is required")
        pending = await self.grants.redeem_code(code)
        if pending is None:
            raise OAuthError("invalid_grant", "The code is invalid, expired or already used")
        grant = pending.grant
        if grant.client_id != client.client_id:
            await self.grants.revoke(grant.id)
            raise OAuthError("invalid_grant", "The code was issued to another client")
        if form.get("redirect_uri") != pending.redirect_uri:
            raise OAuthError("invalid_grant", "redirect_uri differs from the authorization request")
        verifier = form.get("code_verifier")
        if not verifier:
            raise OAuthError("invalid_request", "code_verifier is required (PKCE)")
        if not hmac.compare_digest(pkce_s256(verifier), pending.code_challenge):
            raise OAuthError("invalid_grant", "code_verifier does not match the code_challenge")
        await self.grants.save(grant, self.settings.refresh_seconds)
        await self._record(
            "token-granted",
            client_id=client.client_id,
            grant=grant.id,
            user=grant.fhir_user,
            patient=grant.patient,
            scope=grant.scope,
        )
        return await self._response(grant, client, refresh=_wants_refresh(grant.scope), first=True)

    async def _refresh(self, client: Client, form: Mapping[str, str]) -> dict[str, Any]:
        token = form.get("refresh_token")
        if not token:
            raise OAuthError("invalid_request", "refresh_token is required")
        grant = await self.grants.rotate_refresh(token)
        if grant is None:
            raise OAuthError("invalid_grant", "The refresh token is invalid, expired or revoked")
        if grant.client_id != client.client_id:
            await self.grants.revoke(grant.id)
            raise OAuthError("invalid_grant", "The refresh token was issued to another client")
        asked = form.get("scope")
        if asked:
            original = ScopeSet.parse(grant.scope)
            wanted = ScopeSet.parse(asked)
            narrowed = wanted.within(original)
            if (
                len(narrowed.resources) + len(narrowed.others)
                < len(wanted.resources) + len(wanted.others)
                or wanted.unknown
            ):
                raise OAuthError("invalid_scope", "A refresh may narrow the scope, never widen it")
            grant.scope = str(narrowed)
        await self._record(
            "token-refreshed",
            client_id=client.client_id,
            grant=grant.id,
            user=grant.fhir_user,
            patient=grant.patient,
            scope=grant.scope,
        )
        return await self._response(grant, client, refresh=True, first=False)

    async def _client_credentials(self, client: Client, form: Mapping[str, str]) -> dict[str, Any]:
        if not client.asymmetric:  # SMART Backend Services: private_key_jwt only
            raise OAuthError(
                "unauthorized_client",
                "client_credentials needs a backend (or confidential-asymmetric) client",
            )
        wanted = ScopeSet.parse(form.get("scope"))
        granted = wanted.only_contexts({"system"}).within(ScopeSet.parse(client.scope))
        if not granted.resources:
            raise OAuthError(
                "invalid_scope",
                "No requested system/ scope is within what this client is registered for",
            )
        grant = Grant(
            id=str(uuid.uuid4()),
            client_id=client.client_id,
            scope=str(ScopeSet(granted.resources, ())),
            subject=client.client_id,
            kind="client_credentials",
        )
        await self.grants.save(grant, self.settings.access_seconds)
        await self._record(
            "token-granted", client_id=client.client_id, grant=grant.id, scope=grant.scope
        )
        return await self._response(grant, client, refresh=False, first=False)

    async def _response(
        self, grant: Grant, client: Client, *, refresh: bool, first: bool
    ) -> dict[str, Any]:
        keys = self.server_keys()
        lifetime = self.settings.access_seconds
        token, _ = mint_access_token(
            keys,
            base_url=self.settings.base_url,
            subject=grant.subject,
            client_id=client.client_id,
            scope=grant.scope,
            grant=grant.id,
            lifetime=lifetime,
            patient=grant.patient,
            encounter=grant.encounter,
            fhir_user=grant.fhir_user,
        )
        body: dict[str, Any] = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": lifetime,
            "scope": grant.scope,
        }
        scopes = ScopeSet.parse(grant.scope)
        if grant.patient:
            body["patient"] = grant.patient
        if grant.encounter:
            body["encounter"] = grant.encounter
        if grant.need_patient_banner is not None:
            body["need_patient_banner"] = grant.need_patient_banner
        if grant.smart_style_url:
            body["smart_style_url"] = grant.smart_style_url
        if (
            scopes.has("openid")
            and grant.fhir_user
            and (scopes.has("fhirUser") or scopes.has("profile"))
        ):
            body["id_token"] = mint_id_token(
                keys,
                base_url=self.settings.base_url,
                subject=grant.subject,
                client_id=client.client_id,
                lifetime=lifetime,
                fhir_user=grant.fhir_user,
                nonce=grant.nonce if first else None,
            )
        if refresh:
            body["refresh_token"] = await self.grants.issue_refresh(grant)
        return body

    # -- /auth/introspect, /auth/revoke -----------------------------------------------------

    async def introspect(self, token: str) -> dict[str, Any]:
        """RFC 7662 §2.2: `{"active": false}` or the token's claims (access or refresh)."""
        try:
            claims = await self.verify(token)
        except Unauthorized:
            grant = await self.grants.refresh_grant(token)
            if grant is None or not grant.active:
                return {"active": False}
            return {
                "active": True,
                "token_type": "refresh_token",
                "client_id": grant.client_id,
                "scope": grant.scope,
                "sub": grant.subject,
                **({"patient": grant.patient} if grant.patient else {}),
                **({"fhirUser": grant.fhir_user} if grant.fhir_user else {}),
            }
        out: dict[str, Any] = {
            "active": True,
            "token_type": "Bearer",
            "scope": claims.scope,
            "client_id": claims.client_id,
            "sub": claims.subject,
            "exp": claims.expires_at,
            "iat": claims.issued_at,
            "iss": self.settings.base_url,
            "aud": self.settings.base_url,
            "jti": claims.jti,
        }
        if claims.patient:
            out["patient"] = claims.patient
        if claims.encounter:
            out["encounter"] = claims.encounter
        if claims.fhir_user:
            out["fhirUser"] = claims.fhir_user
        return out

    async def revoke(self, client: Client, token: str) -> None:
        """RFC 7009: revoke the grant behind an access or refresh token of `client` (its
        other tokens stop too). Unknown tokens are ignored (200 either way)."""
        grant_id: str | None = None
        try:
            claims = await self.verify(token)
            if claims.client_id == client.client_id:
                grant_id = claims.grant
        except Unauthorized:
            grant = await self.grants.refresh_grant(token)
            if grant is not None and grant.client_id == client.client_id:
                grant_id = grant.id
        if grant_id is not None and await self.grants.revoke(grant_id):
            await self._record("token-revoked", client_id=client.client_id, grant=grant_id)

    # -- bearer tokens on the FHIR API ------------------------------------------------------

    async def verify(self, token: str) -> AccessClaims:
        """The claims of a valid, unrevoked access token.

        Raises:
            Unauthorized: (401) with a `WWW-Authenticate: Bearer error="invalid_token"`
                header; the diagnostics never include the token.
        """
        keys = self.server_keys()
        kid = token_kid(token)
        if kid is not None and not keys.knows(kid) and time.monotonic() > self._reload_after:
            # rotated by another process (`fhir-server keys rotate`): read the keys again,
            # at most every few seconds whatever tokens arrive
            self._reload_after = time.monotonic() + KEY_RELOAD_SECONDS
            self.keys = keys = await load_keys(self.key_source, self._retention())
        try:
            claims = verify_access_token(keys, token, self.settings.base_url)
        except InvalidToken as exc:
            raise invalid_token(str(exc)) from exc
        if not await self.grants.is_active(claims.grant):
            raise invalid_token("the token has been revoked")
        return claims

    async def policy(self, authorization: str | None) -> ScopePolicy:
        """The AccessPolicy for an `Authorization` header value.

        Raises:
            Unauthorized: (401) no bearer token, or an invalid one.
        """
        if not authorization or not authorization[:7].lower() == "bearer ":
            raise Unauthorized(
                "This FHIR server requires a SMART access token: send Authorization: Bearer",
                code="login",
                headers={"WWW-Authenticate": f'Bearer realm="{self.settings.base_url}"'},
            )
        token = authorization[7:].strip()
        hit = self._verified.get(token)
        if hit is not None and hit[0].expires_at > time.time():
            # the signature was checked before; revocation is still checked every time
            if not await self.grants.is_active(hit[0].grant):
                raise invalid_token("the token has been revoked")
            self._verified.move_to_end(token)
            return hit[1]
        claims = await self.verify(token)
        policy = ScopePolicy(
            ScopeSet.parse(claims.scope),
            patient=claims.patient,
            fhir_user=claims.fhir_user,
            client_id=claims.client_id,
            default_tz=self.settings.default_tz,
        )
        self._verified[token] = (claims, policy)
        if len(self._verified) > VERIFIED_CACHE:
            self._verified.popitem(last=False)
        return policy

    async def mint_admin_token(self, scope: str, lifetime: int, subject: str = "admin") -> str:
        """An access token for an administrator (`fhir-server token`), on a grant of its own
        (revocable like any other)."""
        grant = Grant(
            id=str(uuid.uuid4()),
            client_id="fhir-server-cli",
            scope=scope,
            subject=subject,
            kind="admin",
        )
        await self.grants.save(grant, lifetime)
        token, _ = mint_access_token(
            self.server_keys(),
            base_url=self.settings.base_url,
            subject=subject,
            client_id=grant.client_id,
            scope=scope,
            grant=grant.id,
            lifetime=lifetime,
        )
        return token


def invalid_token(reason: str) -> Unauthorized:
    """401 `login` with `WWW-Authenticate: Bearer error="invalid_token"` (RFC 6750 §3.1)."""
    return Unauthorized(
        f"The access token is not valid: {reason}",
        code="login",
        headers={"WWW-Authenticate": f'Bearer error="invalid_token", error_description="{reason}"'},
    )


def _wants_refresh(scope: str) -> bool:
    scopes = ScopeSet.parse(scope)
    return scopes.has("offline_access") or scopes.has("online_access")
