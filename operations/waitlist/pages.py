"""The pages of a waitlist offer's links: plain HTML that works without JavaScript, every
value escaped. A GET only shows (mail scanners fetch links); the button posts the action."""

from __future__ import annotations

from html import escape

from operations.waitlist.links import Action
from operations.waitlist.respond import OfferView

__all__ = ["offer_page", "problem_page", "result_page"]

STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:34rem;margin:3rem auto;padding:0 1rem;"
    "color:#1a1a1a}button{font-size:1rem;padding:.6rem 1.4rem;margin-top:1rem;color:#fff;"
    "background:#1f5fa8;border:0;border-radius:4px}button:focus{outline:3px solid #f5a623}"
    ".problem{color:#aa0000}"
)
BUTTONS: dict[Action, str] = {"accept": "Confirm booking", "decline": "Decline"}


def _page(title: str, body: str) -> str:
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}'
        f'</title><meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<style>{STYLE}</style></head><body><main><h1>{escape(title)}</h1>{body}</main>"
        "</body></html>"
    )


def offer_page(view: OfferView, action: Action) -> str:
    """The page a link shows (GET): the offer and the one button of its action, while held."""
    if view.state != "held":
        return result_page(view)
    what = "Book this time?" if action == "accept" else "Give this time back?"
    return _page(
        "A time has become free for you",
        f"<p>{escape(view.summary)}</p><p>It is held for you until {escape(view.until)}.</p>"
        f'<form method="post"><p>{what}</p>'
        f'<button type="submit">{BUTTONS[action]}</button></form>',
    )


def result_page(view: OfferView) -> str:
    """The page after an action, or of an offer no longer held."""
    if view.state == "booked":
        return _page("Booked", f"<p>Your appointment is booked: {escape(view.summary)}.</p>")
    if view.state == "declined":
        return _page(
            "Declined",
            f"<p>You gave back {escape(view.summary)}. You stay on the waitlist for other "
            "times.</p>",
        )
    return _page("This offer has ended", f"<p>{escape(view.summary)} is no longer held.</p>")


def problem_page(message: str) -> str:
    """A link that cannot be acted on: why, in words."""
    return _page("This link cannot be used", f'<p class="problem">{escape(message)}</p>')
