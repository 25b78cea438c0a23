"""The typed search request: what a FHIR search asks for, with parameter, modifier, prefix and
values kept apart, independent of any storage engine (R4 `search.html`).

`fhir_server.search.parse` builds these from a query string; each storage adapter compiles them
for its engine. Instants are microseconds since the epoch (UTC); ranges are half-open.

Matching semantics (every adapter implements exactly these; `tests/storage/contract.py` checks
them). A condition's values are ORed; a query's conditions are ANDed. "An entry" is an index entry
(`resources.index_values`) of the resource for the condition's `param`.

* String: "" -> some entry's `norm` starts with the value; "exact" -> some `exact` equals it;
  "contains" -> some `norm` contains it.
* Token: a value matches an entry when system "*" (any) and code equal (code None: any entry);
  system None: entry system is None and codes equal; else systems equal and (code None or codes
  equal). `text`: some entry's `text` starts with the value (normalised). `negate` (`:not`):
  the resource matches when NO entry matches any value (resources without the param included).
* Date (entry `[tl, th)`, search `[low, high)`): eq `low <= tl and th <= high`; ne `not eq`;
  gt `th > high`; ge `th > low`; lt `tl < low`; le `tl < high`; sa `tl >= high`; eb `th <= low`;
  ap `tl < high and th > low` (the parser has already widened the range).
* Number / Quantity (entry value `v`): eq, ap `low <= v < high`; ne `not (low <= v < high)`;
  gt `v > low`; ge `v >= low`; lt `v < low`; le `v <= low`; sa as gt; eb as lt. Quantity also
  needs system ("*" = any) and code to match when given (code None = any unit).
* Reference: `ref_id` given -> entry ref_id equal and (ref_type None or equal); `url` given ->
  entry url equal; `identifier` -> identifier values equal and (system "*" or equal; None
  only matches an identifier without a system, as `|value` does for tokens).
* Uri: "" equals; "below": entry starts with the value; "above": the value starts with entry.
* Missing: `missing=True` -> no entry for the param; False -> at least one.
* Chain: a reference entry of `param` with ref_type == target_type whose ref_id is the id of a
  current `target_type` resource matching `inner`.
* Has: the resource's id is the ref_id (with ref_type == the searched type) of a reference entry
  for `source_param` of a current `source_type` resource matching `inner`.
* Compartment: the value is among the resource's `ResourceIndex.compartments`.

Order: by each SortSpec on the resource's `SortKey` for that param (`asc` ascending, `desc`
descending), resources without a value last in either direction, ties by `seq` ascending; with
no SortSpec, by `seq` ascending. Paging is keyset: a Cursor holds the boundary row's sort values
and seq; `after=True` returns rows strictly after it, `after=False` rows strictly before it (in
page order).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Prefix = Literal["eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"]
PREFIXES: tuple[Prefix, ...] = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")


@dataclass(frozen=True, slots=True)
class StringCondition:
    """`string` search. `values` are normalised unless `modifier == "exact"`.

    modifier: "" (starts with), "exact" (equals, case-sensitive), "contains" (substring).
    """

    param: str
    values: tuple[str, ...]
    modifier: Literal["", "exact", "contains"] = ""


@dataclass(frozen=True, slots=True)
class TokenValue:
    """One token value. `system` is "*" for "any system" (`code`), None for "no system"
    (`|code`), else the system; `code` None means "any code of that system" (`system|`)."""

    system: str | None
    code: str | None


@dataclass(frozen=True, slots=True)
class TokenCondition:
    """`token` search; `negate` for `:not`; `text` for `:text` (values are then normalised text
    in `TokenValue.code` with system "*")."""

    param: str
    values: tuple[TokenValue, ...]
    negate: bool = False
    text: bool = False


@dataclass(frozen=True, slots=True)
class RangeValue:
    """A prefixed value with its implicit range `[low, high)` (dates: µs UTC; numbers: floats)."""

    prefix: Prefix
    low: float
    high: float


@dataclass(frozen=True, slots=True)
class DateCondition:
    """`date` search: any value matching any RangeValue (OR)."""

    param: str
    values: tuple[RangeValue, ...]


@dataclass(frozen=True, slots=True)
class NumberCondition:
    """`number` search."""

    param: str
    values: tuple[RangeValue, ...]


@dataclass(frozen=True, slots=True)
class QuantityValue:
    """A `quantity` search value: `[prefix]number|system|code` (system "*" = any)."""

    range: RangeValue
    system: str | None
    code: str | None


@dataclass(frozen=True, slots=True)
class QuantityCondition:
    """`quantity` search."""

    param: str
    values: tuple[QuantityValue, ...]


@dataclass(frozen=True, slots=True)
class ReferenceValue:
    """One reference value: a literal `Type/id` (type may be None = any type), or a `url`
    (absolute URL or canonical), or an identifier (`:identifier`, system "*" = any)."""

    ref_type: str | None = None
    ref_id: str | None = None
    url: str | None = None
    identifier_system: str | None = None
    identifier_value: str | None = None


@dataclass(frozen=True, slots=True)
class ReferenceCondition:
    """`reference` search; `identifier` true for the `:identifier` modifier."""

    param: str
    values: tuple[ReferenceValue, ...]
    identifier: bool = False


@dataclass(frozen=True, slots=True)
class UriCondition:
    """`uri` search; modifier "" (equals), "below" (prefix), "above" (value is a prefix of the
    search URL)."""

    param: str
    values: tuple[str, ...]
    modifier: Literal["", "below", "above"] = ""


ParamType = Literal["string", "token", "date", "reference", "number", "quantity", "uri"]


@dataclass(frozen=True, slots=True)
class MissingCondition:
    """`:missing=true|false`: whether the resource has any index value for `param`."""

    param: str
    param_type: ParamType
    missing: bool


@dataclass(frozen=True, slots=True)
class ChainCondition:
    """One level of chaining: resources whose `param` references a `target_type` resource that
    satisfies `inner` (e.g. `Slot?schedule.actor=Practitioner/7`)."""

    param: str
    target_type: str
    inner: Condition


@dataclass(frozen=True, slots=True)
class HasCondition:
    """Reverse chaining `_has:Source:param:...`: resources referenced, through `source_param`,
    by a `source_type` resource that satisfies `inner`."""

    source_type: str
    source_param: str
    inner: Condition


@dataclass(frozen=True, slots=True)
class CompartmentCondition:
    """Membership of a compartment, e.g. `Patient/123` (R4 `compartmentdefinition.html`)."""

    compartment: str


Condition = (
    StringCondition
    | TokenCondition
    | DateCondition
    | NumberCondition
    | QuantityCondition
    | ReferenceCondition
    | UriCondition
    | MissingCondition
    | ChainCondition
    | HasCondition
    | CompartmentCondition
)


@dataclass(frozen=True, slots=True)
class SortSpec:
    """One `_sort` key; `param` is a search parameter code (`_id`, `_lastUpdated` included)."""

    param: str
    descending: bool = False


@dataclass(frozen=True, slots=True)
class Include:
    """`_include` / `_revinclude` (`Source:param[:Target]`, `:iterate`). `source_type` "*" and
    `param` "*" mean every reference parameter."""

    source_type: str
    param: str
    target_type: str | None = None
    iterate: bool = False


@dataclass(frozen=True, slots=True)
class Cursor:
    """Keyset paging position: the sort values and sequence of the row at a page boundary.

    `after` true reads the page after that row (next), false the page before it (previous).
    """

    values: tuple[str | float | None, ...]
    seq: int
    after: bool = True


@dataclass(frozen=True, slots=True)
class StoreQuery:
    """What a ResourceStore answers: conditions ANDed, ordered, one page at a time."""

    resource_type: str
    conditions: tuple[Condition, ...] = ()
    sort: tuple[SortSpec, ...] = ()
    count: int = 20
    cursor: Cursor | None = None


@dataclass(frozen=True, slots=True)
class SearchRequest:
    """A whole FHIR search: the store query plus what the result Bundle should carry.

    Attributes:
        query: conditions, sort, page size and cursor.
        total: `_total` (`none`, `estimate`, `accurate`).
        includes / revincludes: `_include` / `_revinclude`.
        summary: `_summary` (`true`, `text`, `data`, `count`, `false`) or None.
        elements: `_elements` names, or empty.
        self_params: the query parameters understood, in order, for the `self` link.
        ignored: the parameters dropped as unknown (FHIR default handling=lenient).
    """

    query: StoreQuery
    total: Literal["none", "estimate", "accurate"] = "none"
    includes: tuple[Include, ...] = ()
    revincludes: tuple[Include, ...] = ()
    summary: str | None = None
    elements: tuple[str, ...] = ()
    self_params: tuple[tuple[str, str], ...] = field(default=())
    ignored: tuple[str, ...] = ()
