"""Turn a FHIR search query string into a typed SearchRequest (R4 `search.html`).

Handles parameter names with modifiers (`name:exact`, `subject:Patient`), one level of chaining
(`schedule.actor=...`), reverse chaining (`_has:Type:param:name=...`), and the result
parameters `_count _sort _include _revinclude _summary _elements _total` plus our `_cursor`.
Unknown parameters are dropped and listed in `SearchRequest.ignored` (FHIR's default lenient
handling); with `strict=True` (`Prefer: handling=strict`) they raise Invalid (400).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from fhir_server.search.cursor import decode_cursor
from fhir_server.search.query import (
    ChainCondition,
    Condition,
    DateCondition,
    HasCondition,
    Include,
    MissingCondition,
    NumberCondition,
    QuantityCondition,
    ReferenceCondition,
    SearchRequest,
    SortSpec,
    StoreQuery,
    StringCondition,
    TokenCondition,
    TokenValue,
    UriCondition,
)
from fhir_server.search.values import (
    parse_date,
    parse_identifier,
    parse_number,
    parse_quantity,
    parse_reference,
    parse_token,
    split_or,
    unescape,
)
from resources.errors import Invalid
from resources.indexing import normalize_string
from resources.search_parameters import SearchParamDef, search_param
from resources.types import is_resource_type

SUPPORTED_TYPES = ("string", "token", "date", "reference", "number", "quantity", "uri")
RESULT_PARAMS = frozenset(
    {"_count", "_sort", "_include", "_revinclude", "_summary", "_elements", "_total", "_cursor"}
)
IGNORED_CONTROL = frozenset({"_format", "_pretty", "_contained", "_containedType"})
MODIFIERS: dict[str, frozenset[str]] = {
    "string": frozenset({"exact", "contains", "missing"}),
    "token": frozenset({"not", "text", "missing"}),
    "date": frozenset({"missing"}),
    "number": frozenset({"missing"}),
    "quantity": frozenset({"missing"}),
    "reference": frozenset({"identifier", "missing"}),
    "uri": frozenset({"below", "above", "missing"}),
}
SUMMARY_MODES = frozenset({"true", "false", "text", "data", "count"})


@dataclass(frozen=True, slots=True)
class SearchContext:
    """What parsing needs from the server: paging limits, the zone for dates without offset,
    and the public base URL (to recognise absolute references to this server)."""

    default_count: int = 20
    max_count: int = 1000
    default_tz: str = "UTC"
    base_url: str = ""


def _bad(name: str, message: str) -> Invalid:
    """400 `invalid`, the offending query parameter named in diagnostics and expression."""
    return Invalid(
        f"Invalid search parameter {name!r}: {message}", code="invalid", expression=[name]
    )


def _values(name: str, raw: str) -> list[str]:
    values = split_or(raw)
    if any(v == "" for v in values):
        raise _bad(name, "empty value")
    return values


def _text(raw: str) -> str:
    """A `:text` value, unescaped and normalised; ValueError when nothing is left."""
    text = normalize_string(unescape(raw))
    if not text:
        raise ValueError("empty :text value")
    return text


def _plain_condition(
    rtype: str, name: str, pdef: SearchParamDef, modifier: str | None, raw: str, ctx: SearchContext
) -> Condition:
    """A condition on one parameter of `rtype` (no chain), after modifier checks."""
    ptype = pdef.type
    if modifier == "missing":
        if raw not in ("true", "false"):
            raise _bad(name, ":missing takes true or false")
        return MissingCondition(pdef.code, ptype, raw == "true")  # type: ignore[arg-type]
    type_modifier: str | None = None
    if modifier is not None and modifier not in MODIFIERS[ptype]:
        if ptype == "reference" and is_resource_type(modifier):
            type_modifier = modifier
        else:
            raise _bad(name, f"modifier :{modifier} is not supported for {ptype} parameters")
    values = _values(name, raw)
    try:
        match ptype:
            case "string":
                mod = modifier or ""
                texts = tuple(
                    unescape(v) if mod == "exact" else normalize_string(unescape(v)) for v in values
                )
                return StringCondition(pdef.code, texts, mod)  # type: ignore[arg-type]
            case "token":
                if modifier == "text":  # free text: a `|` in it is not a system separator
                    toks = tuple(TokenValue("*", _text(v)) for v in values)
                    return TokenCondition(pdef.code, toks, text=True)
                return TokenCondition(
                    pdef.code, tuple(parse_token(v) for v in values), negate=modifier == "not"
                )
            case "date":
                return DateCondition(
                    pdef.code, tuple(parse_date(unescape(v), ctx.default_tz) for v in values)
                )
            case "number":
                return NumberCondition(pdef.code, tuple(parse_number(unescape(v)) for v in values))
            case "quantity":
                return QuantityCondition(pdef.code, tuple(parse_quantity(v) for v in values))
            case "reference":
                if modifier == "identifier":
                    return ReferenceCondition(
                        pdef.code, tuple(parse_identifier(v) for v in values), identifier=True
                    )
                refs = tuple(
                    ref for v in values for ref in parse_reference(v, type_modifier, ctx.base_url)
                )
                return ReferenceCondition(pdef.code, refs)
            case _:
                mod = modifier or ""
                return UriCondition(pdef.code, tuple(unescape(v) for v in values), mod)  # type: ignore[arg-type]
    except ValueError as exc:
        raise _bad(name, str(exc)) from exc


class _Unknown(Exception):
    """A parameter this server does not know for the type (dropped unless strict)."""


def _lookup(rtype: str, code: str) -> SearchParamDef:
    pdef = search_param(rtype, code)
    if pdef is None:
        raise _Unknown(f"{rtype} has no search parameter {code!r}")
    if pdef.type not in SUPPORTED_TYPES or pdef.expression is None:
        raise _Unknown(f"search parameter {code!r} ({pdef.type}) is not supported")
    return pdef


def parse_condition(rtype: str, name: str, raw: str, ctx: SearchContext) -> Condition:
    """Parse one `name=value` pair into a condition on `rtype`.

    Raises:
        Invalid: a malformed value or an unsupported modifier (400).
        _Unknown: the parameter is not known for the type.
    """
    if name.startswith("_has:"):
        parts = name.split(":", 3)
        if len(parts) != 4 or not all(parts[1:]):
            raise _bad(name, "expected _has:Type:param:name")
        _, source_type, source_param, rest = parts
        if not is_resource_type(source_type):
            raise _bad(name, f"unknown resource type {source_type!r}")
        ref = _lookup(source_type, source_param)
        if ref.type != "reference":
            raise _bad(name, f"{source_type}.{source_param} is not a reference parameter")
        inner = parse_condition(source_type, rest, raw, ctx)
        return HasCondition(source_type, source_param, inner)
    head, dot, tail = name.partition(".")
    code, _, modifier = head.partition(":")
    pdef = _lookup(rtype, code)
    if not dot:
        return _plain_condition(rtype, name, pdef, modifier or None, raw, ctx)
    if pdef.type != "reference":
        raise _bad(name, f"{code!r} is not a reference parameter, so it cannot be chained")
    targets = [modifier] if modifier else list(pdef.targets)
    candidates = [
        t
        for t in targets
        if is_resource_type(t) and search_param(t, tail.split(":")[0].split(".")[0])
    ]
    if not candidates:
        raise _Unknown(f"no target of {code!r} has a search parameter {tail!r}")
    if len(candidates) > 1:
        raise _bad(name, f"chain is ambiguous between {', '.join(candidates)}: add :Type")
    target = candidates[0]
    if "." in tail.split(":")[0]:
        raise _bad(name, "only one level of chaining is supported")
    return ChainCondition(code, target, parse_condition(target, tail, raw, ctx))


def _parse_sort(rtype: str, raw: str) -> tuple[SortSpec, ...]:
    specs: list[SortSpec] = []
    for part in raw.split(","):
        descending = part.startswith("-")
        code = part.removeprefix("-")
        if not code or search_param(rtype, code) is None:
            raise _bad("_sort", f"{rtype} has no search parameter {code!r} to sort by")
        specs.append(SortSpec(code, descending))
    return tuple(specs)


def _parse_include(rtype: str, name: str, raw: str, reverse: bool) -> Include:
    iterate = name.endswith((":iterate", ":recurse"))
    if raw == "*":
        if reverse:  # every reference of every type: name the source type instead
            raise Invalid(
                f"{name}=* is not supported; name the source type, e.g. {name}=Appointment:*",
                code="not-supported",
                expression=[name],
            )
        return Include("*", "*", None, iterate)
    parts = raw.split(":")
    if len(parts) not in (2, 3) or not is_resource_type(parts[0]):
        raise _bad(name, f"{raw!r} is not Type:param[:targetType]")
    source, code = parts[0], parts[1]
    if not reverse and source != rtype and not iterate:
        raise _bad(name, f"{raw!r} does not start with the searched type {rtype}")
    pdef = search_param(source, code)
    if code != "*" and (pdef is None or pdef.type != "reference"):
        raise _bad(name, f"{source} has no reference parameter {code!r}")
    target = parts[2] if len(parts) == 3 else None
    if target is not None and not is_resource_type(target):
        raise _bad(name, f"unknown target type {target!r}")
    return Include(source, code, target, iterate)


def parse_search(
    rtype: str,
    params: Sequence[tuple[str, str]],
    ctx: SearchContext,
    *,
    strict: bool = False,
) -> SearchRequest:
    """Parse the query parameters of a search on `rtype`.

    Args:
        rtype: the searched resource type.
        params: the query parameters in order (repeats are ANDed).
        ctx: limits and defaults.
        strict: raise on unknown or unsupported parameters instead of ignoring them.

    Returns:
        The SearchRequest; `self_params` holds what was understood, `ignored` what was not.

    Raises:
        Invalid: (400) malformed values, bad modifiers, bad result parameters, and unknown
            parameters when `strict`.
    """
    conditions: list[Condition] = []
    understood: list[tuple[str, str]] = []
    ignored: list[str] = []
    count = ctx.default_count
    sort: tuple[SortSpec, ...] = ()
    includes: list[Include] = []
    revincludes: list[Include] = []
    summary: str | None = None
    elements: tuple[str, ...] = ()
    total: Literal["none", "estimate", "accurate"] = "none"
    cursor = None
    for name, raw in params:
        if name in IGNORED_CONTROL:
            continue
        base = name.split(":", 1)[0]
        if base in RESULT_PARAMS:
            if base == "_count":
                if not raw.isdigit():
                    raise _bad(name, "must be a non-negative integer")
                count = min(int(raw), ctx.max_count)
            elif base == "_sort":
                sort = _parse_sort(rtype, raw)
            elif base in ("_include", "_revinclude"):
                inc = _parse_include(rtype, name, raw, base == "_revinclude")
                (revincludes if base == "_revinclude" else includes).append(inc)
            elif base == "_summary":
                if raw not in SUMMARY_MODES:
                    raise _bad(name, f"must be one of {', '.join(sorted(SUMMARY_MODES))}")
                summary = raw
            elif base == "_elements":
                elements = tuple(e.strip() for e in raw.split(",") if e.strip())
            elif base == "_total":
                if raw not in ("none", "estimate", "accurate"):
                    raise _bad(name, "must be none, estimate or accurate")
                total = raw  # type: ignore[assignment]
            else:
                cursor = decode_cursor(raw)
                continue
            understood.append((name, raw))
            continue
        try:
            conditions.append(parse_condition(rtype, name, raw, ctx))
        except _Unknown as exc:
            if strict:
                raise Invalid(
                    f"Unknown search parameter {name!r}: {exc}", code="not-supported"
                ) from exc
            ignored.append(name)
            continue
        understood.append((name, raw))
    if count == 0:
        summary = "count"
    if summary == "count":
        total = "accurate"
    query = StoreQuery(rtype, tuple(conditions), sort, max(count, 0), cursor)
    return SearchRequest(
        query=query,
        total=total,
        includes=tuple(includes),
        revincludes=tuple(revincludes),
        summary=summary,
        elements=elements,
        self_params=tuple(understood),
        ignored=tuple(ignored),
    )
