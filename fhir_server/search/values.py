"""Parse search parameter values by type (R4 `search.html#ptypes`, `#escaping`, `#prefix`).

Each parser takes the raw text of ONE value (already split on unescaped commas) and returns the
typed value of `fhir_server.search.query`, or raises `ValueError` with a message fit for a client.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from fhir_server.search.query import (
    PREFIXES,
    Prefix,
    QuantityValue,
    RangeValue,
    ReferenceValue,
    TokenValue,
)
from resources import references
from resources.fhir_dates import date_range, now_us

_SPLIT_COMMA = re.compile(r"(?<!\\),")
_SPLIT_PIPE = re.compile(r"(?<!\\)\|")
_PREFIX_RE = re.compile(r"^(eq|ne|gt|lt|ge|le|sa|eb|ap)(?=[-+0-9.])")


def unescape(text: str) -> str:
    """Undo search escaping: `\\,` `\\$` `\\|` `\\\\`."""
    return re.sub(r"\\([,$|\\])", r"\1", text)


def split_or(text: str) -> list[str]:
    """Split a parameter value on unescaped commas (OR), keeping escapes for later steps."""
    return _SPLIT_COMMA.split(text)


def _split_pipe(text: str) -> list[str]:
    return [unescape(p) for p in _SPLIT_PIPE.split(text)]


def split_prefix(text: str) -> tuple[Prefix, str]:
    """Split an optional comparison prefix (`ge2020` -> `("ge", "2020")`); default `eq`."""
    m = _PREFIX_RE.match(text)
    if m:
        prefix = next(p for p in PREFIXES if p == m.group(1))
        return prefix, text[2:]
    return "eq", text


def parse_token(text: str) -> TokenValue:
    """`code` (any system), `system|code`, `|code` (no system), `system|` (any code)."""
    parts = _split_pipe(text)
    if len(parts) == 1:
        if not parts[0]:
            raise ValueError("empty token value")
        return TokenValue(system="*", code=parts[0])
    if len(parts) != 2:
        raise ValueError(f"token value {text!r} has more than one '|'")
    system, code = parts
    if not system and not code:
        raise ValueError("token value '|' names neither system nor code")
    return TokenValue(system=system or None, code=code or None)


def parse_date(text: str, default_tz: str) -> RangeValue:
    """`[prefix]date|dateTime|instant` -> a RangeValue in µs UTC (ap widened by 10%)."""
    prefix, rest = split_prefix(text)
    try:
        low, high = date_range(rest, default_tz)
    except ValueError as exc:
        raise ValueError(f"{rest!r} is not a valid FHIR date, dateTime or instant: {exc}") from exc
    if prefix == "ap":
        now = now_us()
        widen = max(abs(now - low), abs(high - now)) // 10
        low, high = low - widen, high + widen
    return RangeValue(prefix=prefix, low=low, high=high)


def _decimal(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation as exc:
        raise ValueError(f"{text!r} is not a number") from exc
    if not value.is_finite():
        raise ValueError(f"{text!r} is not a finite number")
    return value


def parse_number(text: str) -> RangeValue:
    """`[prefix]number`: eq/ne/ap use the range implied by the precision written
    (`100` -> [99.5, 100.5)); ap widens it to ±10%; comparisons use the value itself."""
    prefix, rest = split_prefix(text)
    value = _decimal(rest)
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)
    half = Decimal(5).scaleb(exponent - 1)
    if prefix in ("eq", "ne"):
        return RangeValue(prefix, float(value - half), float(value + half))
    if prefix == "ap":
        widen = max(abs(value) / 10, half)
        return RangeValue(prefix, float(value - widen), float(value + widen))
    return RangeValue(prefix, float(value), float(value))


def parse_quantity(text: str) -> QuantityValue:
    """`[prefix]number|system|code`, `[prefix]number||code`, `[prefix]number`."""
    parts = _split_pipe(text)
    if len(parts) not in (1, 3):
        raise ValueError(f"quantity value {text!r} must be number, or number|system|code")
    rng = parse_number(parts[0])
    if len(parts) == 1:
        return QuantityValue(range=rng, system="*", code=None)
    return QuantityValue(range=rng, system=parts[1] or "*", code=parts[2] or None)


def parse_reference(
    text: str, type_modifier: str | None, base_url: str
) -> tuple[ReferenceValue, ...]:
    """One reference search value -> the ReferenceValues it matches (ORed).

    `Type/id` and an absolute URL on this server's base (`resources.references`) match both
    the relative form and the absolute URL (which the index of an older version may hold
    as written); `id` alone
    matches that id of any type (or of the `:Type`); any other URL matches as written.

    Raises:
        ValueError: empty value, or a type contradicting the `:Type` modifier.
    """
    value = unescape(text)
    if not value:
        raise ValueError("empty reference value")
    found = references.parse_reference(value, (base_url,))
    if found.kind == "local" and found.resource_type is not None and found.id is not None:
        if type_modifier and type_modifier != found.resource_type:
            raise ValueError(f"reference {value!r} does not match the :{type_modifier} modifier")
        local = ReferenceValue(ref_type=found.resource_type, ref_id=found.id)
        base = base_url.rstrip("/")
        if not base:
            return (local,)
        return (local, ReferenceValue(url=f"{base}/{found.resource_type}/{found.id}"))
    if found.kind == "other" and "/" not in value and ":" not in value:
        return (ReferenceValue(ref_type=type_modifier, ref_id=value),)
    return (ReferenceValue(url=value),)


def parse_identifier(text: str) -> ReferenceValue:
    """`:identifier` value: `system|value` or `value`."""
    token = parse_token(text)
    if token.code is None:
        raise ValueError(":identifier needs a value (system|value)")
    return ReferenceValue(identifier_system=token.system, identifier_value=token.code)
