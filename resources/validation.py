"""Validate one FHIR JSON resource: JSON rules, the R4B model, then invariants.

`validate_resource` runs three passes and reports every problem of the first failing pass in one
error:

1. A walk over the JSON, guided by the `fhir.resources.R4B` model fields, for the FHIR JSON rules
   pydantic does not enforce (R4 `json.html`): no `null` (except as a placeholder in a primitive
   array paired with its `_name` array), no empty string, array or object, JSON booleans and
   numbers for `boolean`/`integer`/`decimal`, objects for complex types, one `value[x]` choice,
   known `resourceType` for nested resources (`contained`, `Bundle.entry.resource`), valid ids,
   strings under 1 MB, no `fhir_comments`, codes of required bindings (`resources.code_bindings`).
2. The R4B pydantic model (`get_fhir_model_class(type).model_validate`): cardinality, unknown
   elements, primitive formats. Each pydantic error becomes one issue.
3. Invariants (`resources.invariants`), only on a structurally valid resource.

Passes 1-2 raise `Invalid` (400), pass 3 `Unprocessable` (422). Issue expressions are FHIRPath
locations (`Patient.name[0].given[1]`, `Observation.value.ofType(Quantity)`).
"""

from __future__ import annotations

import decimal
import types
import typing
from dataclasses import dataclass, field, replace
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from fhir_core.constraints import FHIR_PRIMITIVES_MAPS
from fhir_core.types import FhirBase
from pydantic import ValidationError

from resources.code_bindings import CodeBinding, required_binding
from resources.errors import Invalid, Issue, IssueType, Unprocessable
from resources.invariants import INVARIANTS, check_invariants
from resources.types import FHIR_ID_RE, R4_ONLY_TYPES, RESOURCE_TYPES

__all__ = ["validate_resource"]

_BOOL, _INT, _DEC, _STR, _COMPLEX, _RESOURCE, _FORBIDDEN = range(7)
_MAX_STRING_BYTES = 1024 * 1024  # R4 datatypes.html#string: strings SHALL NOT exceed 1 MB
_UNBOUNDED_STRINGS = frozenset({"base64Binary", "xhtml"})
_MAX_DEPTH = 64  # nested objects: far beyond real resources; the models recurse past ~120
# fmt: off
_PRIMITIVE_NAMES = frozenset({
    "boolean", "integer", "string", "decimal", "uri", "url", "canonical", "base64Binary",
    "instant", "date", "dateTime", "time", "code", "oid", "id", "markdown", "unsignedInt",
    "positiveInt", "uuid", "xhtml",
})
# fmt: on
_CONTAINER_ERRORS = frozenset(
    {"model_type", "model_attributes_type", "dict_type", "list_type", "model_validation_format"}
)
_MISSING_ERRORS = frozenset({"missing", "model_field_validation.missing"})


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


@dataclass(slots=True)
class _Walk:
    """State of one validation: issues found, invariants to run, whether pydantic may run."""

    issues: list[Issue] = field(default_factory=list)
    deferred: list[tuple[str, dict[str, Any], str]] = field(default_factory=list)
    blocked: bool = False  # pass 2 would crash (unknown nested resourceType, deep nesting)
    depth: int = 0  # objects entered on the way to the current node

    def add(self, code: IssueType, path: str, diagnostics: str) -> None:
        self.issues.append(Issue(code=code, diagnostics=diagnostics, expression=(path,)))


_SHAPES: dict[Any, _Shape] = {}


def validate_resource(resource: object, *, expected_type: str | None = None) -> None:
    """Check that `resource` is a valid FHIR R4 resource in JSON form.

    Args:
        resource: the parsed JSON body (a `dict` for a resource; anything else is refused).
        expected_type: the resource type the URL names (e.g. `Slot` for `PUT /Slot/1`), if any.

    Raises:
        Invalid: 400, every structural issue at once: `structure` (not an object, missing or
            unknown `resourceType`, unknown element, null, empty array/object), `invalid`
            (`resourceType` differs from `expected_type`, expression `resourceType`),
            `required` (missing element), `value` (bad id as `<Type>.id`, bad primitive),
            `code-invalid` (a code outside its required binding, e.g. `Slot.status`).
        Unprocessable: 422 `invariant`, when the structure is valid but an invariant of
            `resources.invariants` fails (e.g. Appointment app-2, Slot start < end).

    Spec: R4 `json.html`, `datatypes.html`, `resource.html#id`, `validation.html`.
    """
    if not isinstance(resource, dict):
        raise Invalid("A resource must be a JSON object", code="structure")
    resource_type = resource.get("resourceType")
    if resource_type is None:
        raise Invalid("The resource has no resourceType", code="structure")
    if not isinstance(resource_type, str) or resource_type not in RESOURCE_TYPES:
        raise Invalid(_unknown_type(resource_type), code="structure")
    if expected_type is not None and resource_type != expected_type:
        raise Invalid(
            f"Expected a {expected_type} resource, got resourceType {resource_type}",
            code="invalid",
            expression=("resourceType",),
        )
    walk = _Walk()
    model = get_fhir_model_class(resource_type)
    _walk_object(resource, _shape(model), resource_type, walk)
    if not walk.blocked:
        try:
            model.model_validate(resource)
        except ValidationError as exc:
            _merge(walk.issues, _model_issues(exc, resource, model))
        except RecursionError:
            walk.add("structure", resource_type, "Elements are nested too deeply")
        except (TypeError, AttributeError, KeyError):
            # fhir_core crashes instead of reporting on a few wrong JSON types (a number for a
            # `url`, a non-string nested resourceType); the walk reports those precisely.
            if not walk.issues:
                walk.add("structure", resource_type, "The resource does not match its R4B model")
    if walk.issues:
        raise Invalid(walk.issues[0].diagnostics, issues=walk.issues)
    issues: list[Issue] = []
    for type_name, node, path in walk.deferred:
        issues.extend(check_invariants(type_name, node, path))
    if issues:
        raise Unprocessable(issues[0].diagnostics, issues=issues)


