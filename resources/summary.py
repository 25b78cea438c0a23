"""Subsetting resources for `_summary` and `_elements` (R4 `search.html#summary`, `#elements`).

Both functions return a new resource dict (sharing untouched nested values with the input, never
mutating it) and tag it `SUBSETTED` (`meta.tag`, system
`http://terminology.hl7.org/CodeSystem/v3-ObservationValue`) when anything was removed, so a
client cannot mistake the subset for the whole resource and write it back.

Which elements are summary (`isSummary`, Σ) and which are mandatory (`min > 0`) comes from the
fhir.resources R4B models (`summary_elements_sequence()`, `json_schema_extra` flags
`element_required` / `one_of_many_required`, pydantic `is_required()`), computed once per type.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from fhir_core.types import FhirBase

from resources.errors import Invalid
from resources.types import resource_model

SUBSETTED_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"
SUBSETTED_CODE = "SUBSETTED"
SUMMARY_MODES = ("true", "text", "data", "count", "false")
_ALWAYS = frozenset({"resourceType", "id", "meta"})


@dataclass(frozen=True, slots=True)
class _Shape:
    """Per-type element sets, JSON names with their `_name` companions.

    Attributes:
        summary: kept by `_summary=true`: Σ elements plus mandatory ones (plus
            `resourceType`/`id`/`meta` for resources).
        mandatory: elements with a minimum cardinality above zero (all choices of a required
            `[x]`).
        backbones: Σ or mandatory elements whose type is a backbone element of the resource
            itself (e.g. `Appointment.participant`), filtered recursively by `_summary=true`;
            data types are kept whole.
        choices: `[x]` base names mapped to their typed JSON names (`deceased` ->
            `deceasedBoolean`, `deceasedDateTime`), for `_elements`.
    """

    summary: frozenset[str]
    mandatory: frozenset[str]
    backbones: dict[str, Any]
    choices: dict[str, frozenset[str]]


def _with_companions(names: set[str]) -> frozenset[str]:
    return frozenset(names | {"_" + n for n in names})


def _element_model(annotation: Any) -> Any:
    """The fhir.resources model class of a complex field annotation, or None for primitives."""
    stack = [annotation]
    while stack:
        current = stack.pop()
        if isinstance(current, type) and issubclass(current, FhirBase):
            return current.get_model_klass()
        stack.extend(getattr(current, "__args__", ()))
    return None


@cache
def _shape(model: Any) -> _Shape:
    """Compute the element sets of one model class (a resource or a backbone element)."""
    fields = {f.alias or n: f for n, f in model.model_fields.items()}
    mandatory: set[str] = set()
    choices: dict[str, set[str]] = {}
    for name in model.elements_sequence():
        field = fields[name]
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        if (
            field.is_required()
            or extra.get("element_required")
            or extra.get("one_of_many_required")
        ):
            mandatory.add(name)
        if isinstance(extra.get("one_of_many"), str):
            choices.setdefault(extra["one_of_many"], set()).add(name)
    summary = set(model.summary_elements_sequence()) | mandatory
    if model.has_resource_base():
        summary |= _ALWAYS
    backbones = {}
    for name in summary & set(fields):
        element_model = _element_model(fields[name].annotation)
        if element_model is not None and element_model.__module__ == model.__module__:
            backbones[name] = element_model
    return _Shape(
        summary=_with_companions(summary),
        mandatory=_with_companions(mandatory),
        backbones=backbones,
        choices={base: frozenset(names) for base, names in choices.items()},
    )


@cache
def _resource_shape(resource_type: str) -> _Shape | None:
    """The shape of a concrete R4B resource type, or None if `resource_type` is not one."""
    model = resource_model(resource_type)
    return None if model is None else _shape(model)


def _shape_of(resource: dict[str, Any]) -> _Shape:
    rtype = resource.get("resourceType")
    shape = _resource_shape(rtype) if isinstance(rtype, str) else None
    if shape is None:
        raise Invalid(f"{rtype!r} is not a known FHIR resource type", code="not-supported")
    return shape


def apply_summary(resource: dict[str, Any], mode: str) -> dict[str, Any]:
    """Subset a resource for the `_summary` parameter (R4 `search.html#summary`).

    Args:
        resource: a resource in FHIR JSON form (any R4B type); not mutated.
        mode: `true` (Σ elements of the base definition, recursively inside the resource's own
            backbone elements, data types whole, plus `id`, `meta` and mandatory elements),
            `text` (`text`, `id`, `meta` and top-level mandatory elements), `data` (all but
            `text`) or `false` (everything).

    Returns:
        A new resource dict; `meta.tag` gains `SUBSETTED` when anything was removed.

    Raises:
        Invalid: (`invalid`) an unknown mode, or `count`, which applies to searches only (the
            search layer answers it without resources); (`not-supported`) an unknown
            `resourceType`.
    """
    if mode == "false":
        return dict(resource)
    if mode not in SUMMARY_MODES or mode == "count":
        raise Invalid(
            f"_summary={mode!r} cannot be applied to a resource; expected one of "
            "'true', 'text', 'data' or 'false' ('count' applies to searches only)"
        )
    shape = _shape_of(resource)
    if mode == "true":
        out, removed = _summarise(resource, shape)
    else:
        if mode == "text":
            keep = shape.mandatory | _with_companions({*_ALWAYS, "text"})
            out = {k: v for k, v in resource.items() if k in keep}
        else:
            out = {k: v for k, v in resource.items() if k not in ("text", "_text")}
        removed = len(out) != len(resource)
    return _mark_subsetted(out) if removed else out


def apply_elements(resource: dict[str, Any], elements: Sequence[str]) -> dict[str, Any]:
    """Subset a resource for the `_elements` parameter (R4 `search.html#elements`).

    Args:
        resource: a resource in FHIR JSON form (any R4B type); not mutated.
        elements: top-level element names as the client sent them, comma-separated or not
            (`["identifier", "name,gender"]`); a `[x]` base name selects every typed form
            (`deceased`); a `Type.` prefix is accepted and a deeper path keeps its whole
            top-level element (`Patient.name.family` keeps `name`). Unknown names are ignored;
            no names at all leave the resource whole.

    Returns:
        A new resource dict holding the named elements plus `resourceType`, `id`, `meta` and the
        mandatory elements; `meta.tag` gains `SUBSETTED` when anything was removed.

    Raises:
        Invalid: (`not-supported`) an unknown `resourceType`.
    """
    shape = _shape_of(resource)
    prefix = f"{resource['resourceType']}."
    wanted: set[str] = set()
    for item in elements:
        for raw in item.split(","):
            name = raw.strip().removeprefix(prefix).split(".", 1)[0]
            if name:
                wanted |= shape.choices.get(name, {name})
    if not wanted:
        return dict(resource)
    keep = _with_companions(wanted | _ALWAYS) | shape.mandatory
    out = {k: v for k, v in resource.items() if k in keep}
    return _mark_subsetted(out) if len(out) != len(resource) else out


def _summarise(obj: dict[str, Any], shape: _Shape) -> tuple[dict[str, Any], bool]:
    """Keep the summary elements of `obj`; return (subset, whether anything was removed)."""
    out: dict[str, Any] = {}
    removed = False
    for key, value in obj.items():
        if key not in shape.summary:
            removed = True
            continue
        model = shape.backbones.get(key)
        if model is None:
            out[key] = value
            continue
        items = value if isinstance(value, list) else [value]
        kept = []
        for item in items:
            sub, sub_removed = (
                _summarise(item, _shape(model)) if isinstance(item, dict) else (item, False)
            )
            removed = removed or sub_removed or not sub
            if sub:
                kept.append(sub)
        if kept:
            out[key] = kept if isinstance(value, list) else kept[0]
    return out, removed


def _mark_subsetted(resource: dict[str, Any]) -> dict[str, Any]:
    """Return `resource` with the SUBSETTED tag in a new `meta`, placed after `id`."""
    meta = dict(resource.get("meta") or {})
    tags = list(meta.get("tag") or [])
    if not any(
        isinstance(t, dict)
        and t.get("system") == SUBSETTED_SYSTEM
        and t.get("code") == SUBSETTED_CODE
        for t in tags
    ):
        tags.append({"system": SUBSETTED_SYSTEM, "code": SUBSETTED_CODE})
    meta["tag"] = tags
    out: dict[str, Any] = {}
    for key, value in resource.items():
        if "meta" not in out and key not in ("resourceType", "id", "_id"):
            out["meta"] = meta
        if key != "meta":
            out[key] = value
    out.setdefault("meta", meta)
    return out
