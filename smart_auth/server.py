"""The authorization server's core: keys, introspection, revocation, bearer checks.

No HTTP here (the endpoints are in `smart_auth.routes`, the grant types in
`smart_auth.token_grants`). Access tokens presented to the FHIR API are verified once per
token (signature, `iss`, `aud`, `exp`; RFC 6750) and kept in a small per-process cache; the
expiry, the grant's revocation and the rate limits are checked on every request, so a
revocation (RFC 7009) bites at once (the grant record is read again whenever anything was
committed since it was last read: `Grants.is_active`).
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from conformance.smart_configuration import auth_endpoint
from fhir_server.access import AccessPolicy, SystemPolicy
from resources.errors import Unauthorized
from resources.fhir_dates import US, now_us
from smart_auth.client_auth import JwksCache
from smart_auth.grants import Grant, Grants
from smart_auth.keys import KeyFile, KeyRecords, ServerKeys, load_keys
from smart_auth.policy import ScopePolicy
from smart_auth.rate_limits import Limit, RateLimiter
from smart_auth.registry import Client, Registry
from smart_auth.scopes import ScopeSet
from smart_auth.tokens import (
    AccessClaims,
    InvalidToken,
    mint_access_token,
    token_kid,
    verify_access_token,
)

KEY_RELOAD_SECONDS = 5.0
ADMIN_CLIENT = "fhir-server-cli"
"""The client id of administrator tokens minted by `fhir-server token`."""
VERIFIED_CACHE = 4096  # tokens whose signature and claims were checked (LRU), per process
AuditHook = Callable[[str, dict[str, Any]], Awaitable[None]]
"""Records an authorization event: `(event code, details)`; see `smart_auth.audit`."""


@dataclass(frozen=True, slots=True)
class Verified:
    """What `AuthServer.policy` remembers of an access token whose signature and claims it
    checked: the policy it yields, its grant (checked for revocation on every request), when
    it expires (µs UTC) and the rate limits each of its requests counts against."""

    policy: ScopePolicy
    grant: str
    expires: int
    limits: tuple[tuple[Limit, str], ...]


@dataclass(frozen=True, slots=True)
class AuthSettings:
    """What the authorization server needs to know.

    Attributes:
        base_url: the public FHIR base URL (`iss` and the required `aud`).
        access_seconds / refresh_seconds / code_seconds / launch_seconds: lifetimes.
        default_tz: zone for index extraction in compartment checks.
        per_user / per_client / logins: requests a minute per signed-in user and per
            client, sign-ins a minute per address (`smart_auth.rate_limits`; 0: none).
    """

    base_url: str
    access_seconds: int = 3600
    refresh_seconds: int = 90 * 24 * 3600
    code_seconds: int = 60
    launch_seconds: int = 3600
    default_tz: str = "UTC"
    per_user: int = 100
    per_client: int = 6000
    logins: int = 20

    @property
    def user_limit(self) -> Limit:
        return Limit("rate-user", self.per_user, 60, "requests a minute for this user")

    @property
    def client_limit(self) -> Limit:
        return Limit("rate-client", self.per_client, 60, "requests a minute for this app")

    @property
    def login_limit(self) -> Limit:
        return Limit("rate-login", self.logins, 60, "sign-ins a minute from this address")

    def endpoint(self, name: str) -> str:
        """The absolute URL of `/auth/{name}`."""
        return auth_endpoint(self.base_url, name)


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
        self.limiter = RateLimiter(grants.records)
        self.key_source = keys
        self.keys: ServerKeys | None = None
        self.jwks = JwksCache()
        self.audit = audit
        self._reload_after = 0.0
        self._verified: OrderedDict[str, Verified] = OrderedDict()
        self._user_limit = settings.user_limit
        self._client_limit = settings.client_limit

    async def start(self) -> None:
        """Load (or generate) the signing keys."""
        self.keys = await load_keys(self.key_source, self._retention())

    def _retention(self) -> int:
        return max(self.settings.access_seconds, 300)

    def server_keys(self) -> ServerKeys:
        """The loaded key set."""
        assert self.keys is not None, "AuthServer.start() was not awaited"
        return self.keys

    async def record(self, event: str, **details: Any) -> None:
        """Record an authorization event through the audit hook (if any)."""
        if self.audit is not None:
            await self.audit(event, details)

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
        grant_id = await self._grant_of(token)
        if grant_id is not None and grant_id[1] == client.client_id:
            await self._revoke_grant(grant_id[0], client.client_id)

    async def revoke_as_bearer(self, bearer: str, token: str) -> None:
        """RFC 7009 for a caller that authenticates with a bearer access token instead of
        client credentials (an administrator's `fhir-server token`, which has no client to
        authenticate as): `token` is revoked when it belongs to the bearer's own grant (it
        is usually the bearer itself). Unknown tokens and other grants' tokens are ignored
        (200 either way, as RFC 7009 §2.2 asks).

        Raises:
            Unauthorized: the bearer token is not valid (expired, revoked, forged).
        """
        claims = await self.verify(bearer)
        grant_id = await self._grant_of(token)
        if grant_id is not None and grant_id[0] == claims.grant:
            await self._revoke_grant(claims.grant, claims.client_id)

    async def _grant_of(self, token: str) -> tuple[str, str] | None:
        """`(grant id, client id)` of a valid access token or a usable refresh token."""
        try:
            claims = await self.verify(token)
        except Unauthorized:
            grant = await self.grants.refresh_grant(token)
            return (grant.id, grant.client_id) if grant is not None else None
        return claims.grant, claims.client_id

    async def _revoke_grant(self, grant_id: str, client_id: str) -> None:
        if await self.grants.revoke(grant_id):
            await self.record("token-revoked", client_id=client_id, grant=grant_id)

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
        now = now_us()
        known = self._verified.get(token)
        if known is not None and known.expires > now:
            # the signature was checked before; revocation is still checked every time
            if not self.grants.known_active(known.grant, now) and not await self.grants.is_active(
                known.grant
            ):
                raise invalid_token("the token has been revoked")
            self._verified.move_to_end(token)
        else:
            claims = await self.verify(token)
            known = Verified(
                ScopePolicy(
                    ScopeSet.parse(claims.scope),
                    patient=claims.patient,
                    fhir_user=claims.fhir_user,
                    client_id=claims.client_id,
                    grant=claims.grant,
                ),
                claims.grant,
                claims.expires_at * US,
                self._limits(claims),
            )
            self._verified[token] = known
            if len(self._verified) > VERIFIED_CACHE:
                self._verified.popitem(last=False)
        for limit, who in known.limits:
            if not self.limiter.take_held(limit, who, now):
                await self.limiter.hit(limit, who, now)
        return known.policy

    def _limits(self, claims: AccessClaims) -> tuple[tuple[Limit, str], ...]:
        """`(limit, who)` each request with a token of `claims` counts against
        (`smart_auth.rate_limits`): the signed-in user's and the client's; none for the
        administrator's CLI tokens, nor for a limit set to 0."""
        if claims.client_id == ADMIN_CLIENT:
            return ()
        out = [(self._client_limit, claims.client_id)]
        if claims.subject and claims.subject != claims.client_id:  # a signed-in user
            out.insert(0, (self._user_limit, claims.subject))
        return tuple((limit, who) for limit, who in out if limit.count > 0)

    async def restore_policy(self, credentials: dict[str, Any]) -> AccessPolicy | None:
        """The policy `credentials` (`AccessPolicy.credentials()` of an earlier request)
        stand for now, for work done later in that caller's name (a Subscription's
        deliveries), or None when it no longer holds.

        A grant still stored must be active (a revoked one: None). A grant that lapsed
        (its tokens expired) still holds for a backend client (`client_credentials`, or an
        administrator's `admin` grant) whose client is registered, since such a client gets a
        new token whenever it asks; a user's lapsed grant does not. `{"system": name}` is the
        server's own work (`SystemPolicy`).
        """
        if "system" in credentials:
            return SystemPolicy(str(credentials["system"]))
        grant_id = str(credentials.get("grant") or "")
        grant = await self.grants.get(grant_id) if grant_id else None
        if grant is None:
            kept = grant_id and await self._backend_client(str(credentials.get("client_id")))
            if not kept:
                return None
        elif not grant.active:
            return None
        return ScopePolicy(
            ScopeSet.parse(str(credentials.get("scope") or "")),
            patient=credentials.get("patient"),
            fhir_user=credentials.get("fhir_user"),
            client_id=str(credentials.get("client_id") or ""),
            grant=grant_id,
        )

    async def _backend_client(self, client_id: str) -> bool:
        """Whether `client_id` is a registered backend client or the CLI's administrator."""
        if client_id == ADMIN_CLIENT:
            return True
        client = await self.registry.client(client_id)
        return client is not None and client.asymmetric

    async def mint_admin_token(self, scope: str, lifetime: int, subject: str = "admin") -> str:
        """An access token for an administrator (`fhir-server token`), on a grant of its own
        (revocable like any other)."""
        grant = Grant(
            id=str(uuid.uuid4()),
            client_id=ADMIN_CLIENT,
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
    """401 `login` with `WWW-Authenticate: Bearer error="invalid_token"` (RFC 6750 §3.1); the
    reason goes into the OperationOutcome, the header carries only what its syntax allows."""
    return Unauthorized(
        f"The access token is not valid: {reason}",
        code="login",
        headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
    )
