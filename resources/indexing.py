"""Write-time extraction of a resource's search-index entries, sort keys and compartments.

Every non-composite, non-special R4 search parameter of the resource's type
(`resources.search_parameters`) is evaluated with fhirpathpy (R4 model, so choice types such as
`(Observation.value as Quantity)` work) and each value is turned into typed entries
(`resources.index_values`) according to its FHIR datatype, inferred from the value's shape and
the parameter type (R4 `search.html#ptypes`). fhirpathpy has no `resolve()`: a branch ending in
`.where(resolve() is T)` is evaluated without it and only the references whose target type is
`T` are kept. An expression fhirpathpy cannot evaluate never fails a write: the parameter is
skipped and the expression recorded once in `UNSUPPORTED_EXPRESSIONS`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import fhirpathpy
from fhirpathpy.engine.nodes import ResourceNode
from fhirpathpy.models import models as fhirpath_models

from resources.fhir_dates import check_zone
from resources.index_conversions import CONVERTERS, localize, normalize_string, reference_target
from resources.index_paths import (
    Evaluator,
    is_member_path,
    leading_steps,
    member_path,
    reachable,
)
from resources.index_values import (
    DateEntry,
    IndexEntry,
    NumberEntry,
    QuantityEntry,
    ReferenceEntry,
    ResourceIndex,
    SortKey,
    StringEntry,
    TokenEntry,
    UriEntry,
)
from resources.search_parameters import (
    COMPARTMENT_SELF,
    INDEXED_TYPES,
    compartment_params,
    search_params,
)

__all__ = ["UNSUPPORTED_EXPRESSIONS", "extract_index", "normalize_string"]

# Expressions (as evaluated, after the rewrites above) that fhirpathpy failed on; each is
# recorded once and its parameter skipped. Read it in tests and reports; never mutate it.
UNSUPPORTED_EXPRESSIONS: set[str] = set()

COMPARTMENT_TYPES: tuple[str, ...] = ("Patient", "Practitioner")
_ABSTRACT_PREFIX = re.compile(r"^(\(?)(?:Resource|DomainResource)\.")
_RESOLVE_FILTER = re.compile(r"^(?P<path>.+)\.where\(resolve\(\) is (?P<type>[A-Za-z]+)\)$")
# `X.where(system='phone')` is evaluated as `X` (shared with the `telecom` parameter) and
# filtered here: one fhirpathpy call fewer per telecom parameter, same result.
_EQUALS_FILTER = re.compile(
    r"^(?P<path>.+)\.where\((?P<field>[a-z]\w*) ?= ?'(?P<value>[^'\\]*)'\)$"
)


@dataclass(frozen=True, slots=True)
class _Branch:
    """One `|` branch of a parameter's expression, ready to evaluate."""

    expression: str  # as evaluated, after the rewrites
    evaluate: Evaluator | None
    steps: tuple[str, ...] | None  # member path that must exist (choice stems); None: run
    resolve_type: str | None  # keep only references to this type (`where(resolve() is T)`)
    equals: tuple[str, str] | None  # keep only elements whose `field` is `value`


@dataclass(frozen=True, slots=True)
class _ParamPlan:
    code: str
    type: str
    branches: tuple[_Branch, ...]
    compartments: tuple[str, ...]  # compartment types this parameter places the resource in


@dataclass(frozen=True, slots=True)
class _TypePlan:
    params: tuple[_ParamPlan, ...]
    own_compartments: tuple[str, ...]  # compartments a resource of this type is in itself


def split_union(expression: str) -> list[str]:
    """Split a FHIRPath expression on its top-level `|` (outside parentheses and quotes)."""
    branches: list[str] = []
    depth, quote, start = 0, False, 0
    for index, char in enumerate(expression):
        if char == "'":
            quote = not quote
        elif quote:
            continue
        elif char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
        elif char == "|" and depth == 0:
            branches.append(expression[start:index].strip())
            start = index + 1
    branches.append(expression[start:].strip())
    return [branch for branch in branches if branch]


