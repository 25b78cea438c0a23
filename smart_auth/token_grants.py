"""`/auth/token`: the grant types (SMART App Launch 2.2, RFC 6749 §4.1.3, §6, RFC 7523).

* `authorization_code` — PKCE S256 required (RFC 7636), `redirect_uri` equal to the one
  authorized, the same client; the response carries `patient`/`encounter` in context,
  `id_token` for `openid`, `refresh_token` only with `offline_access`/`online_access`, and on
  EHR launch `need_patient_banner` (when the EHR gave it) and `smart_style_url` (always: the
  EHR's hint, else the default style document, `smart_auth.style`);
* `refresh_token` — rotation; a narrower `scope` may be asked, never a wider one; the response
  carries the grant's context again (`patient`, `encounter`, banner, style);
* `client_credentials` — backend services with a `private_key_jwt` assertion, `system/` scopes.

Inputs are form fields, outputs the JSON bodies of RFC 6749 §5.1, errors `OAuthError`s.
"""

from __future__ import annotations

import hmac
import uuid
from collections.abc import Mapping
from typing import Any

from authlib.oauth2.rfc7636 import create_s256_code_challenge

from smart_auth.client_auth import OAuthError, authenticate_client
from smart_auth.grants import Grant
from smart_auth.registry import Client
from smart_auth.scopes import ScopeSet
from smart_auth.server import AuthServer
from smart_auth.tokens import mint_access_token, mint_id_token


def pkce_s256(verifier: str) -> str:
    """BASE64URL(SHA256(verifier)) without padding (RFC 7636 §4.2), by authlib."""
    return str(create_s256_code_challenge(verifier))


class TokenEndpoint:
    """Answers token requests for one AuthServer."""

    def __init__(self, server: AuthServer) -> None:
        self.server = server

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
                self.server.registry,
                self.server.grants,
                self.server.settings.endpoint("token"),
                self.server.jwks,
            )
            if grant_type == "authorization_code":
                return await self._authorization_code(client, form)
            if grant_type == "refresh_token":
                return await self._refresh(client, form)
            return await self._client_credentials(client, form)
        except OAuthError as exc:
            await self.server.record(
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
        pending = await self.server.grants.redeem_code(code)
        if pending is None:
            raise OAuthError("invalid_grant", "The code is invalid, expired or already used")
        grant = pending.grant
        if grant.client_id != client.client_id:
            await self.server.grants.revoke(grant.id)
            raise OAuthError("invalid_grant", "The code was issued to another client")
        if form.get("redirect_uri") != pending.redirect_uri:
            raise OAuthError("invalid_grant", "redirect_uri differs from the authorization request")
        verifier = form.get("code_verifier")
        if not verifier:
            raise OAuthError("invalid_request", "code_verifier is required (PKCE)")
        if not hmac.compare_digest(pkce_s256(verifier), pending.code_challenge):
            raise OAuthError("invalid_grant", "code_verifier does not match the code_challenge")
        await self.server.grants.save(grant, self.server.settings.refresh_seconds)
        await self.server.record(
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
        grant = await self.server.grants.rotate_refresh(token)
        if grant is None:
            raise OAuthError("invalid_grant", "The refresh token is invalid, expired or revoked")
        if grant.client_id != client.client_id:
            await self.server.grants.revoke(grant.id)
            raise OAuthError("invalid_grant", "The refresh token was issued to another client")
        asked = form.get("scope")
        if asked:  # RFC 6749 §6: this access token only; the grant keeps its scope
            wanted = ScopeSet.parse(asked)
            if wanted.within(ScopeSet.parse(grant.scope)) != wanted:
                raise OAuthError("invalid_scope", "A refresh may narrow the scope, never widen it")
            grant.scope = str(wanted)
        await self.server.record(
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
        await self.server.grants.save(grant, self.server.settings.access_seconds)
        await self.server.record(
            "token-granted", client_id=client.client_id, grant=grant.id, scope=grant.scope
        )
        return await self._response(grant, client, refresh=False, first=False)

    async def _response(
        self, grant: Grant, client: Client, *, refresh: bool, first: bool
    ) -> dict[str, Any]:
        keys = self.server.server_keys()
        lifetime = self.server.settings.access_seconds
        token, _ = mint_access_token(
            keys,
            base_url=self.server.settings.base_url,
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
                base_url=self.server.settings.base_url,
                subject=grant.subject,
                client_id=client.client_id,
                lifetime=lifetime,
                fhir_user=grant.fhir_user,
                nonce=grant.nonce if first else None,
            )
        if refresh:
            body["refresh_token"] = await self.server.grants.issue_refresh(grant)
        return body


def _wants_refresh(scope: str) -> bool:
    scopes = ScopeSet.parse(scope)
    return scopes.has("offline_access") or scopes.has("online_access")
