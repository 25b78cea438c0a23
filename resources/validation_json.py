"""Pass 1 of validation: the FHIR JSON rules pydantic does not enforce, walked over the JSON.

`_walk_object(node, _shape(model), path, walk)` visits one JSON object and its children, guided by
the model shapes of `resources.validation_shapes`, and records into `walk` (a `_Walk`):

- `issues`: no `null` (except as a placeholder in a primitive array paired with its `_name`
  array), no empty string, array or object, JSON booleans and numbers for `boolean`/`integer`/
  `decimal`, objects for complex types, one `value[x]` choice and the required ones, known
  `resourceType` for nested resources, valid resource ids, strings under 1 MB, no
  `fhir_comments`, codes of required bindings. Expressions are FHIRPath locations
  (`Patient.name[0].given[1]`).
- `deferred`: the `(type, node, path)` of every node that has invariants (`resources.invariants`).
- `blocked`: the model would crash on this JSON (unknown nested `resourceType`, nesting deeper
  than `_MAX_DEPTH` objects), so pass 2 must not run.

Nothing is raised here; `resources.validation.validate_resource` turns the issues into errors.

Spec: R4 `json.html`, `datatypes.html` (string size), `resource.html#id`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fhir.resources.R4B import get_fhir_model_class

from resources.errors import Issue, IssueType
from resources.invariants import INVARIANTS
from resources.types import FHIR_ID_RE, R4_ONLY_TYPES, RESOURCE_TYPES
from resources.validation_shapes import (
    _BOOL,
    _COMPLEX,
    _FORBIDDEN,
    _INT,
    _RESOURCE,
    _STR,
    _Field,
    _Shape,
    _shape,
)

_MAX_STRING_BYTES = 1024 * 1024  # R4 datatypes.html#string: strings SHALL NOT exceed 1 MB
_UNBOUNDED_STRINGS = frozenset({"base64Binary", "xhtml"})
_MAX_DEPTH = 64  # nested objects: far beyond real resources; the models recurse past ~120


@dataclass(slots=True)
class _Walk:
    """State of one validation: issues found, invariants to run, whether pydantic may run."""

    issues: list[Issue] = field(default_factory=list)
    deferred: list[tuple[str, dict[str, Any], str]] = field(default_factory=list)
    blocked: bool = False  # pass 2 would crash (unknown nested resourceType, deep nesting)
    depth: int = 0  # objects entered on the way to the current node

    def add(self, code: IssueType, path: str, diagnostics: str) -> None:
        self.issues.append(Issue(code=code, diagnostics=diagnostics, expression=(path,)))


def _unknown_type(value: object) -> str:
    if isinstance(value, str) and value in R4_ONLY_TYPES:
        return f"Resource type {value!r} is R4-only and not supported (no R4B model)"
    return f"Unknown resource type {_show(value)}"


def _show(value: object, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