def _unknown_type(value: object) -> str:
    if isinstance(value, str) and value in R4_ONLY_TYPES:
        return f"Resource type {value!r} is R4-only and not supported (no R4B model)"
    return f"Unknown resource type {_show(value)}"


def _show(value: object, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- pass 1: the JSON walk -------------------------------------------------------------------


def _walk_object(node: dict[str, Any], shape: _Shape, path: str, walk: _Walk) -> None:
    if not node:
        walk.add("structure", path, "Empty objects are not allowed in FHIR JSON")
        return
    if walk.depth > _MAX_DEPTH:
        walk.blocked = True
        walk.add("structure", path, f"Elements are nested more than {_MAX_DEPTH} levels deep")
        return
    if shape.type_name in INVARIANTS:
        walk.deferred.append((shape.type_name, node, path))
    fields = shape.fields
    choices: set[str] = set()
    for key, value in node.items():
        spec = fields.get(key)
        if spec is None:
            continue  # `resourceType`, or an unknown element: pydantic reports those
        child = f"{path}.{spec.segment}"
        if spec.kind == _FORBIDDEN:
            walk.add("structure", f"{path}.{key}", f"Unknown element {key!r} (not allowed in R4)")
        elif value is None:
            walk.add("structure", child, f"null is not allowed for {key!r}")
        elif spec.choice is not None and spec.choice in choices:
            walk.add("structure", f"{path}.{spec.choice}[x]", f"More than one {spec.choice}[x]")
        else:
            if spec.choice is not None:
                choices.add(spec.choice)
            if spec.is_list:
                _walk_array(node, key, spec, child, walk)
            else:
                _check_value(value, spec, child, walk)
    for prefix, members in shape.required_choices:
        if not any(m in node or f"_{m}" in node for m in members):
            walk.add("required", f"{path}.{prefix}[x]", f"Missing required element {prefix}[x]")
    if shape.is_resource:
        rid = node.get("id")
        if isinstance(rid, str) and rid and FHIR_ID_RE.fullmatch(rid) is None:
            walk.add("value", f"{path}.id", f"Invalid id {_show(rid)}: 1-64 of [A-Za-z0-9-.]")


def _walk_array(node: dict[str, Any], key: str, spec: _Field, path: str, walk: _Walk) -> None:
    value = node[key]
    if not isinstance(value, list):
        walk.add("structure", path, f"{key!r} must be a JSON array")
        return
    if not value:
        walk.add("structure", path, "Empty arrays are not allowed in FHIR JSON")
        return
    partner: list[Any] | None = None
    if spec.primitive:
        other = node.get(key[1:] if key.startswith("_") else f"_{key}")
        partner = other if isinstance(other, list) else None
    is_extension = key.startswith("_")
    if partner is not None and not is_extension and len(partner) != len(value):
        walk.add("structure", path, f"{key!r} and '_{key}' must have the same length")
    for i, item in enumerate(value):
        if item is None:
            # A placeholder needs a value at `i` in the other array; the primitive array
            # reports a position that is null in both.
            if partner is None or (not is_extension and (i >= len(partner) or partner[i] is None)):
                walk.add("structure", f"{path}[{i}]", f"null is not allowed in {key!r}")
            continue
        _check_value(item, spec, f"{path}[{i}]", walk)


def _check_value(value: object, spec: _Field, path: str, walk: _Walk) -> None:
    kind = spec.kind
    if kind == _STR:
        if not isinstance(value, str):
            _wrong_type(walk, path, f"a JSON string ({spec.fhir_type})", value)
        elif not value:
            walk.add("value", path, "Empty strings are not allowed in FHIR JSON")
        elif spec.binding is not None and value not in spec.binding.codes:
            walk.add("code-invalid", path, spec.binding.refusal(value))
        elif (
            len(value) > _MAX_STRING_BYTES // 4
            and spec.fhir_type not in _UNBOUNDED_STRINGS
            and len(value.encode()) > _MAX_STRING_BYTES
        ):
            walk.add("value", path, "Strings must not exceed 1 MB")
    elif kind == _COMPLEX:
        if isinstance(value, dict):
            walk.depth += 1
            _walk_object(value, _shape(spec.model), path, walk)
            walk.depth -= 1
        else:
            _wrong_type(walk, path, f"a JSON object ({spec.fhir_type})", value, "structure")
    elif kind == _RESOURCE:
        if not isinstance(value, dict):
            _wrong_type(walk, path, "a JSON object (a resource)", value, "structure")
            return
        rtype = value.get("resourceType")
        if isinstance(rtype, str) and rtype in RESOURCE_TYPES:
            walk.depth += 1
            _walk_object(value, _shape(get_fhir_model_class(rtype)), path, walk)
            walk.depth -= 1
        else:
            walk.blocked = True
            walk.add("structure", f"{path}.resourceType", _unknown_type(rtype))
    elif kind == _BOOL:
        if not isinstance(value, bool):
            _wrong_type(walk, path, "JSON true or false (boolean)", value)
    elif kind == _INT:
        if not isinstance(value, int) or isinstance(value, bool):
            _wrong_type(walk, path, f"a JSON integer ({spec.fhir_type})", value)
    elif not isinstance(value, (int, float)) or isinstance(value, bool):  # _DEC
        _wrong_type(walk, path, "a JSON number (decimal)", value)


def _wrong_type(
    walk: _Walk, path: str, expected: str, value: object, code: IssueType = "value"
) -> None:
    walk.add(code, path, f"Expected {expected}, got {_show(value)}")


# --- model shapes ----------------------------------------------------------------------------


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


# --- pass 2: pydantic errors as issues -------------------------------------------------------


def _model_issues(exc: ValidationError, resource: dict[str, Any], model: Any) -> list[Issue]:
    issues: list[Issue] = []
    for err in exc.errors(include_url=False):
        etype = err["type"]
        msg = err["msg"].removeprefix("Value error, ")
        if etype == "value_error" and ("but got multiple" in msg or "Expect any of" in msg):
            continue  # value[x] choices: reported by the walk with a precise expression
        if etype == "list_type" and isinstance(err.get("input"), list):
            continue  # fhir_core's "None is not allowed" in arrays: reported by the walk
        path, spec, last = _locate(err["loc"], resource, _shape(model), model.__resource_type__)
        if etype == "extra_forbidden":
            issues.append(Issue("structure", f"Unknown element {last!r}", expression=(path,)))
        elif etype in _MISSING_ERRORS:
            issues.append(
                Issue("required", f"Missing required element {last!r}", expression=(path,))
            )
        elif etype in _CONTAINER_ERRORS:
            issues.append(Issue("structure", f"Wrong JSON structure: {msg}", expression=(path,)))
        else:
            what = spec.fhir_type if spec is not None else "value"
            shown = _show(err.get("input"))
            issues.append(Issue("value", f"Invalid {what} {shown}: {msg}", expression=(path,)))
    return issues


def _locate(
    loc: tuple[int | str, ...], data: Any, shape: _Shape | None, path: str
) -> tuple[str, _Field | None, str]:
    """Turn a pydantic `loc` into a FHIRPath, skipping pydantic's own tags (e.g. `list[str]`)."""
    spec: _Field | None = None
    last = ""
    pending_resource = False
    for pos, comp in enumerate(loc):
        if isinstance(comp, int):
            path += f"[{comp}]"
            data = data[comp] if isinstance(data, list) and 0 <= comp < len(data) else None
            continue
        if pending_resource and isinstance(data, dict):
            rtype = data.get("resourceType")
            known = isinstance(rtype, str) and rtype in RESOURCE_TYPES
            shape = _shape(get_fhir_model_class(rtype)) if known else None
            pending_resource = False
        name = None if shape is None else shape.python_names.get(comp, comp)
        if shape is None or name not in shape.fields:
            if pos == len(loc) - 1 and shape is not None:
                path, last = f"{path}.{comp}", comp  # an unknown element's own name
            continue
        spec, last = shape.fields[name], name
        path = f"{path}.{spec.segment}"
        data = data.get(name) if isinstance(data, dict) else None
        shape = _shape(spec.model) if spec.kind == _COMPLEX else None
        pending_resource = spec.kind == _RESOURCE
    return path, spec, last


def _merge(issues: list[Issue], model_issues: list[Issue]) -> None:
    """Add model issues not already reported by the walk at, or under, the same location."""
    walked = [i.expression[0] for i in issues]
    for issue in model_issues:
        where = issue.expression[0]
        if not any(where == w or where.startswith((f"{w}.", f"{w}[")) for w in walked):
            issues.append(issue)
