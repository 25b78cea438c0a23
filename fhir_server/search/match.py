"""Matching one resource version against search conditions in memory, with the semantics of
`fhir_server.search.query` that every store implements (the same answer a search would give
for that version), for what must be decided on a version rather than on the current state:
Subscription criteria and topic filters on the event's own version.

Chain and `_has` conditions need other resources: `matches` answers None for them (undecided
in memory); `decidable` tells a caller up front.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from fhir_server.search.query import (
    ChainCondition,
    CompartmentCondition,
    Condition,
    DateCondition,
    HasCondition,
    MissingCondition,
    NumberCondition,
    ParamType,
    QuantityCondition,
    QuantityValue,
    RangeValue,
    ReferenceCondition,
    ReferenceValue,
    StringCondition,
    TokenCondition,
    TokenValue,
    UriCondition,
)
from resources.index_values import (
    DateEntry,
    IndexEntry,
    NumberEntry,
    QuantityEntry,
    ReferenceEntry,
    ResourceIndex,
    StringEntry,
    TokenEntry,
    UriEntry,
)

__all__ = ["decidable", "matches"]

_ENTRY_OF_TYPE: dict[ParamType, type[IndexEntry]] = {
    "string": StringEntry,
    "token": TokenEntry,
    "date": DateEntry,
    "reference": ReferenceEntry,
    "number": NumberEntry,
    "quantity": QuantityEntry,
    "uri": UriEntry,
}


def decidable(conditions: Sequence[Condition]) -> bool:
    """Whether `matches` decides every condition in memory (no chain, no `_has`)."""
    return not any(isinstance(c, ChainCondition | HasCondition) for c in conditions)


def matches(index: ResourceIndex, conditions: Sequence[Condition]) -> bool | None:
    """Whether a version with `index` matches every condition (conditions ANDed, each
    condition's values ORed); None when a chain or `_has` condition leaves it undecided."""
    for cond in conditions:
        result = _one(index, cond)
        if result is not True:
            return result
    return True


E = TypeVar("E", bound=IndexEntry)


def _of(index: ResourceIndex, param: str, kind: type[E]) -> list[E]:
    return [e for e in index.entries if e.param == param and isinstance(e, kind)]


def _one(index: ResourceIndex, cond: Condition) -> bool | None:
    match cond:
        case StringCondition():
            strings = _of(index, cond.param, StringEntry)
            return any(_string(e, v, cond.modifier) for e in strings for v in cond.values)
        case TokenCondition():
            tokens = _of(index, cond.param, TokenEntry)
            hit = any(_token(e, v, cond.text) for e in tokens for v in cond.values)
            return not hit if cond.negate else hit
        case DateCondition():
            dates = _of(index, cond.param, DateEntry)
            return any(_range(e.low, e.high, v) for e in dates for v in cond.values)
        case NumberCondition():
            numbers = _of(index, cond.param, NumberEntry)
            return any(_point(e.value, v) for e in numbers for v in cond.values)
        case QuantityCondition():
            quantities = _of(index, cond.param, QuantityEntry)
            return any(_quantity(e, q) for e in quantities for q in cond.values)
        case ReferenceCondition():
            refs = _of(index, cond.param, ReferenceEntry)
            return any(_reference(e, v, cond.identifier) for e in refs for v in cond.values)
        case UriCondition():
            uris = _of(index, cond.param, UriEntry)
            return any(_uri(e.value, v, cond.modifier) for e in uris for v in cond.values)
        case MissingCondition():
            present = any(
                e.param == cond.param and isinstance(e, _ENTRY_OF_TYPE[cond.param_type])
                for e in index.entries
            )
            return present != cond.missing
        case CompartmentCondition():
            return cond.compartment in index.compartments
        case _:  # ChainCondition, HasCondition
            return None


def _string(e: StringEntry, value: str, modifier: str) -> bool:
    if modifier == "exact":
        return e.exact == value
    if modifier == "contains":
        return value in e.norm
    return e.norm.startswith(value)


def _token(e: TokenEntry, v: TokenValue, text: bool) -> bool:
    if text:
        return e.text is not None and e.text.startswith(v.code or "")
    if v.system is None and e.system is not None:
        return False
    if v.system not in (None, "*") and e.system != v.system:
        return False
    return v.code is None or e.code == v.code


def _quantity(e: QuantityEntry, q: QuantityValue) -> bool:
    if not _point(e.value, q.range):
        return False
    if q.system not in (None, "*") and e.system != q.system:
        return False
    return q.code is None or q.code in (e.code, e.unit)


def _range(tl: float, th: float, rv: RangeValue) -> bool:
    low, high = rv.low, rv.high
    match rv.prefix:
        case "eq":
            return low <= tl and th <= high
        case "ne":
            return not (low <= tl and th <= high)
        case "gt":
            return th > high
        case "ge":
            return th > low
        case "lt":
            return tl < low
        case "le":
            return tl < high
        case "sa":
            return tl >= high
        case "eb":
            return th <= low
        case _:  # ap
            return tl < high and th > low


def _point(v: float, rv: RangeValue) -> bool:
    match rv.prefix:
        case "eq" | "ap":
            return rv.low <= v < rv.high
        case "ne":
            return not (rv.low <= v < rv.high)
        case "gt" | "sa":
            return v > rv.low
        case "ge":
            return v >= rv.low
        case "lt" | "eb":
            return v < rv.low
        case _:  # le
            return v <= rv.low


def _reference(e: ReferenceEntry, v: ReferenceValue, identifier: bool) -> bool:
    if identifier:
        if e.identifier_value != v.identifier_value:
            return False
        if v.identifier_system is None:
            return e.identifier_system is None
        return v.identifier_system in ("*", e.identifier_system)
    if v.ref_id is not None:
        return e.ref_id == v.ref_id and (v.ref_type is None or e.ref_type == v.ref_type)
    return e.url == v.url


def _uri(entry: str, value: str, modifier: str) -> bool:
    if modifier == "below":
        return entry.startswith(value)
    if modifier == "above":
        return value.startswith(entry)
    return entry == value