@functools.cache
def _compile(expression: str) -> Evaluator | None:
    """Compile a FHIRPath expression once; None (and recorded) if fhirpathpy rejects it.

    The evaluator returns the matched JSON values themselves (fhirpathpy's raw-data mode
    unwrapped: no copies), skipping primitives present only as extensions (`_birthDate`).
    """
    try:
        compiled = fhirpathpy.compile(
            expression, fhirpath_models["r4"], options={"returnRawData": True}
        )
    except Exception:  # fhirpathpy raises bare Exception subclasses of every kind
        UNSUPPORTED_EXPRESSIONS.add(expression)
        return None

    def evaluate(resource: dict[str, Any]) -> list[Any]:
        values = []
        for node in compiled(resource, None):
            value = node.data if isinstance(node, ResourceNode) else node
            if value is not None:
                values.append(value)
        return values

    return evaluate


def _branch(resource_type: str, expression: str) -> _Branch:
    expression = _ABSTRACT_PREFIX.sub(rf"\g<1>{resource_type}.", expression)
    resolve_type = None
    match = _RESOLVE_FILTER.match(expression)
    if match is not None:
        expression, resolve_type = match["path"], match["type"]
    equals = None
    match = _EQUALS_FILTER.match(expression)
    if match is not None:
        expression, equals = match["path"], (match["field"], match["value"])
    compiled = _compile(expression)
    steps = leading_steps(resource_type, expression)
    if compiled is not None and steps and is_member_path(expression):
        compiled = member_path(steps, compiled)
    return _Branch(
        expression=expression,
        evaluate=compiled,
        steps=steps,
        resolve_type=resolve_type,
        equals=equals,
    )


@functools.cache
def _plan(resource_type: str) -> _TypePlan:
    """What to evaluate for one resource type, built once per type."""
    in_compartment: dict[str, list[str]] = {}
    own: list[str] = []
    for compartment in COMPARTMENT_TYPES:
        codes = compartment_params(compartment, resource_type)
        if resource_type == compartment or COMPARTMENT_SELF in codes:
            own.append(compartment)
        for code in codes:
            in_compartment.setdefault(code, []).append(compartment)
    params = tuple(
        _ParamPlan(
            code=code,
            type=definition.type,
            branches=tuple(_branch(resource_type, part) for part in split_union(expression)),
            compartments=tuple(in_compartment.get(code, ())),
        )
        for code, definition in search_params(resource_type).items()
        if definition.type in INDEXED_TYPES and (expression := definition.expression)
    )
    return _TypePlan(params=params, own_compartments=tuple(own))


def _values(
    plan: _ParamPlan, resource: dict[str, Any], memo: dict[str, list[Any]]
) -> Iterable[tuple[Any, str | None]]:
    """Evaluate a parameter's branches: `(value, resolve_type)` pairs; failures recorded.

    `memo` holds this resource's results by expression (`name` and `phonetic` share one).
    """
    for branch in plan.branches:
        if branch.evaluate is None:
            continue
        values = memo.get(branch.expression)
        if values is None:
            if branch.steps is not None and not reachable(resource, branch.steps):
                values = []
            else:
                try:
                    values = branch.evaluate(resource)
                except Exception:  # a data-dependent failure must not fail the write
                    UNSUPPORTED_EXPRESSIONS.add(branch.expression)
                    values = []
            memo[branch.expression] = values
        if branch.equals is not None:
            field, wanted = branch.equals
            values = [v for v in values if isinstance(v, dict) and v.get(field) == wanted]
        for value in values:
            yield value, branch.resolve_type


def _sort_value(entry: IndexEntry, descending: bool) -> str | float | None:
    match entry:
        case StringEntry(norm=norm):
            return norm
        case DateEntry(low=low, high=high):
            return high if descending else low
        case NumberEntry(value=value) | QuantityEntry(value=value):
            return value
        case TokenEntry(code=code):
            return code
        case ReferenceEntry(ref_type=ref_type, ref_id=ref_id, url=url):
            return f"{ref_type}/{ref_id}" if ref_id is not None else url
        case UriEntry(value=value):
            return value


def _sort_key(code: str, entries: list[IndexEntry]) -> SortKey:
    """Smallest (`asc`) and largest (`desc`) value among a parameter's entries."""
    lows = [v for e in entries if (v := _sort_value(e, descending=False)) is not None]
    highs = [v for e in entries if (v := _sort_value(e, descending=True)) is not None]
    return SortKey(
        param=code,
        asc=min(lows) if lows else None,
        desc=max(highs) if highs else None,
    )


