"""Compile a typed StoreQuery into MongoDB filter and sort documents: one compiler per type.

The semantics are those of `fhir_server.search.query` (its module docstring); the document
shapes are those of `fhir_server.storage.mongo` (its module docstring). Every leaf compiler
returns a filter document over one `resources` document; chain and `_has` conditions first
run their inner query through a bounded finder and turn the ids found into an `$in`.

Only operators that behave the same on MongoDB and on mongomock are used: `$elemMatch`, `$in`,
`$gt`/`$gte`/`$lt`/`$lte`, anchored `$regex` on `re.escape`d text, `$exists`, `$not` over
`$elemMatch`, `$or` and `$and`.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from fhir_server.search.query import (
    ChainCondition,
    CompartmentCondition,
    Condition,
    Cursor,
    DateCondition,
    HasCondition,
    MissingCondition,
    NumberCondition,
    QuantityCondition,
    RangeValue,
    ReferenceCondition,
    SortSpec,
    StringCondition,
    TokenCondition,
    UriCondition,
)
from resources.errors import TooCostly

Filter = dict[str, Any]
Finder = Callable[[Filter, Filter, int], Awaitable[list[dict[str, Any]]]]
"""`find(filter, projection, limit) -> documents` over the `resources` collection."""

MAX_INNER_MATCHES = 10_000
"""Most resources a chain or `_has` inner query may match before the search is TooCostly."""


def _all(clauses: Sequence[Filter]) -> Filter:
    """AND of filters (`{}` for none; MongoDB rejects an empty `$and`)."""
    if not clauses:
        return {}
    if len(clauses) == 1:
        return clauses[0]
    return {"$and": list(clauses)}


def _any(clauses: Sequence[Filter]) -> Filter:
    """OR of filters (matches nothing for none; MongoDB rejects an empty `$or`)."""
    if not clauses:
        return {"_id": {"$in": []}}
    if len(clauses) == 1:
        return clauses[0]
    return {"$or": list(clauses)}


def _entry(kind: str, param: str, match: Filter) -> Filter:
    """Some `idx.<kind>` entry of `param` satisfies `match`."""
    return {f"idx.{kind}": {"$elemMatch": {"p": param, **match}}}


def _starts_with(value: str) -> Filter:
    return {"$regex": "^" + re.escape(value)}


def string_filter(cond: StringCondition) -> Filter:
    """`string`: prefix of `n` (default), equality of `e` (`:exact`), substring of `n`."""
    clauses: list[Filter] = []
    for value in cond.values:
        if cond.modifier == "exact":
            match: Filter = {"e": value}
        elif cond.modifier == "contains":
            match = {"n": {"$regex": re.escape(value)}}
        else:
            match = {"n": _starts_with(value)}
        clauses.append(_entry("string", cond.param, match))
    return _any(clauses)


def _token_match(cond: TokenCondition, system: str | None, code: str | None) -> Filter:
    if cond.text:
        return {"t": _starts_with(code or "")}
    match: Filter = {}
    if system != "*":
        match["s"] = system  # None matches entries without a system
    if code is not None:
        match["c"] = code
    return match


def token_filter(cond: TokenCondition) -> Filter:
    """`token`: system/code matching, `:text` prefix, `:not` (no entry matches any value)."""
    matches = [
        _entry("token", cond.param, _token_match(cond, v.system, v.code)) for v in cond.values
    ]
    if cond.negate:
        return _all([{"idx.token": {"$not": m["idx.token"]}} for m in matches])
    return _any(matches)


def _date_clauses(rv: RangeValue) -> list[Filter]:
    """Entry matches on `[lo, hi)` for one prefixed range, ORed (R4 `search.html#prefix`)."""
    low, high = rv.low, rv.high
    match rv.prefix:
        case "eq":
            return [{"lo": {"$gte": low}, "hi": {"$lte": high}}]
        case "ne":
            return [{"lo": {"$lt": low}}, {"hi": {"$gt": high}}]
        case "gt":
            return [{"hi": {"$gt": high}}]
        case "ge":
            return [{"hi": {"$gt": low}}]
        case "lt":
            return [{"lo": {"$lt": low}}]
        case "le":
            return [{"lo": {"$lt": high}}]
        case "sa":
            return [{"lo": {"$gte": high}}]
        case "eb":
            return [{"hi": {"$lte": low}}]
        case _:  # ap: overlap with the range the parser has already widened
            return [{"lo": {"$lt": high}, "hi": {"$gt": low}}]


def date_filter(cond: DateCondition) -> Filter:
    """`date`: entry range `[lo, hi)` against each prefixed search range."""
    return _any([_entry("date", cond.param, c) for rv in cond.values for c in _date_clauses(rv)])


def _point_clauses(rv: RangeValue) -> list[Filter]:
    """Entry matches on the value `v` for one prefixed range, ORed."""
    match rv.prefix:
        case "eq" | "ap":
            return [{"v": {"$gte": rv.low, "$lt": rv.high}}]
        case "ne":
            return [{"v": {"$lt": rv.low}}, {"v": {"$gte": rv.high}}]
        case "gt" | "sa":
            return [{"v": {"$gt": rv.low}}]
        case "ge":
            return [{"v": {"$gte": rv.low}}]
        case "lt" | "eb":
            return [{"v": {"$lt": rv.low}}]
        case _:  # le
            return [{"v": {"$lte": rv.low}}]


def number_filter(cond: NumberCondition) -> Filter:
    """`number`: entry value against each prefixed range."""
    return _any([_entry("number", cond.param, c) for rv in cond.values for c in _point_clauses(rv)])


def quantity_filter(cond: QuantityCondition) -> Filter:
    """`quantity`: value as `number`; system unless None/`*`; code (or unit) unless None."""
    clauses: list[Filter] = []
    for qv in cond.values:
        unit: Filter = {}
        if qv.system not in (None, "*"):
            unit["s"] = qv.system
        if qv.code is not None:
            unit["$or"] = [{"c": qv.code}, {"u": qv.code}]
        clauses.extend(
            _entry("quantity", cond.param, {**c, **unit}) for c in _point_clauses(qv.range)
        )
    return _any(clauses)


def reference_filter(cond: ReferenceCondition) -> Filter:
    """`reference`: literal `Type/id` (type optional), `url`, or `:identifier`."""
    clauses: list[Filter] = []
    for rv in cond.values:
        if cond.identifier:
            match: Filter = {"iv": rv.identifier_value}
            if rv.identifier_system != "*":  # None (`|value`): an identifier without a system
                match["is"] = rv.identifier_system
        elif rv.ref_id is not None:
            match = {"ri": rv.ref_id}
            if rv.ref_type is not None:
                match["rt"] = rv.ref_type
        else:
            match = {"u": rv.url}
        clauses.append(_entry("reference", cond.param, match))
    return _any(clauses)


def uri_filter(cond: UriCondition) -> Filter:
    """`uri`: equality, `:below` (entry starts with value), `:above` (value starts with entry)."""
    clauses: list[Filter] = []
    for value in cond.values:
        if cond.modifier == "below":
            match: Filter = {"v": _starts_with(value)}
        elif cond.modifier == "above":
            match = {"v": {"$in": [value[:i] for i in range(len(value) + 1)]}}
        else:
            match = {"v": value}
        clauses.append(_entry("uri", cond.param, match))
    return _any(clauses)


def missing_filter(cond: MissingCondition) -> Filter:
    """`:missing`: no entry (`missing=True`) or at least one entry (False) for the param."""
    has_entry: Filter = {"$elemMatch": {"p": cond.param}}
    if cond.missing:
        return {f"idx.{cond.param_type}": {"$not": has_entry}}
    return {f"idx.{cond.param_type}": has_entry}


def compartment_filter(cond: CompartmentCondition) -> Filter:
    """Compartment membership: the value is among the document's `comp`."""
    return {"comp": cond.compartment}


