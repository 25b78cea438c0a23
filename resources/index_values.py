"""Typed search-index entries extracted from a resource at write time.

One class per FHIR search parameter type (R4 `search.html#ptypes`). Storage adapters persist these
and answer searches from them, never by scanning resource JSON.

Units and conventions:
    * Instants are integers: microseconds since 1970-01-01T00:00:00Z (UTC).
    * Date ranges are half-open `[low, high)`; an open end is `DATE_MIN` / `DATE_MAX`.
    * Strings carry `norm` (case- and accent-folded, whitespace collapsed) for the default and
      `:contains` searches, and `exact` (as written) for `:exact`.
"""

from __future__ import annotations

from dataclasses import dataclass

DATE_MIN = -(2**62)
DATE_MAX = 2**62


@dataclass(frozen=True, slots=True)
class StringEntry:
    """A `string` parameter value (HumanName, Address and plain strings flattened)."""

    param: str
    norm: str
    exact: str


@dataclass(frozen=True, slots=True)
class TokenEntry:
    """A `token` value: `system|code`, plus display/text for the `:text` modifier.

    `system` is None when the element has no system (e.g. a plain `code` or boolean).
    `text` is the normalised Coding.display / CodeableConcept.text / Identifier.type.text.
    """

    param: str
    system: str | None
    code: str | None
    text: str | None = None


@dataclass(frozen=True, slots=True)
class DateEntry:
    """A `date` value as a half-open UTC range `[low, high)` in microseconds since the epoch."""

    param: str
    low: int
    high: int


@dataclass(frozen=True, slots=True)
class ReferenceEntry:
    """A `reference` value.

    Attributes:
        ref_type: the target resource type for a literal reference (`Patient`), else None.
        ref_id: the target id for a literal reference, else None.
        url: the reference as written (absolute URLs and canonicals are searchable by `url`).
        identifier_system / identifier_value: `Reference.identifier`, for `:identifier`.
    """

    param: str
    ref_type: str | None
    ref_id: str | None
    url: str | None
    identifier_system: str | None = None
    identifier_value: str | None = None


@dataclass(frozen=True, slots=True)
class NumberEntry:
    """A `number` value."""

    param: str
    value: float


@dataclass(frozen=True, slots=True)
class QuantityEntry:
    """A `quantity` value with its unit system/code (UCUM or other) and display unit."""

    param: str
    value: float
    system: str | None
    code: str | None
    unit: str | None


@dataclass(frozen=True, slots=True)
class UriEntry:
    """A `uri` value (also canonical URLs)."""

    param: str
    value: str


IndexEntry = (
    StringEntry | TokenEntry | DateEntry | ReferenceEntry | NumberEntry | QuantityEntry | UriEntry
)


@dataclass(frozen=True, slots=True)
class SortKey:
    """The value a resource sorts by for one parameter (`_sort`).

    `asc` is the smallest value (used for ascending order), `desc` the largest. Both are strings
    or numbers comparable within one parameter; None means the resource has no value.
    """

    param: str
    asc: str | float | None
    desc: str | float | None


@dataclass(frozen=True, slots=True)
class ResourceIndex:
    """Everything a store keeps to search one resource version."""

    entries: tuple[IndexEntry, ...]
    sort_keys: tuple[SortKey, ...]
    compartments: tuple[str, ...] = ()
