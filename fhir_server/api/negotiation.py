"""Content negotiation and request parsing (R4 http.html#mime-type, #parameters, #prefer).

Formats: JSON (`application/fhir+json`, `application/json`, `application/json+fhir`) and XML
(`application/fhir+xml`, `application/xml`, `text/xml`), chosen by `_format` over `Accept`.
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import parse_qsl

import orjson

from resources.errors import Invalid, NotAcceptable, UnsupportedMediaType
from resources.xml_format import from_xml

Format = Literal["json", "xml"]
JSON_TYPES = frozenset({"application/fhir+json", "application/json", "application/json+fhir"})
XML_TYPES = frozenset(
    {"application/fhir+xml", "application/xml", "text/xml", "application/xml+fhir"}
)
FORMAT_ALIASES: dict[str, Format] = {
    "json": "json",
    "xml": "xml",
    **dict.fromkeys(JSON_TYPES, "json"),
    **dict.fromkeys(XML_TYPES, "xml"),
}
CONTENT_TYPES: dict[Format, str] = {
    "json": "application/fhir+json; charset=utf-8",
    "xml": "application/fhir+xml; charset=utf-8",
}


def _media(value: str) -> str:
    return value.split(";", 1)[0].strip().lower()


def response_format(accept: str | None, format_param: str | None) -> Format:
    """Pick the response format.

    `_format` wins over `Accept`; `*/*`, `application/*`, `text/html` (browsers) and an absent
    header give JSON. Raises NotAcceptable (406) when nothing acceptable is offered.
    """
    if format_param:
        fmt = FORMAT_ALIASES.get(_media(format_param.replace(" ", "+")))
        if fmt is None:
            raise NotAcceptable(f"_format {format_param!r} is not supported; use json or xml")
        return fmt
    if not accept:
        return "json"
    offers: list[tuple[float, int, str]] = []
    for i, part in enumerate(accept.split(",")):
        media = _media(part)
        q = 1.0
        for param in part.split(";")[1:]:
            key, _, val = param.strip().partition("=")
            if key == "q":
                try:
                    q = float(val)
                except ValueError:
                    q = 0.0
        if q > 0:
            offers.append((-q, i, media))
    for _, _, media in sorted(offers):
        if media in FORMAT_ALIASES:
            return FORMAT_ALIASES[media]
        if media in ("*/*", "application/*", "text/html", "text/*"):
            return "json"
    raise NotAcceptable(
        f"None of the media types in Accept ({accept}) is served; use application/fhir+json "
        "or application/fhir+xml"
    )


def parse_body(content_type: str | None, body: bytes) -> Any:
    """Parse a request body by its Content-Type.

    Returns:
        A dict (resource), a list (JSON Patch), a list of (name, value) pairs (form), or None
        for an empty body.

    Raises:
        Invalid: (400, `structure`) malformed JSON or XML.
        UnsupportedMediaType: (415) a Content-Type we do not read.
    """
    if not body.strip():
        return None
    media = _media(content_type or "application/fhir+json")
    if media in JSON_TYPES or media == "application/json-patch+json":
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise Invalid(f"Malformed JSON: {exc}", code="structure") from exc
    if media in XML_TYPES:
        return from_xml(body, parse_decimal=float)
    if media == "application/x-www-form-urlencoded":
        try:
            return parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError as exc:
            raise Invalid("The form body is not UTF-8", code="structure") from exc
    raise UnsupportedMediaType(
        f"Content-Type {media!r} is not supported; send application/fhir+json, "
        "application/fhir+xml or application/json-patch+json"
    )


def parse_prefer(header: str | None) -> tuple[str | None, bool]:
    """`Prefer` -> (`return` value or None, handling=strict)."""
    if not header:
        return None, False
    returned: str | None = None
    strict = False
    for part in header.split(","):
        for token in part.split(";"):
            key, _, value = token.strip().partition("=")
            value = value.strip().strip('"')
            if key == "return" and value in ("minimal", "representation", "OperationOutcome"):
                returned = value
            elif key == "handling":
                strict = value == "strict"
    return returned, strict


def prefers_async(header: str | None) -> bool:
    """Whether `Prefer` asks for `respond-async` (RFC 7240 §4.1; R4 async.html)."""
    if not header:
        return False
    tokens = (token.strip() for part in header.split(",") for token in part.split(";"))
    return any(token.lower() == "respond-async" for token in tokens)