async def _inner_docs(
    resource_type: str, inner: Condition, projection: Filter, find: Finder
) -> list[dict[str, Any]]:
    """Current `resource_type` documents matching `inner`; TooCostly past MAX_INNER_MATCHES."""
    flt = await compile_filter(resource_type, (inner,), find)
    docs = await find(flt, projection, MAX_INNER_MATCHES + 1)
    if len(docs) > MAX_INNER_MATCHES:
        raise TooCostly(
            f"A chained or _has search on {resource_type} matches more than "
            f"{MAX_INNER_MATCHES} resources; narrow it down"
        )
    return docs


async def chain_filter(cond: ChainCondition, find: Finder) -> Filter:
    """Chaining: a `param` reference to a current `target_type` resource matching `inner`.

    Raises:
        TooCostly: the inner query matches more than MAX_INNER_MATCHES resources.
    """
    docs = await _inner_docs(cond.target_type, cond.inner, {"id": 1}, find)
    ids = sorted({d["id"] for d in docs})
    return _entry("reference", cond.param, {"rt": cond.target_type, "ri": {"$in": ids}})


async def has_filter(resource_type: str, cond: HasCondition, find: Finder) -> Filter:
    """`_has`: the id is referenced through `source_param` by a matching `source_type`.

    Raises:
        TooCostly: the inner query matches more than MAX_INNER_MATCHES resources.
    """
    docs = await _inner_docs(cond.source_type, cond.inner, {"idx.reference": 1}, find)
    ids = sorted(
        {
            e["ri"]
            for d in docs
            for e in d.get("idx", {}).get("reference", [])
            if e.get("p") == cond.source_param
            and e.get("rt") == resource_type
            and e.get("ri") is not None
        }
    )
    return {"id": {"$in": ids}}


