"""Turn one FHIRPath result value into typed index entries, by search parameter type.

The FHIR datatype of a value is inferred from its JSON shape within the parameter's type
(R4 `search.html#ptypes`): a dict with `family`/`given` is a HumanName, one with `coding` a
CodeableConcept, one with `start`/`end` a Period, and so on. Values of a shape a parameter type
cannot index (a Range for a `date`, say) and invalid values (a bad date) yield no entries.

Every converter has the shape `(param code, value, default_tz) -> Iterator[IndexEntry]`, where
`value` is one JSON value (dict, list, str, bool, int, float or Decimal) from fhirpathpy and
`default_tz` the IANA zone for dates written without an offset. None of them raises.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from decimal import Decimal
from typing import Any

from resources import references
from resources.fhir_dates import date_range
from resources.index_values import (
    DATE_MAX,
    DATE_MIN,
    DateEntry,
    IndexEntry,
    NumberEntry,
    QuantityEntry,
    ReferenceEntry,
    StringEntry,
    TokenEntry,
    UriEntry,
)

Converter = Callable[[str, Any, str], Iterator[IndexEntry]]

# HumanName and Address parts indexed by `string` parameters (R4 `search.html#string`).
_STRING_PARTS = (
    "family",
    "given",
    "prefix",
    "suffix",
    "text",
    "line",
    "city",
    "district",
    "state",
    "postalCode",
    "country",
)
_CONTACT_SYSTEMS = frozenset({"phone", "fax", "email", "pager", "url", "sms", "other"})
_CURRENCY_SYSTEM = "urn:iso:std:iso:4217"


def normalize_string(text: str) -> str:
    """Fold a string for `string` search: casefold, strip accents (NFKD, combining marks
    dropped), collapse whitespace runs to one space and trim (R4 `search.html#string`).

    Example: `"  Ångström\\tÉLodie "` -> `"angstrom elodie"`.
    """
    if text.isascii():
        return " ".join(text.lower().split())
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    stripped = "".join(char for char in decomposed if not unicodedata.combining(char))
    return " ".join(stripped.split())


def _number(value: Any) -> float | None:
    """A JSON/FHIRPath number as float; None for anything else (booleans included)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float | Decimal):
        return float(value)
    return None


