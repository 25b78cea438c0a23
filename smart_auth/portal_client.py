"""The server's own web app (`/portal/`, `fhir_server/portal/`) as a SMART client: registered at
every start as a public client with PKCE (SMART App Launch 2.2 "public" apps), redirecting
back to its own pages on the server's origin, so a standalone launch against our
`/auth/authorize` (and an EHR launch with `launch`) works with no set-up.

The registration is rewritten at each start, so a changed `FHIR_SERVER_BASE_URL` moves the
app's redirect URIs with it.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from smart_auth.registry import Client, Registry
from smart_auth.scopes import ScopeSet

__all__ = ["PORTAL_CLIENT_ID", "PORTAL_PATHS", "PORTAL_SCOPE", "register_portal"]

PORTAL_CLIENT_ID = "portal"
PORTAL_PATHS = ("/portal/", "/portal/provider/")
"""The app's pages, each a redirect URI (patients; practitioners and staff)."""
PORTAL_SCOPE = (
    "openid fhirUser profile launch launch/patient online_access patient/*.cruds user/*.cruds"
)
"""What the app may ever be granted: a patient's own record, or a user's (staff) reach."""


async def register_portal(registry: Registry, base_url: str) -> Client:
    """Register (or update) the portal client for the server of FHIR base `base_url`."""
    parts = urlsplit(base_url)
    origin = f"{parts.scheme}://{parts.netloc}"
    client = Client(
        client_id=PORTAL_CLIENT_ID,
        type="public",
        name="Clinic portal",
        redirect_uris=[origin + path for path in PORTAL_PATHS],
        scope=str(ScopeSet.parse(PORTAL_SCOPE)),
        origins=[origin],
        launch_url=origin + PORTAL_PATHS[0],
    )
    await registry.save_client(client)
    return client
