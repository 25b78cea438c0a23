"""The accept and decline links of a waitlist offer: signed, no login needed, single use.

A link is `{origin}/waitlist/offers/{token}`, the token a JWT (RFC 7519, HS256 with joserfc)
with claims `sub` (the offer's Appointment id), `act` (`accept` or `decline`), `aud`
(AUDIENCE) and `exp` (the hold's expiry, seconds since the epoch). The HMAC key is a record in
the database (LINK_KEY, 256 random bits made by the first process that needs it), so every
process of the server signs and checks the same links. Single use follows from the offer's
state: a link acts only on a held offer (`pending`), and acting ends the hold (booked or
cancelled) in a version-checked write, so a second click, or a decline racing an accept,
finds nothing left to do (`respond.py`).
"""

from __future__ import annotations

import base64
import contextlib
import secrets
from dataclasses import dataclass
from typing import Final, Literal
from urllib.parse import urlsplit

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import OctKey

from fhir_server.repository import Repository
from resources.errors import StoreConflict

__all__ = [
    "AUDIENCE",
    "LINK_KEY",
    "LINK_PATH",
    "Action",
    "LinkInvalid",
    "OfferLink",
    "link_key",
    "offer_url",
    "read_link",
]

Action = Literal["accept", "decline"]
LINK_KEY: Final = ("waitlist", "link-key")
"""The record `(kind, key)` holding the links' HMAC key: `{"k": base64url}`."""
AUDIENCE: Final = "waitlist-offer"
LINK_PATH: Final = "/waitlist/offers/"
"""Where the links are served, at the server's origin (`fhir_server.api.waitlist_links`)."""
_ALGORITHM: Final = "HS256"


class LinkInvalid(ValueError):
    """The token is malformed, not signed by this server, of another kind, or expired."""


@dataclass(frozen=True, slots=True)
class OfferLink:
    """What a valid link asks: `action` on the offer `offer_id` (an Appointment id)."""

    offer_id: str
    action: Action


async def link_key(repository: Repository) -> OctKey:
    """The links' HMAC key, made on first use (concurrent first uses agree: the record is
    inserted once, the loser reads the winner's)."""
    records = repository.records
    found = await records.get_record(*LINK_KEY)
    if found is None:
        secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
        with contextlib.suppress(StoreConflict):
            await records.insert_record(*LINK_KEY, {"k": secret})
        found = await records.get_record(*LINK_KEY)
    assert found is not None
    return OctKey.import_key(base64.urlsafe_b64decode(str(found["k"])))


def offer_url(base_url: str, key: OctKey, offer_id: str, action: Action, expires_us: int) -> str:
    """The absolute link for `action` on the offer, valid until `expires_us` (µs UTC), at the
    origin of the FHIR base `base_url`."""
    claims = {"sub": offer_id, "act": action, "aud": AUDIENCE, "exp": expires_us // 1_000_000}
    token = jwt.encode({"alg": _ALGORITHM}, claims, key, algorithms=[_ALGORITHM])
    parts = urlsplit(base_url)
    return f"{parts.scheme}://{parts.netloc}{LINK_PATH}{token}"


def read_link(key: OctKey, token: str, now_us: int) -> OfferLink:
    """What the link's `token` asks.

    Raises:
        LinkInvalid: malformed, a bad signature, another audience, an unknown action, or
            expired at `now_us` (µs UTC).
    """
    try:
        decoded = jwt.decode(token, key, algorithms=[_ALGORITHM])
    except (JoseError, ValueError) as exc:
        raise LinkInvalid("This link is not valid") from exc
    claims = decoded.claims
    offer, action, exp = claims.get("sub"), claims.get("act"), claims.get("exp")
    if claims.get("aud") != AUDIENCE or not isinstance(offer, str) or not isinstance(exp, int):
        raise LinkInvalid("This link is not valid")
    if action not in ("accept", "decline"):
        raise LinkInvalid("This link is not valid")
    if exp * 1_000_000 <= now_us:
        raise LinkInvalid("This offer has expired")
    return OfferLink(offer, "accept" if action == "accept" else "decline")
