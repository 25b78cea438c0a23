"""The JSON shape of each R4B model class: its fields' kinds, FHIRPath steps and bindings.

`_shape(model)` reads a `fhir.resources.R4B` model class once (cached in `_SHAPES`) into a
`_Shape`: for each JSON property name (`birthDate`, `_birthDate`, `valueQuantity`) a `_Field`
saying what it must hold (`_BOOL`, `_INT`, `_DEC`, `_STR`, `_COMPLEX`, `_RESOURCE`, or
`_FORBIDDEN` for `fhir_comments`), whether it is an array, its FHIRPath step
(`value.ofType(Quantity)`), its FHIR type, and the codes of its required binding
(`resources.code_bindings`). Both the JSON walk (`resources.validation_json`) and the mapping of
pydantic errors to FHIRPath (`resources.validation`) use these shapes.

Spec: R4 `json.html` (`_name` companions, `value[x]` choices), `datatypes.html`.
"""

from __future__ import annotations

import decimal
import types
import typing
from dataclasses import dataclass, replace
from typing import Any

from fhir_core.constraints import FHIR_PRIMITIVES_MAPS
from fhir_core.types import FhirBase

from resources.code_bindings import CodeBinding, required_binding
from resources.types import RESOURCE_TYPES

_BOOL, _INT, _DEC, _STR, _COMPLEX, _RESOURCE, _FORBIDDEN = range(7)

# fmt: off
_PRIMITIVE_NAMES = frozenset({
    "boolean", "integer", "string", "decimal", "uri", "url", "canonical", "base64Binary",
    "instant", "date", "dateTime", "time", "code", "oid", "id", "markdown", "unsignedInt",
    "positiveInt", "uuid", "xhtml",
})
# fmt: on


@dataclass(frozen=True, slots=True)
class _Field:
    """What the JSON property of one model field must hold."""

    kind: int
    is_list: bool
    segment: str  # FHIRPath step: `name`, `value.ofType(Quantity)`; `_x` maps to x's step
    fhir_type: str  # `date`, `HumanName`, `Resource`
    model: Any = None  # the pydantic model class of a complex field
    primitive: bool = False  # a primitive or its `_x` sibling: array nulls may be placeholders
    choice: str | None = None  # the `value[x]` prefix of a choice element
    binding: CodeBinding | None = None  # the codes of a required binding (a `code` element)


@dataclass(frozen=True, slots=True)
class _Shape:
    """The JSON properties of one model class, by JSON name."""

    type_name: str
    fields: dict[str, _Field]
    python_names: dict[str, str]
    required_choices: tuple[tuple[str, tuple[str, ...]], ...]
    is_resource: bool


_SHAPES: dict[Any, _Shape] = {}


def _shape(model: Any) -> _Shape:
    shape = _SHAPES.get(model)
    if shape is None:
        shape = _SHAPES[model] = _build_shape(model)
    return shape


def _build_shape(model: Any) -> _Shape:
    fields: dict[str, _Field] = {}
    python_names: dict[str, str] = {}
    choice_members: dict[str, list[str]] = {}
    required: set[str] = set()
    extension_fields = []
    for name, info in model.model_fields.items():
        alias: str = info.alias or name
        python_names[name] = alias
        if name == "fhir_comments":
            fields[alias] = _Field(_FORBIDDEN, False, alias, "")
            continue
        if alias.startswith("_"):
            extension_fields.append((alias, info))
            continue
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        choice = extra.get("one_of_many")
        segment = alias
        if isinstance(choice, str):
            choice_members.setdefault(choice, []).append(alias)
            if extra.get("one_of_many_required") is True:
                required.add(choice)
            suffix = alias[len(choice) :]
            lowered = suffix[:1].lower() + suffix[1:]
            segment = f"{choice}.ofType({lowered if lowered in _PRIMITIVE_NAMES else suffix})"
        else:
            choice = None
        binding = required_binding(model.__name__, alias, extra)
        fields[alias] = replace(_field(info.annotation, segment, choice), binding=binding)
    for alias, info in extension_fields:
        main = fields.get(alias[1:])
        segment = main.segment if main is not None else alias[1:]
        spec = _field(info.annotation, segment, None)
        fields[alias] = _Field(spec.kind, spec.is_list, segment, spec.fhir_type, spec.model, True)
    return _Shape(
        type_name=model.__resource_type__,
        fields=fields,
        python_names=python_names,
        required_choices=tuple((p, tuple(choice_members[p])) for p in sorted(required)),
        is_resource=model.__resource_type__ in RESOURCE_TYPES,
    )


def _field(annotation: Any, segment: str, choice: str | None) -> _Field:
    """Read a field annotation such as `Optional[List[Annotated[str, Id()]]]`."""
    ann = _drop_none(annotation)
    is_list = typing.get_origin(ann) is list
    if is_list:
        ann = _drop_none(typing.get_args(ann)[0])
    metadata: tuple[Any, ...] = ()
    if typing.get_origin(ann) is typing.Annotated:
        ann, *rest = typing.get_args(ann)
        metadata = tuple(rest)
    if isinstance(ann, type) and issubclass(ann, FhirBase):
        model = ann.get_model_klass()
        type_name = model.__resource_type__
        kind = _RESOURCE if type_name == "Resource" else _COMPLEX
        return _Field(kind, is_list, segment, type_name, model, False, choice)
    names = [FHIR_PRIMITIVES_MAPS[type(m)] for m in metadata if type(m) in FHIR_PRIMITIVES_MAPS]
    fhir_type = names[0] if names else "string"
    if ann is bool:
        kind, fhir_type = _BOOL, "boolean"
    elif ann is int:
        kind = _INT
    elif ann is decimal.Decimal:
        kind, fhir_type = _DEC, "decimal"
    else:
        kind = _STR
        fhir_type = "uuid" if getattr(ann, "__name__", "") == "UUID" else fhir_type
    return _Field(kind, is_list, segment, fhir_type, None, True, choice)


def _drop_none(annotation: Any) -> Any:
    """`Optional[X]` -> `X`; other unions (only `fhir_comments`) -> `str`."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else str
    return annotation
