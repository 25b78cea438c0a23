"""Opaque `_cursor` tokens for keyset paging links (base64url of compact JSON)."""

from __future__ import annotations

import base64
import binascii

import orjson

from fhir_server.search.query import Cursor
from resources.errors import Invalid


def encode_cursor(cursor: Cursor) -> str:
    """Encode a Cursor as a URL-safe token."""
    raw = orjson.dumps([list(cursor.values), cursor.seq, int(cursor.after)])
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(token: str) -> Cursor:
    """Decode a token made by `encode_cursor`.

    Raises:
        Invalid: (400) the token is not one of ours.
    """
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        values, seq, after = orjson.loads(raw)
        if not isinstance(values, list) or not isinstance(seq, int):
            raise TypeError("bad cursor shape")
        return Cursor(values=tuple(values), seq=seq, after=bool(after))
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError) as exc:
        raise Invalid("Invalid _cursor: not a paging token issued by this server") from exc