def extract_index(
    resource: dict[str, Any], default_tz: str = "UTC", bases: tuple[str, ...] = ()
) -> ResourceIndex:
    """Extract everything a store keeps to search one resource version.

    Args:
        resource: a FHIR R4 resource as parsed JSON (must carry `resourceType`; read only).
        default_tz: IANA zone for dates and dateTimes written without an offset.
        bases: this server's FHIR base URLs: an absolute reference on one of them is indexed
            like the relative `Type/id` it names (`resources.references`), so claims,
            compartments, includes and searches see one key whatever the spelling.

    Returns:
        `ResourceIndex` with: `entries`, deduplicated per parameter, for every indexed
        parameter with a value (dates as `[low, high)` µs UTC ranges, strings normalised);
        one `SortKey` per parameter that has entries (`asc`/`desc` None when none of them is
        orderable, e.g. an identifier-only reference); `compartments`, sorted, such as
        `("Patient/p1", "Practitioner/d7")` (R4 `compartmentdefinition.html`). Unknown
        resource types yield an empty index.

    Raises:
        ValueError: `default_tz` is not a known IANA zone. Bad values inside the resource
            (an invalid date, say) are skipped, never raised: validation is not done here.
    """
    check_zone(default_tz)
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str):
        return ResourceIndex(entries=(), sort_keys=())
    plan = _plan(resource_type)
    entries: list[IndexEntry] = []
    sort_keys: list[SortKey] = []
    compartments: set[str] = set()
    resource_id = resource.get("id")
    if isinstance(resource_id, str):
        compartments.update(f"{kind}/{resource_id}" for kind in plan.own_compartments)
    contained = _contained_types(resource)
    memo: dict[str, list[Any]] = {}
    for param in plan.params:
        param_entries = _param_entries(param, resource, memo, contained, default_tz, bases)
        if not param_entries:
            continue
        entries.extend(param_entries)
        sort_keys.append(_sort_key(param.code, param_entries))
        compartments.update(_compartment_refs(param, param_entries))
    return ResourceIndex(
        entries=tuple(entries), sort_keys=tuple(sort_keys), compartments=tuple(sorted(compartments))
    )


def compartments_of(
    resource: dict[str, Any], default_tz: str = "UTC", bases: tuple[str, ...] = ()
) -> tuple[str, ...]:
    """The compartments a resource is in, as `extract_index(...).compartments` gives them
    (same `bases`), evaluating only the parameters that place it in one (access checks of
    single resources: a fraction of a whole extraction).

    Raises:
        ValueError: `default_tz` is not a known IANA zone.
    """
    check_zone(default_tz)
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str):
        return ()
    plan = _plan(resource_type)
    compartments: set[str] = set()
    resource_id = resource.get("id")
    if isinstance(resource_id, str):
        compartments.update(f"{kind}/{resource_id}" for kind in plan.own_compartments)
    contained = _contained_types(resource)
    memo: dict[str, list[Any]] = {}
    for param in plan.params:
        if param.compartments:
            entries = _param_entries(param, resource, memo, contained, default_tz, bases)
            compartments.update(_compartment_refs(param, entries))
    return tuple(sorted(compartments))


def _contained_types(resource: dict[str, Any]) -> dict[Any, Any]:
    """`{id: resourceType}` of the contained resources (for `resolve() is Type`)."""
    return {
        item.get("id"): item.get("resourceType")
        for item in resource.get("contained", ())
        if isinstance(item, dict)
    }


def _param_entries(
    param: _ParamPlan,
    resource: dict[str, Any],
    memo: dict[str, list[Any]],
    contained: dict[Any, Any],
    default_tz: str,
    bases: tuple[str, ...] = (),
) -> list[IndexEntry]:
    """The deduplicated index entries of one parameter of `resource`, in order (absolute
    references on `bases` as local ones)."""
    convert = CONVERTERS[param.type]
    found: dict[IndexEntry, None] = {}
    for value, resolve_type in _values(param, resource, memo):
        for raw in convert(param.code, value, default_tz):
            entry = localize(raw, bases) if bases else raw
            if resolve_type is None or reference_target(entry, value, contained) == resolve_type:
                found[entry] = None
    return list(found)


def _compartment_refs(param: _ParamPlan, entries: list[IndexEntry]) -> set[str]:
    """The compartments (`Patient/1`) the parameter's reference entries place a resource in."""
    return {
        f"{kind}/{entry.ref_id}"
        for kind in param.compartments
        for entry in entries
        if isinstance(entry, ReferenceEntry) and entry.ref_type == kind and entry.ref_id
    }
