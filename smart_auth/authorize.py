"""`/auth/authorize` (GET and POST): the authorization code flow with login, patient picker and
consent (SMART App Launch 2.2 `app-launch.html` §§ "Obtain authorization code", RFC 6749 §4.1).

1. The request (GET query, or POST form: `authorize-post`) is checked. An unknown `client_id`,
   an unregistered `redirect_uri` (exact match) or an `aud` other than this FHIR base gets a
   400 page, never a redirect. Other faults redirect back with `error` (`invalid_request` for
   a missing `state`, missing or non-S256 PKCE; `invalid_scope`; `unsupported_response_type`).
2. An EHR launch's `launch` id is taken (single use) for its context; a context without a
   `smart_style_url` gets the server's default style document (`smart_auth.style`).
3. The user signs in (`Registry.sign_in`: Argon2 password check; after 5 failures in 15
   minutes the username is locked for the rest of the window). When the launch context names
   a `user`, only that user (compared with their `fhirUser`) may go on: anyone else ends the
   authorization with `access_denied` (audited as `launch-user-mismatch`; the launch stays
   used). The user then picks a patient when `launch/patient` has none, and approves the
   scopes, all or some (unchecking one leaves it out of the grant; none, or Deny, answers
   `access_denied`); then the browser is sent to `redirect_uri?code=...&state=...`.

Between steps the authorization waits in a record (kind `authz`, 10 minutes) named by a
256-bit transaction id carried in the forms.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

import orjson
from starlette.responses import HTMLResponse, RedirectResponse, Response

from fhir_server.repository import Repository
from fhir_server.search.parse import SearchContext, parse_condition
from fhir_server.search.query import StoreQuery
from resources.errors import TooManyRequests
from smart_auth import pages
from smart_auth.grants import Grant, PendingCode, new_token
from smart_auth.rate_limits import hit
from smart_auth.registry import Client, LoginLocked
from smart_auth.scopes import ScopeSet
from smart_auth.server import AuthServer
from smart_auth.style import default_style_url

NO_STORE = {"Cache-Control": "no-store", "X-Frame-Options": "DENY"}
AUTH_PARAMS = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "aud",
    "code_challenge",
    "code_challenge_method",
    "launch",
    "nonce",
)


def _html(body: str, status: int = 200, headers: Mapping[str, str] | None = None) -> HTMLResponse:
    return HTMLResponse(body, status_code=status, headers={**NO_STORE, **(headers or {})})


def _redirect(uri: str, params: dict[str, str]) -> RedirectResponse:
    sep = "&" if "?" in uri else "?"
    return RedirectResponse(f"{uri}{sep}{urlencode(params)}", status_code=302, headers=NO_STORE)


def _access_denied(pending: Mapping[str, Any], description: str) -> RedirectResponse:
    """Back to the app with `error=access_denied` and its `state` (RFC 6749 §4.1.2.1)."""
    return _redirect(
        pending["redirect_uri"],
        {"error": "access_denied", "error_description": description, "state": pending["state"]},
    )


class Authorize:
    """The authorization endpoint over one AuthServer and a job repository of the server
    (the patient picker reads Patients through it)."""

    def __init__(self, server: AuthServer, repository: Repository) -> None:
        self.server = server
        self.repository = repository

    async def handle(self, params: Mapping[str, str], address: str = "") -> Response:
        """One GET or POST to `/auth/authorize` from the client address `address` (sign-ins
        are rate-limited per address: `AuthSettings.login_limit`)."""
        if "txn" in params:
            return await self._step(params, address)
        return await self._start(params)

    # -- the request ------------------------------------------------------------------------

    async def _start(self, params: Mapping[str, str]) -> Response:
        client_id = params.get("client_id", "")
        client = await self.server.registry.client(client_id) if client_id else None
        if client is None or client.type == "backend":
            return _html(pages.error_page("Unknown client_id: this app is not registered."), 400)
        redirect_uri = params.get("redirect_uri", "")
        if redirect_uri not in client.redirect_uris:
            return _html(pages.error_page("redirect_uri is not one registered for this app."), 400)
        aud = params.get("aud", "").rstrip("/")
        if aud != self.server.settings.base_url:
            return _html(
                pages.error_page(
                    f"aud must be this FHIR server's base URL ({self.server.settings.base_url})."
                ),
                400,
            )
        state = params.get("state")

        def fail(error: str, description: str) -> Response:
            out = {"error": error, "error_description": description}
            if state:
                out["state"] = state
            return _redirect(redirect_uri, out)

        if params.get("response_type") != "code":
            return fail("unsupported_response_type", "response_type must be code")
        if not state:
            return fail("invalid_request", "state is required")
        if not params.get("code_challenge") or params.get("code_challenge_method") != "S256":
            return fail("invalid_request", "PKCE is required: code_challenge with method S256")
        wanted = ScopeSet.parse(params.get("scope"))
        granted = wanted.only_contexts({"patient", "user"}).within(ScopeSet.parse(client.scope))
        if not granted.resources and not granted.others:
            return fail("invalid_scope", "None of the requested scopes is allowed for this app")
        context: dict[str, Any] = {}
        if params.get("launch"):  # an EHR launch: the `launch` scope goes with it
            if "launch" not in client.scope.split():
                return fail("invalid_scope", "This app is not registered for EHR launch")
            if not granted.has("launch"):
                granted = ScopeSet(granted.resources, (*granted.others, "launch"))
            launch = await self.server.grants.take_launch(params["launch"])
            if launch is None:
                return fail("invalid_request", "The launch id is unknown, expired or used")
            context = launch
            if not context.get("smart_style_url"):  # context-style: every EHR launch has one
                context["smart_style_url"] = default_style_url(self.server.settings.base_url)
        txn = new_token()
        await self.server.grants.save_transaction(
            txn,
            {
                "client_id": client.client_id,
                "redirect_uri": redirect_uri,
                "state": state,
                "scope": str(granted),
                "code_challenge": params["code_challenge"],
                "nonce": params.get("nonce"),
                "launch": context,
            },
        )
        return _html(pages.login_page(txn, client.name or client.client_id))

    # -- the steps --------------------------------------------------------------------------

    async def _step(self, params: Mapping[str, str], address: str) -> Response:
        txn = params["txn"]
        pending = await self.server.grants.transaction(txn)
        if pending is None:
            return _html(
                pages.error_page("This sign-in has expired; start again from the app."), 400
            )
        client = await self.server.registry.client(pending["client_id"])
        if client is None:
            return _html(pages.error_page("The app is no longer registered."), 400)
        step = params.get("step")
        if step == "login":
            return await self._login(txn, pending, client, params, address)
        if "user" not in pending:
            return _html(pages.login_page(txn, client.name or client.client_id))
        if step == "search":
            if pending["user"]["fhir_user"].startswith("Patient/"):
                return _html(pages.error_page("A patient cannot list other patients."), 403)
            return _html(
                pages.patient_picker_page(
                    txn, await self._patients(params.get("q", "")), params.get("q", "")
                )
            )
        if step == "pick":
            return await self._pick(txn, pending, client, params.get("patient", ""))
        if step == "consent":
            chosen = params.get("grant", "").split()
            return await self._consent(txn, pending, client, params.get("decision"), chosen)
        return _html(pages.error_page("Unknown step."), 400)

    async def _login(
        self,
        txn: str,
        pending: dict[str, Any],
        client: Client,
        params: Mapping[str, str],
        address: str,
    ) -> Response:
        name = client.name or client.client_id
        username = params.get("username", "")
        try:
            await hit(self.server.grants.records, self.server.settings.login_limit, address)
        except TooManyRequests as exc:
            page = pages.login_page(txn, name, "Too many sign-ins from here: try again shortly.")
            return _html(page, 429, exc.headers)
        try:
            user = await self.server.registry.sign_in(username, params.get("password", ""))
        except LoginLocked:
            await self.server.record("login-locked", username=username, client_id=client.client_id)
            return _html(
                pages.login_page(txn, name, "Too many failed sign-ins: try again in 15 minutes."),
                429,
            )
        if user is None:
            await self.server.record("login-failed", username=username, client_id=client.client_id)
            return _html(pages.login_page(txn, name, "Wrong username or password."), 401)
        await self.server.record(
            "login", username=username, user=user.fhir_user, client_id=client.client_id
        )
        launch_user = pending["launch"].get("user")
        if launch_user and self.repository.reference(launch_user).key != user.fhir_user:
            await self.server.grants.end_transaction(txn)
            await self.server.record(
                "launch-user-mismatch",
                username=username,
                user=user.fhir_user,
                client_id=client.client_id,
                reason=f"The EHR launch is for {launch_user}, not for {user.fhir_user}",
            )  # the references go to the audit trail, not into the app's redirect
            return _access_denied(
                pending, "The user who signed in is not the user the EHR launched this app for"
            )
        pending["user"] = {
            "username": user.username,
            "fhir_user": user.fhir_user,
            "name": user.name,
        }
        if user.fhir_user.startswith("Patient/") and not pending["launch"].get("patient"):
            pending["launch"]["patient"] = user.fhir_user.split("/", 1)[1]
        await self.server.grants.save_transaction(txn, pending)
        return await self._next(txn, pending, client)

    async def _next(self, txn: str, pending: dict[str, Any], client: Client) -> Response:
        scopes = ScopeSet.parse(pending["scope"])
        if scopes.has("launch/patient") and not pending["launch"].get("patient"):
            return _html(pages.patient_picker_page(txn, await self._patients("")))
        user = pending["user"]
        patient_id = pending["launch"].get("patient")
        return _html(
            pages.consent_page(
                txn,
                client.name or client.client_id,
                pending["scope"].split(),
                user.get("name") or user["username"],
                await self._patient_name(patient_id) if patient_id else None,
            )
        )

    async def _patient_name(self, patient_id: str) -> str:
        """The patient's name for the consent page (their id when it has none)."""
        found = await self.repository.lookup.read_json([("Patient", patient_id)])
        patient = found.get(("Patient", patient_id))
        return pages.patient_name(patient) if patient else f"Patient/{patient_id}"

    async def _pick(
        self, txn: str, pending: dict[str, Any], client: Client, patient: str
    ) -> Response:
        if pending["user"]["fhir_user"].startswith("Patient/"):
            return _html(pages.error_page("A patient cannot choose another patient."), 403)
        stored = await self.repository.lookup.read("Patient", patient) if patient else None
        if stored is None or stored.deleted:
            return _html(pages.patient_picker_page(txn, await self._patients("")), 400)
        pending["launch"]["patient"] = patient
        await self.server.grants.save_transaction(txn, pending)
        return await self._next(txn, pending, client)

    async def _consent(
        self,
        txn: str,
        pending: dict[str, Any],
        client: Client,
        decision: str | None,
        chosen: list[str],
    ) -> Response:
        ended = await self.server.grants.end_transaction(txn)
        if ended is None:
            return _html(pages.error_page("This sign-in was already completed."), 400)
        redirect_uri, state = pending["redirect_uri"], pending["state"]
        allowed = [s for s in pending["scope"].split() if s in chosen]  # never more than asked
        if decision != "allow" or not allowed:
            await self.server.record("consent-denied", client_id=client.client_id)
            return _access_denied(pending, "The user denied access")
        launch = pending["launch"]
        scopes = ScopeSet.parse(" ".join(allowed))
        user = pending["user"]
        grant = Grant(
            id=new_token(),
            client_id=client.client_id,
            scope=str(scopes),
            subject=user["username"],
            patient=launch.get("patient") if _patient_context(scopes) else None,
            encounter=launch.get("encounter")
            if scopes.has("launch/encounter") or scopes.has("launch")
            else None,
            fhir_user=user["fhir_user"],
            need_patient_banner=launch.get("need_patient_banner"),
            smart_style_url=launch.get("smart_style_url"),
            nonce=pending.get("nonce"),
        )
        code = await self.server.grants.issue_code(
            PendingCode(grant, redirect_uri, pending["code_challenge"])
        )
        return _redirect(redirect_uri, {"code": code, "state": state})

    async def _patients(self, query: str) -> list[dict[str, Any]]:
        """Patients for the picker: by name when `query` is given, else the first 50."""
        conditions = (parse_condition("Patient", "name", query, SearchContext()),) if query else ()
        page = await self.repository.lookup.search(StoreQuery("Patient", conditions, count=50))
        return [orjson.loads(r.content) for r in page.resources if r.content]


def _patient_context(scopes: ScopeSet) -> bool:
    """Whether the token gets a patient in context: asked for (`launch/patient`), given by an
    EHR launch (`launch`), or implied by patient/ scopes."""
    return scopes.has("launch/patient") or scopes.has("launch") or "patient" in scopes.contexts()