def _strings(value: Any) -> Iterator[str]:
    """`value` itself if a string, or the strings of a list."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        yield from (item for item in value if isinstance(item, str))


def string_entries(param: str, value: Any, default_tz: str) -> Iterator[IndexEntry]:
    """Strings, and the parts of a HumanName or Address, as `StringEntry`s."""
    del default_tz
    if isinstance(value, dict):
        texts = [text for part in _STRING_PARTS for text in _strings(value.get(part))]
    else:
        texts = list(_strings(value))
    for text in texts:
        norm = normalize_string(text)
        if norm:
            yield StringEntry(param=param, norm=norm, exact=text)


def _text(value: Any) -> str | None:
    return normalize_string(value) or None if isinstance(value, str) else None


def token_entries(param: str, value: Any, default_tz: str) -> Iterator[IndexEntry]:
    """Coding, CodeableConcept, Identifier, ContactPoint, code/string/id/boolean as tokens."""
    del default_tz
    if isinstance(value, bool):
        yield TokenEntry(param=param, system=None, code="true" if value else "false")
    elif isinstance(value, str):
        yield TokenEntry(param=param, system=None, code=value)
    elif isinstance(value, int):
        yield TokenEntry(param=param, system=None, code=str(value))
    elif not isinstance(value, dict) or "reference" in value:
        return
    elif "coding" in value or set(value) <= {"text", "id", "extension"}:
        yield from _codeable_concept(param, value)
    elif isinstance(value.get("value"), str):
        code = value["value"]
        if value.get("system") in _CONTACT_SYSTEMS:
            yield TokenEntry(param=param, system=None, code=code)
        else:
            type_text = (
                value.get("type", {}).get("text") if isinstance(value.get("type"), dict) else None
            )
            yield TokenEntry(
                param=param, system=value.get("system"), code=code, text=_text(type_text)
            )
    elif "value" not in value and ("code" in value or "system" in value):
        yield TokenEntry(
            param=param,
            system=value.get("system"),
            code=value.get("code"),
            text=_text(value.get("display")),
        )


def _codeable_concept(param: str, value: Mapping[str, Any]) -> Iterator[TokenEntry]:
    """Each coding (text: its display, else the concept's text), plus the concept's text."""
    concept_text = _text(value.get("text"))
    texts: set[str | None] = set()
    for coding in value.get("coding", ()):
        if isinstance(coding, dict) and ("code" in coding or "system" in coding):
            text = _text(coding.get("display")) or concept_text
            texts.add(text)
            yield TokenEntry(
                param=param, system=coding.get("system"), code=coding.get("code"), text=text
            )
    if concept_text is not None and concept_text not in texts:
        yield TokenEntry(param=param, system=None, code=None, text=concept_text)


def _range(text: Any, default_tz: str) -> tuple[int, int] | None:
    if not isinstance(text, str):
        return None
    try:
        return date_range(text, default_tz)
    except ValueError:
        return None


def date_entries(param: str, value: Any, default_tz: str) -> Iterator[IndexEntry]:
    """date/dateTime/instant, Period (open ends DATE_MIN/DATE_MAX), Timing events."""
    if isinstance(value, str):
        found = _range(value, default_tz)
        if found is not None:
            yield DateEntry(param=param, low=found[0], high=found[1])
    elif isinstance(value, dict) and ("start" in value or "end" in value):
        start, end = _range(value.get("start"), default_tz), _range(value.get("end"), default_tz)
        if start is not None or end is not None:
            yield DateEntry(
                param=param,
                low=start[0] if start is not None else DATE_MIN,
                high=end[1] if end is not None else DATE_MAX,
            )
    elif isinstance(value, dict) and "event" in value:
        for event in _strings(value["event"]):
            yield from date_entries(param, event, default_tz)


def parse_reference(param: str, reference: str) -> ReferenceEntry:
    """A literal reference's entry: a relative `Type/id` (version dropped) -> type and id;
    an absolute `http(s)://.../Type/id`, `#contained`, `urn:uuid:`, canonicals and anything
    else -> url only (`resources.references`; R4 `references.html#literal`,
    `search.html#reference`). `localize` turns an absolute URL on this server's base into
    type and id where the base is known (index extraction at write time)."""
    found = references.parse_reference(reference)
    if found.kind != "local" or found.resource_type is None:
        return ReferenceEntry(param=param, ref_type=None, ref_id=None, url=reference)
    return ReferenceEntry(param=param, ref_type=found.resource_type, ref_id=found.id, url=None)


def localize(entry: IndexEntry, bases: tuple[str, ...]) -> IndexEntry:
    """`entry` with an absolute reference on one of `bases` (this server) turned into the
    type and id it names; any other entry unchanged."""
    if not isinstance(entry, ReferenceEntry) or entry.url is None or entry.ref_type is not None:
        return entry
    found = references.parse_reference(entry.url, bases)
    if found.kind != "local":
        return entry
    return replace(entry, ref_type=found.resource_type, ref_id=found.id, url=None)


def reference_entries(param: str, value: Any, default_tz: str) -> Iterator[IndexEntry]:
    """Reference (literal and/or identifier), and canonical/uri strings as `url`."""
    del default_tz
    if isinstance(value, str):
        yield ReferenceEntry(param=param, ref_type=None, ref_id=None, url=value)
        return
    if not isinstance(value, dict):
        return
    reference = value.get("reference")
    identifier = value.get("identifier")
    system = code = None
    if isinstance(identifier, dict) and isinstance(identifier.get("value"), str):
        system, code = identifier.get("system"), identifier["value"]
    if isinstance(reference, str):
        entry = parse_reference(param, reference)
        if code is not None:
            entry = replace(entry, identifier_system=system, identifier_value=code)
        yield entry
    elif code is not None:
        yield ReferenceEntry(
            param=param,
            ref_type=None,
            ref_id=None,
            url=None,
            identifier_system=system,
            identifier_value=code,
        )


def reference_target(entry: IndexEntry, value: Any, contained: Mapping[Any, Any]) -> str | None:
    """The resource type a reference points to, as `resolve()` would find it: the literal's
    type, a `#id` contained resource's type, else `Reference.type`; None if unknown."""
    if not isinstance(entry, ReferenceEntry):
        return None
    if entry.ref_type is not None:
        return entry.ref_type
    if entry.url is not None and entry.url.startswith("#"):
        found = contained.get(entry.url[1:])
        if isinstance(found, str):
            return found
    declared = value.get("type") if isinstance(value, dict) else None
    return declared if isinstance(declared, str) else None


def number_entries(param: str, value: Any, default_tz: str) -> Iterator[IndexEntry]:
    """decimal/integer values."""
    del default_tz
    number = _number(value)
    if number is not None:
        yield NumberEntry(param=param, value=number)


def quantity_entries(param: str, value: Any, default_tz: str) -> Iterator[IndexEntry]:
    """Quantity (and Age, Duration, SimpleQuantity...), Money (system ISO 4217), numbers."""
    del default_tz
    number = _number(value)
    if number is not None:
        yield QuantityEntry(param=param, value=number, system=None, code=None, unit=None)
        return
    if not isinstance(value, dict):
        return
    number = _number(value.get("value"))
    if number is None:
        return
    if "currency" in value:
        yield QuantityEntry(
            param=param, value=number, system=_CURRENCY_SYSTEM, code=value["currency"], unit=None
        )
    else:
        yield QuantityEntry(
            param=param,
            value=number,
            system=value.get("system"),
            code=value.get("code"),
            unit=value.get("unit"),
        )


def uri_entries(param: str, value: Any, default_tz: str) -> Iterator[IndexEntry]:
    """uri/url/canonical strings."""
    del default_tz
    if isinstance(value, str) and value:
        yield UriEntry(param=param, value=value)


CONVERTERS: Mapping[str, Converter] = {
    "string": string_entries,
    "token": token_entries,
    "date": date_entries,
    "reference": reference_entries,
    "number": number_entries,
    "quantity": quantity_entries,
    "uri": uri_entries,
}
