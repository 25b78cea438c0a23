"""The authorization server's HTTP endpoints (Starlette routes, mounted by `fhir_server.app`).

| path | spec |
|---|---|
| `GET/POST /auth/authorize` | SMART App Launch 2.2 §2.0.5 (`smart_auth.authorize`) |
| `POST /auth/token` | RFC 6749 §3.2, §5; `Cache-Control: no-store`; CORS for registered origins |
| `POST /auth/introspect` | RFC 7662 (caller: an authenticated client or a valid bearer token) |
| `POST /auth/revoke` | RFC 7009 (the client that owns the token, or a bearer token's own grant) |
| `GET /auth/jwks` | RFC 7517 public keys |
| `GET /auth/smart-style.json` | SMART 2.2 "Styling": the default style document (any origin) |
| `POST /auth/launch` | EHR API: a launch issuer's `system/` token creates a launch context |
| `POST /auth/register` | ours: patient self-registration (`smart_auth.registration`) |
| `GET [base]/.well-known/smart-configuration`, `openid-configuration` | public, any origin |

OAuth endpoints answer OAuth JSON errors (`{"error", "error_description"}`, RFC 6749 §5.2),
as OAuth clients expect; the FHIR API answers OperationOutcomes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from conformance.smart_configuration import openid_configuration, smart_configuration
from fhir_server.repository import Repository
from resources.errors import FhirError, Forbidden, Invalid, PayloadTooLarge
from smart_auth.authorize import Authorize
from smart_auth.client_auth import OAuthError, authenticate_client
from smart_auth.registration import register_patient
from smart_auth.registry import Client
from smart_auth.server import AuthServer
from smart_auth.style import DEFAULT_STYLE, STYLE_PATH
from smart_auth.token_grants import TokenEndpoint

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
ANY_ORIGIN = {"Access-Control-Allow-Origin": "*"}
FORM_LIMIT = 64 * 1024


def _json(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(body),
        status_code=status,
        media_type="application/json",
        headers=dict(headers or {}),
    )


def _oauth_error(exc: OAuthError, headers: Mapping[str, str]) -> Response:
    out = dict(headers)
    if exc.status == 401:
        out["WWW-Authenticate"] = 'Basic realm="token"'
    return _json({"error": exc.error, "error_description": exc.description}, exc.status, out)


async def _json_object(request: Request, what: str) -> dict[str, Any]:
    """The request body as a JSON object.

    Raises:
        PayloadTooLarge: (413) over FORM_LIMIT bytes. Invalid: (400) not a JSON object.
    """
    raw = await request.body()
    if len(raw) > FORM_LIMIT:
        raise PayloadTooLarge(f"{what} is at most {FORM_LIMIT} bytes")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise Invalid("The body must be a JSON object") from exc
    if not isinstance(body, dict):
        raise Invalid("The body must be a JSON object")
    return body


async def _form(request: Request) -> dict[str, str]:
    """The urlencoded form body as str -> str (first value of each field; the consent page's
    `grant` checkboxes joined by spaces).

    Raises:
        OAuthError: `invalid_request` for another content type or an oversized body.
    """
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        raise OAuthError("invalid_request", "Send application/x-www-form-urlencoded")
    body = await request.body()
    if len(body) > FORM_LIMIT:
        raise OAuthError("invalid_request", "The request body is too large")
    out: dict[str, str] = {}
    try:
        pairs = parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError as exc:
        raise OAuthError("invalid_request", "The form is not UTF-8") from exc
    for key, value in pairs:
        if key == "grant":  # the consent page's checkboxes: every checked scope
            out["grant"] = f"{out.get('grant', '')} {value}".strip()
        else:
            out.setdefault(key, value)
    return out


def auth_routes(server: AuthServer, repository: Repository) -> list[Route]:
    """The `/auth/*` routes and the `.well-known` documents of `server` (`repository`: a job
    repository of the server, for the patient picker)."""
    settings = server.settings
    authorize = Authorize(server, repository)
    tokens = TokenEndpoint(server)
    smart_doc = smart_configuration(settings.base_url)
    openid_doc = openid_configuration(settings.base_url)

    async def caller(request: Request, form: dict[str, str], endpoint: str) -> Client:
        """The authenticated client calling `/auth/{endpoint}` (the assertion's `aud`)."""
        return await authenticate_client(
            form,
            request.headers,
            server.registry,
            server.grants,
            settings.endpoint(endpoint),
            server.jwks,
        )

    async def cors_headers(request: Request) -> dict[str, str]:
        origin = request.headers.get("origin")
        if not origin:
            return {}
        for client in await server.registry.clients():
            if origin in client.origins:
                return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
        return {}

    async def authorize_endpoint(request: Request) -> Response:
        if request.method == "GET":
            params = dict(request.query_params)
        else:
            try:
                params = await _form(request)
            except OAuthError as exc:
                return _oauth_error(exc, NO_STORE)
        address = request.client.host if request.client else "unknown"
        return await authorize.handle(params, address)

    async def token_endpoint(request: Request) -> Response:
        headers = {**NO_STORE, **await cors_headers(request)}
        try:
            form = await _form(request)
            body = await tokens.token(form, request.headers)
        except OAuthError as exc:
            return _oauth_error(exc, headers)
        return _json(body, headers=headers)

    async def preflight(request: Request) -> Response:
        headers = await cors_headers(request)
        if headers:
            headers.update(
                {
                    "Access-Control-Allow-Methods": "POST",
                    "Access-Control-Allow-Headers": "Authorization, Content-Type",
                    "Access-Control-Max-Age": "600",
                }
            )
        return Response(status_code=204, headers=headers)

    async def introspect_endpoint(request: Request) -> Response:
        try:
            form = await _form(request)
            authorization = request.headers.get("authorization", "")
            if authorization.lower().startswith("bearer "):
                await server.verify(authorization[7:].strip())
            else:
                await caller(request, form, "introspect")
            if not form.get("token"):
                raise OAuthError("invalid_request", "token is required")
        except OAuthError as exc:
            return _oauth_error(exc, NO_STORE)
        except FhirError:
            return _json(
                {"error": "invalid_token", "error_description": "The caller's token is not valid"},
                401,
                NO_STORE,
            )
        return _json(await server.introspect(form["token"]), headers=NO_STORE)

    async def revoke_endpoint(request: Request) -> Response:
        """The caller is a client authenticating as at the token endpoint, or the holder of
        a bearer access token, which may revoke its own grant (`AuthServer.revoke_as_bearer`:
        how `fhir-server token`'s tokens are revoked)."""
        authorization = request.headers.get("authorization", "")
        try:
            form = await _form(request)
            if not form.get("token"):
                raise OAuthError("invalid_request", "token is required")
            if authorization.lower().startswith("bearer "):
                await server.revoke_as_bearer(authorization[7:].strip(), form["token"])
                return Response(status_code=200, headers=NO_STORE)
            client = await caller(request, form, "revoke")
        except OAuthError as exc:
            return _oauth_error(exc, NO_STORE)
        except FhirError:
            return _json(
                {"error": "invalid_token", "error_description": "The caller's token is not valid"},
                401,
                {**NO_STORE, "WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        await server.revoke(client, form["token"])
        return Response(status_code=200, headers=NO_STORE)

    async def jwks_endpoint(_request: Request) -> Response:
        return _json(server.server_keys().public_jwks(), headers=ANY_ORIGIN)

    async def register_endpoint(request: Request) -> Response:
        """Patient self-registration (`smart_auth.registration`): a JSON object; 201 with
        the new Patient's reference. FhirErrors become OperationOutcomes."""
        body = await _json_object(request, "A registration")
        address = request.client.host if request.client else "unknown"
        made = await register_patient(server.registry, repository, body, address)
        patient_id = made["patient"].split("/", 1)[1]
        await server.record(
            "registration", username=made["username"], user=made["patient"], patient=patient_id
        )
        return _json(made, 201, NO_STORE)

    async def launch_endpoint(request: Request) -> Response:
        """Only a client registered as a launch issuer (`Client.launch_issuer`) may create
        launch contexts, with a `system/` token; others get 403 `forbidden` (audited as
        `access-denied`). FhirErrors raised here become OperationOutcomes through the app's
        handlers."""
        policy = await server.policy(request.headers.get("authorization"))
        if "system" not in policy.scopes.contexts():
            raise Forbidden("Creating a launch context needs a backend client's system/ token")
        issuer = await server.registry.client(policy.client_id)
        if issuer is None or not issuer.launch_issuer:  # a registration, not a scope
            reason = (
                f"Client {policy.client_id} is not registered to create launch contexts "
                "(fhir-server clients add --launch-issuer)"
            )
            await server.record("access-denied", client_id=policy.client_id, reason=reason)
            raise Forbidden(reason)
        body = await _json_object(request, "A launch context")
        launch = await server.grants.create_launch(launch_context(body), settings.launch_seconds)
        return _json(
            {"launch": launch, "expires_in": settings.launch_seconds, "iss": settings.base_url},
            201,
            NO_STORE,
        )

    def document(doc: dict[str, Any]) -> Callable[[Request], Awaitable[Response]]:
        async def serve(_request: Request) -> Response:
            return _json(doc, headers=ANY_ORIGIN)

        return serve

    return [
        Route("/auth/authorize", authorize_endpoint, methods=["GET", "POST"]),
        Route("/auth/token", token_endpoint, methods=["POST"]),
        Route("/auth/token", preflight, methods=["OPTIONS"]),
        Route("/auth/introspect", introspect_endpoint, methods=["POST"]),
        Route("/auth/revoke", revoke_endpoint, methods=["POST"]),
        Route("/auth/jwks", jwks_endpoint, methods=["GET"]),
        Route("/auth/launch", launch_endpoint, methods=["POST"]),
        Route("/auth/register", register_endpoint, methods=["POST"]),
        Route(f"/auth/{STYLE_PATH}", document(DEFAULT_STYLE), methods=["GET"]),
        Route("/fhir/.well-known/smart-configuration", document(smart_doc), methods=["GET"]),
        Route("/fhir/.well-known/openid-configuration", document(openid_doc), methods=["GET"]),
    ]


def launch_context(body: Any) -> dict[str, Any]:
    """Validate an EHR launch request body: `patient`, `encounter` (ids), `user` (a FHIR
    reference), `need_patient_banner` (bool), `smart_style_url` (URL), `intent` (text).

    Raises:
        Invalid: (400) not an object, unknown fields, or wrong value types.
    """
    if not isinstance(body, dict):
        raise Invalid("The launch context must be a JSON object")
    fields = {
        "patient": str,
        "encounter": str,
        "user": str,
        "need_patient_banner": bool,
        "smart_style_url": str,
        "intent": str,
    }
    unknown = sorted(set(body) - set(fields))
    if unknown:
        raise Invalid(f"Unknown launch context fields: {', '.join(unknown)}")
    for name, kind in fields.items():
        if name in body and not isinstance(body[name], kind):
            raise Invalid(f"launch context field {name} must be a {kind.__name__}")
    if not body.get("patient") and not body.get("encounter"):
        raise Invalid("A launch context needs a patient (or an encounter)")
    return dict(body)
