"""The web app's static files at `/portal/` (patients) and `/portal/provider/` (practitioners
and staff): plain HTML, CSS and JavaScript modules from `fhir_server/portal/`, no build step
(ARCHITECTURE.md "Web app"). The app is a SMART client of this server
(`smart_auth.portal_client`) and uses only the public FHIR API and the authorization server.

Every response carries a Content-Security-Policy that allows only this origin (scripts,
styles, connections), no framing, and `Referrer-Policy: no-referrer` (authorization codes
arrive in the URL).
"""

from __future__ import annotations

from pathlib import Path

from starlette.responses import Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

__all__ = ["PORTAL_DIR", "portal_routes"]

PORTAL_DIR = Path(__file__).resolve().parent.parent / "portal"
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


class _PortalFiles(StaticFiles):
    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(HEADERS)
        return response


def portal_routes() -> list[Mount]:
    """The mount of the app's files, added by `fhir_server.app`."""
    return [Mount("/portal", app=_PortalFiles(directory=PORTAL_DIR, html=True), name="portal")]
