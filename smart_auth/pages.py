"""The authorization server's HTML pages: login, patient picker, consent, errors.

Server-rendered, plain HTML forms that work without JavaScript. Every value is escaped
(`html.escape`); each form carries the authorization's transaction id, which doubles as the
anti-CSRF token (256 random bits, bound to one authorization request).
"""

from __future__ import annotations

from html import escape
from typing import Any

from smart_auth.scope_words import scope_words

STYLE = (
    "body{margin:0;font:16px/1.5 system-ui,sans-serif;color:#1a1a1a;background:#fff}"
    ".bar{padding:.75rem 1rem;background:#1f5fa8;color:#fff;font-weight:700}"
    "main{max-width:34rem;margin:0 auto;padding:1rem}h1{font-size:1.5rem}"
    "label{display:block;margin:.6rem 0;font-weight:600}"
    "input[type=text],input[type=password]{display:block;width:100%;padding:.45rem;font:inherit;"
    "border:1px solid #4a4a4a;border-radius:4px;font-weight:400}"
    "button{font:inherit;padding:.55rem 1.2rem;margin:.8rem .5rem 0 0;border-radius:4px;"
    "border:2px solid #1f5fa8;background:#1f5fa8;color:#fff;cursor:pointer}"
    "button.secondary{background:#fff;color:#1f5fa8}"
    "button:focus-visible,input:focus-visible{outline:3px solid #b35c00;outline-offset:2px}"
    ".error{color:#a30000;font-weight:600}li{margin:.4rem 0}ul.scopes{list-style:none;padding:0}"
    ".scopes label{font-weight:400}small{color:#4a4a4a}code{background:#eee;padding:0 .2rem}"
    "fieldset{border:1px solid #c8c8c8;border-radius:6px}legend{font-weight:600}"
)


def _page(title: str, body: str) -> str:
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}'
        f'</title><meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<style>{STYLE}</style></head><body><div class="bar">Clinic sign-in</div><main>'
        f"<h1>{escape(title)}</h1>{body}</main></body></html>"
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
        f" {escape(patient_name(p))} <small>({escape(str(p.get('birthDate', '')))})</small>"
        "</label></li>"
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
    """Approve or deny the scopes asked for: each a checkbox (field `grant`, the raw scope as
    its value), checked, labelled in plain words (`scope_words`) with the raw scope in small
    print, so the user may allow only some of them. `patient`: the name of the patient whose
    record the app will open, if any."""
    items = "".join(
        f'<li><label><input type="checkbox" name="grant" value="{escape(s)}" checked> '
        f"{escape(scope_words(s))} <small><code>{escape(s)}</code></small></label></li>"
        for s in scopes
    )
    app = f"<strong>{escape(client_name)}</strong>"
    who = (
        f"<p>It will open the record of <strong>{escape(patient)}</strong>.</p>" if patient else ""
    )
    return _page(
        f"Allow {client_name} to connect?",
        f"<p>Signed in as <strong>{escape(user)}</strong>.</p>{who}"
        f'<form method="post" action="/auth/authorize">'
        f'<input type="hidden" name="txn" value="{escape(txn)}">'
        '<input type="hidden" name="step" value="consent">'
        f'<fieldset><legend>{app} asks to:</legend><ul class="scopes">{items}</ul></fieldset>'
        '<button type="submit" name="decision" value="allow">Allow</button>'
        '<button type="submit" name="decision" value="deny" class="secondary">Deny</button>'
        "</form>",
    )


def patient_name(patient: dict[str, Any]) -> str:
    """A Patient's name for people (`Patient/{id}` without one)."""
    for name in patient.get("name") or []:
        given = " ".join(name.get("given") or [])
        text = name.get("text") or f"{given} {name.get('family', '')}".strip()
        if text:
            return str(text)
    return f"Patient/{patient.get('id')}"