_LEAF_COMPILERS: dict[type, Callable[[Any], Filter]] = {
    StringCondition: string_filter,
    TokenCondition: token_filter,
    DateCondition: date_filter,
    NumberCondition: number_filter,
    QuantityCondition: quantity_filter,
    ReferenceCondition: reference_filter,
    UriCondition: uri_filter,
    MissingCondition: missing_filter,
    CompartmentCondition: compartment_filter,
}


async def compile_condition(resource_type: str, cond: Condition, find: Finder) -> Filter:
    """Compile one condition on `resource_type` documents (chain/_has run their inner query).

    Raises:
        TooCostly: a chain or `_has` inner query matches too many resources.
    """
    if isinstance(cond, ChainCondition):
        return await chain_filter(cond, find)
    if isinstance(cond, HasCondition):
        return await has_filter(resource_type, cond, find)
    return _LEAF_COMPILERS[type(cond)](cond)


async def compile_filter(
    resource_type: str, conditions: Sequence[Condition], find: Finder
) -> Filter:
    """The filter selecting current, non-deleted `resource_type` matches of all conditions.

    Raises:
        TooCostly: a chain or `_has` inner query matches too many resources.
    """
    clauses: list[Filter] = [{"type": resource_type, "deleted": False}]
    for cond in conditions:
        clauses.append(await compile_condition(resource_type, cond, find))
    return _all(clauses)


# -- order and keyset paging -----------------------------------------------------------------


def _value_field(spec: SortSpec) -> str:
    return f"sort.{spec.param}.{'d' if spec.descending else 'a'}"


def sort_order(sort: Sequence[SortSpec], *, reverse: bool = False) -> list[tuple[str, int]]:
    """The `sort()` keys for page order (or its exact reverse, to read a previous page).

    Each SortSpec sorts first on the presence flag `sort.<param>.h` descending (documents
    without a value last in either direction), then on its value, then ties on `seq`.
    """
    flip = -1 if reverse else 1
    keys: list[tuple[str, int]] = []
    for spec in sort:
        keys.append((f"sort.{spec.param}.h", -flip))
        keys.append((_value_field(spec), (-1 if spec.descending else 1) * flip))
    keys.append(("seq", flip))
    return keys


def cursor_values(doc: dict[str, Any], sort: Sequence[SortSpec]) -> tuple[str | float | None, ...]:
    """The sort values of a `resources` document in SortSpec order (None where missing)."""
    keys = doc.get("sort", {})
    out: list[str | float | None] = []
    for spec in sort:
        entry = keys.get(spec.param)
        out.append(None if entry is None else entry.get("d" if spec.descending else "a"))
    return tuple(out)


def cursor_filter(sort: Sequence[SortSpec], cursor: Cursor) -> Filter:
    """Documents strictly after (`cursor.after`) or before the cursor row in page order.

    An OR over the sort keys of "equal on every earlier key and beyond on this one", then
    "equal on all keys and beyond on `seq`". A missing value sorts after every value.
    """
    clauses: list[Filter] = []
    equal: list[Filter] = []
    for spec, value in zip(sort, cursor.values, strict=True):
        present = f"sort.{spec.param}"
        field = _value_field(spec)
        # after & ascending and before & descending read towards larger values
        op = "$gt" if spec.descending != cursor.after else "$lt"
        if value is None:
            beyond: Filter | None = None if cursor.after else {present: {"$exists": True}}
            same: Filter = {present: {"$exists": False}}
        else:
            value_beyond: Filter = {field: {"$exists": True, op: value}}
            if cursor.after:
                beyond = {"$or": [{present: {"$exists": False}}, value_beyond]}
            else:
                beyond = value_beyond
            same = {field: value}
        if beyond is not None:
            clauses.append(_all([*equal, beyond]))
        equal.append(same)
    clauses.append(_all([*equal, {"seq": {"$gt" if cursor.after else "$lt": cursor.seq}}]))
    return _any(clauses)
