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

Pass 1 lives in `resources.validation_json`, over the per-model shapes of
`resources.validation_shapes`; this module runs the passes and maps pydantic errors to issues.
"""

from __future__ import annotations

from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from resources.errors import Invalid, Issue, Unprocessable
from resources.invariants import check_invariants
from resources.types import RESOURCE_TYPES
from resources.validation_json import _show, _unknown_type, _Walk, _walk_object
from resources.validation_shapes import _COMPLEX, _RESOURCE, _Field, _Shape, _shape

__all__ = ["validate_resource"]

_CONTAINER_ERRORS = frozenset(
    {"model_type", "model_attributes_type", "dict_type", "list_type", "model_validation_format"}
)
_MISSING_ERRORS = frozenset({"missing", "model_field_validation.missing"})


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
