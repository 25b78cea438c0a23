"""The default SMART style document, served at `GET /auth/smart-style.json` (public, any
origin): SMART App Launch 2.2 `scopes-and-launch-context.html#styling`, which the discovery
document's `context-style` capability promises.

Every EHR launch's token response carries `smart_style_url`: the launch context's own hint
when the EHR gave one, else the absolute URL of this document (`default_style_url`). The
values echo the look of the authorization server's own pages (`smart_auth.pages`).
"""

from __future__ import annotations

from conformance.smart_configuration import auth_endpoint

STYLE_PATH = "smart-style.json"
DEFAULT_STYLE: dict[str, str] = {
    "color_background": "#ffffff",
    "color_error": "#aa0000",
    "color_highlight": "#1f5fa8",
    "color_modal_backdrop": "rgba(0, 0, 0, 0.4)",
    "color_success": "#2e7d32",
    "color_text": "#1a1a1a",
    "dim_border_radius": "4px",
    "dim_font_size": "16px",
    "dim_spacing_size": "16px",
    "font_family_body": "system-ui, sans-serif",
    "font_family_heading": "system-ui, sans-serif",
    "smart_style_version": "1",
}
"""The style parameters (SMART 2.2 "Styling": colors as CSS colors, dimensions as CSS lengths,
font families as CSS `font-family` values, `smart_style_version` "1")."""


def default_style_url(base_url: str) -> str:
    """The absolute URL of the default style document of the server of FHIR base `base_url`
    (`{origin}/auth/smart-style.json`)."""
    return auth_endpoint(base_url, STYLE_PATH)
