"""The Bulk Data kick-off request: its parameters parsed and checked against what the caller
may read (Bulk Data Access 2.0 export.md "Bulk Data Kick-off Request", "Query Parameters",
"`_typeFilter` Experimental Query Parameter").

GET only. Supported: `_outputFormat` (`application/fhir+ndjson`, `application/ndjson`,
`ndjson`), `_since` (an instant), `_type` and `_typeFilter` (repeats read as one
comma-separated list). `_elements`, `includeAssociatedData` and `patient` are refused with 400
`not-supported` (the IG's advice for unsupported parameters), as is any other parameter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qsl, urlencode

from fhir_server.messages import OperationCall
from fhir_server.repository import Repository
from fhir_server.repository.reads import chained_types
from fhir_server.search.parse import RESULT_PARAMS, parse_search
from fhir_server.search.query import Condition
from resources.errors import Invalid, NotAcceptable
from resources.fhir_dates import parse_instant
from resources.search_parameters import in_patient_compartment
from resources.types import RESOURCE_TYPES, is_resource_type

__all__ = ["OUTPUT_FORMATS", "ExportRequest", "Level", "TypeFilter", "parse_kick_off"]

Level = Literal["system", "patient", "group"]
OUTPUT_FORMATS = frozenset({"application/fhir+ndjson", "application/ndjson", "ndjson"})
"""`_outputFormat` values accepted (export.md: all three name ndjson)."""
UNSUPPORTED = frozenset({"_elements", "includeAssociatedData", "patient"})
CONTROL = frozenset({"_format", "_pretty"})
_NEXT_QUERY = re.compile(r",(?=[A-Z][A-Za-z]*\?)")
"""Where one `_typeFilter` query ends and the next (`Type?...`) starts: the list separator
is a comma before a type name and `?`, so commas inside a query (`status=a,b`) stay."""


@dataclass(frozen=True, slots=True)
class TypeFilter:
    """One `_typeFilter` query: `resource_type` and its search `conditions` (ANDed); the
    queries of one type are ORed."""

    resource_type: str
    conditions: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class ExportRequest:
    """A checked kick-off.

    Attributes:
        level: `system` (`[base]/$export`), `patient` (`Patient/$export`) or `group`.
        group_id: the Group's id for a Group-level export.
        types: the types exported, sorted: those asked for (`_type`) or every type of the
            level, kept to those the caller may search.
        refused: types asked for by `_type` that the caller may not search (reported in
            the manifest's `error` file).
        since: `_since` as µs UTC, or None.
        filters: the `_typeFilter` queries, in the order given.
        request: the kick-off URL as the client sent it (the manifest's `request`).
    """

    level: Level
    group_id: str | None
    types: tuple[str, ...]
    refused: tuple[str, ...]
    since: int | None
    filters: tuple[TypeFilter, ...]
    request: str

    def filters_of(self, resource_type: str) -> tuple[TypeFilter, ...]:
        """The `_typeFilter` queries of `resource_type` (none: every resource of it)."""
        return tuple(f for f in self.filters if f.resource_type == resource_type)


def parse_kick_off(call: OperationCall) -> ExportRequest:
    """Check one `$export` kick-off and read its parameters.

    Raises:
        Invalid: (400) no `Prefer: respond-async`; an unknown `_outputFormat`; a malformed
            `_since`; an unknown type, or one outside the Patient compartment at Patient or
            Group level; a malformed `_typeFilter` or one of a type not exported, or using
            result parameters (`_include`, `_sort`, ...); `not-supported` for
            `_elements`, `includeAssociatedData`, `patient` and unknown parameters.
        NotAcceptable: (406) a response format other than FHIR JSON.
        Forbidden: (403) the caller may search none of the types asked for (IG: the kick-off
            fails when nothing requested is permitted).
    """
    request = call.request
    if not request.respond_async:
        raise Invalid(
            "$export runs asynchronously: send the header 'Prefer: respond-async' "
            "(Bulk Data Access 2.0, kick-off request headers)",
            code="required",
        )
    if request.response_format != "json":
        raise NotAcceptable("$export answers in application/fhir+json only")
    values: dict[str, list[str]] = {}
    for name, value in request.query:
        if name in UNSUPPORTED:
            raise Invalid(f"$export does not support {name}", code="not-supported")
        if name not in CONTROL:
            values.setdefault(name, []).append(value)
    unknown = sorted(set(values) - {"_outputFormat", "_since", "_type", "_typeFilter"})
    if unknown:
        raise Invalid(f"Unknown $export parameter {unknown[0]!r}", code="not-supported")
    _check_format(values.get("_outputFormat", []))
    level: Level = (
        "system"
        if call.resource_type is None
        else "patient"
        if call.resource_type == "Patient"
        else "group"
    )
    repository = call.repository
    asked = _listed(values.get("_type", []))
    types, refused = _types(repository, level, asked)
    filters = _filters(repository, _listed(values.get("_typeFilter", []), _NEXT_QUERY), types)
    query = f"?{urlencode(request.query)}" if request.query else ""
    return ExportRequest(
        level=level,
        group_id=call.id,
        types=types,
        refused=refused,
        since=_since(values.get("_since", [])),
        filters=filters,
        request=f"{request.base_url}/{request.path.strip('/')}{query}",
    )


def _listed(texts: list[str], separator: re.Pattern[str] | None = None) -> list[str]:
    """The items of repeated comma-separated parameters, in order, without blanks."""
    items = (i for t in texts for i in (separator.split(t) if separator else t.split(",")))
    return [i.strip() for i in items if i.strip()]


def _check_format(texts: list[str]) -> None:
    if len(texts) > 1:
        raise Invalid("_outputFormat may be given once", expression=["_outputFormat"])
    if texts and texts[0].strip() not in OUTPUT_FORMATS:
        raise Invalid(
            f"_outputFormat {texts[0]!r} is not supported; use application/fhir+ndjson "
            "(or application/ndjson, ndjson)",
            code="not-supported",
            expression=["_outputFormat"],
        )


def _since(texts: list[str]) -> int | None:
    if not texts:
        return None
    if len(texts) > 1:
        raise Invalid("_since may be given once", expression=["_since"])
    try:
        return parse_instant(texts[0].strip())
    except ValueError as exc:
        raise Invalid(f"_since: {exc}", expression=["_since"]) from exc


def _types(
    repository: Repository, level: Level, asked: list[str]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The types exported and the types refused (asked for but not searchable)."""
    for rtype in asked:
        if not is_resource_type(rtype):
            raise Invalid(
                f"_type: {rtype!r} is not a resource type this server serves",
                code="not-supported",
                expression=["_type"],
            )
        if level != "system" and not in_patient_compartment(rtype):
            raise Invalid(
                f"_type: {rtype} is outside the Patient compartment, which a {level}-level "
                "export follows; use [base]/$export for it",
                code="not-supported",
                expression=["_type"],
            )
    candidates = sorted(set(asked)) or sorted(
        t for t in RESOURCE_TYPES if level == "system" or in_patient_compartment(t)
    )
    types = tuple(t for t in candidates if repository.policy.reach(t, "s") is not None)
    refused = tuple(t for t in sorted(set(asked)) if t not in types)
    if not types:
        repository.require(candidates[0], "s", "$export")  # raises the usual 403
    return types, refused


def _filters(
    repository: Repository, queries: list[str], types: tuple[str, ...]
) -> tuple[TypeFilter, ...]:
    out: list[TypeFilter] = []
    for text in queries:
        rtype, mark, query = text.partition("?")
        if not mark or not is_resource_type(rtype):
            raise Invalid(
                f"_typeFilter {text!r} is not a query of the form Type?param=value",
                expression=["_typeFilter"],
            )
        params = parse_qsl(query, keep_blank_values=True)
        result = [n for n, _ in params if n.split(":", 1)[0] in RESULT_PARAMS]
        if result:
            raise Invalid(
                f"_typeFilter {text!r} uses {result[0]}: result parameters are not allowed",
                expression=["_typeFilter"],
            )
        search = parse_search(rtype, params, repository.context, strict=True)
        for chained in chained_types(search.query.conditions):
            repository.require(chained, "s", "_typeFilter")
        if rtype not in types and repository.policy.reach(rtype, "s") is not None:
            raise Invalid(
                f"_typeFilter {text!r} filters {rtype}, which this export does not include",
                expression=["_typeFilter"],
            )
        out.append(TypeFilter(rtype, search.query.conditions))
    return tuple(out)
