"""The authorization server's HTML pages: login, patient picker, consent, errors.

Server-rendered, plain HTML forms that work without JavaScript. Every value is escaped
(`html.escape`); each form carries the authorization's transaction id, which doubles as the
anti-CSRF token (256 random bits, bound to one authorization request).
"""

from __future__ import annotations

from html import escape
from typing import Any

STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:34rem;margin:3rem auto;padding:0 1rem}"
    "label{display:block;margin:.6rem 0}input[type=text],input[type=password]{width:100%;"
    "padding:.4rem}button{padding:.5rem 1.2rem;margin:.8rem .5rem 0 0}.error{color:#a00}"
    "li{margin:.3rem 0}code{background:#eee;padding:0 .2rem}"
)


def _page(title: str, body: str) -> str:
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}'
        f'</title><meta name="viewport" content="width=device-width"><style>{STYLE}</style>'
        f"</head><body><h1>{escape(title)}</h1>{body}</body></html>"
    )


def error_page(message: str) -> str:
    """A refusal shown instead of redirecting (unknown client, unregistered redirect_uri,
    wrong `aud`): the request's redirect target cannot be trusted."""
    return _page("Authorization refused", f'<p class="error">{escape(message)}</p>')


def login_page(txn: str, client_name: str, error: str | None = None) -> str:
    """The login form (POST /auth/authorize: txn, username, password)."""
    problem = f'<p class="error" role="alert">{escape(error)}</p>' if error else ""
    return _page(
        "Sign in",
        f"<p><strong>{escape(client_name)}</strong> asks to connect to your health record.</p>"
        f'{problem}<form method="post" action="/auth/authorize">'
        f'<input type="hidden" name="txn" value="{escape(txn)}">'
        '<input type="hidden" name="step" value="login">'
        '<label>Username <input type="text" name="username" autocomplete="username" required>'
        "</label><label>Password <input type="
        '"password" name="password" autocomplete="current-password" required></label>'
        '<button type="submit">Sign in</button></form>',
    )


def patient_picker_page(txn: str, patients: list[dict[str, Any]], query: str = "") -> str:
    """Choose the patient in context (`launch/patient` in a standalone launch)."""
    items = "".join(
        f'<li><label><input type="radio" name="patient" value="{escape(str(p["id"]))}" required>'
        f" {escape(_name(p))} <small>({escape(str(p.get('birthDate', '')))})</small></label></li>"
        for p in patients
    )
    listing = f"<ul>{items}</ul>" if items else "<p>No patient matches.</p>"
    return _page(
        "Choose a patient",
        f'<form method="post" action="/auth/authorize">'
        f'<input type="hidden" name="txn" value="{escape(txn)}">'
        '<input type="hidden" name="step" value="search">'
        f'<label>Find by name <input type="text" name="q" value="{escape(query)}"></label>'
        '<button type="submit">Search</button></form>'
        f'<form method="post" action="/auth/authorize">'
        f'<input type="hidden" name="txn" value="{escape(txn)}">'
        '<input type="hidden" name="step" value="pick">'
        f'{listing}<button type="submit">Continue</button></form>',
    )


def consent_page(
    txn: str, client_name: str, scopes: list[str], user: str, patient: str | None
) -> str:
    """Approve or deny the scopes asked for; each is a checkbox (field `grant`), checked,
    so the user may allow only some of them."""
    items = "".join(
        f'<li><label><input type="checkbox" name="grant" value="{escape(s)}" checked> '
        f"<code>{escape(s)}</code></label></li>"
        for s in scopes
    )
    who = f"<p>Patient in context: <strong>{escape(patient)}</strong></p>" if patient else ""
    return _page(
        "Allow access?",
        f"<p>Signed in as <strong>{escape(user)}</strong>.</p>{who}"
        f"<p><strong>{escape(client_name)}</strong> asks for:</p>"
        f'<form method="post" action="/auth/authorize">'
        f'<input type="hidden" name="txn" value="{escape(txn)}">'
        '<input type="hidden" name="step" value="consent">'
        f"<ul>{items}</ul>"
        '<button type="submit" name="decision" value="allow">Allow</button>'
        '<button type="submit" name="decision" value="deny">Deny</button></form>',
    )


def _name(patient: dict[str, Any]) -> str:
    for name in patient.get("name") or []:
        given = " ".join(name.get("given") or [])
        text = name.get("text") or f"{given} {name.get('family', '')}".strip()
        if text:
            return str(text)
    return f"Patient/{patient.get('id')}"
