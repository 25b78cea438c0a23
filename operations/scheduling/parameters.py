"""Operation parameters for `$find`, `$hold` and `$book`: read from the query string (GET), a
`Parameters` body (POST; R4 `operations.html#request`), or for `$hold`/`$book` a bare
Appointment body (the Argonaut Scheduling convention), which stands for `appointment-resource`;
plus the references, times and targets they name, and `operation_definition` for the
OperationDefinitions beside each operation (IHE ITI-115/116/117 OperationDefinitions).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fhir_server.messages import FhirRequest
from resources.errors import Invalid
from resources.fhir_dates import parse_instant
from resources.references import parse_reference
from resources.types import FHIR_ID_RE

_PRIMITIVES = (
    "valueString", "valueDateTime", "valueInstant", "valueDate", "valueCode", "valueUri",
    "valueUrl", "valueCanonical", "valueId", "valueInteger", "valuePositiveInt",
    "valueUnsignedInt", "valueBoolean", "valueDecimal",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Param:
    """One operation parameter: `text` for primitives (query values included), `reference`
    for valueReference (a query value `Type/id` becomes `{"reference": ...}` on demand),
    `resource` for a resource part."""

    name: str
    text: str | None = None
    reference: dict[str, Any] | None = None
    resource: dict[str, Any] | None = None


class OperationParams:
    """The parameters of one invocation, in order (R4 `operations.html#request`)."""

    def __init__(self, params: Sequence[Param]) -> None:
        self.params = list(params)

    @classmethod
    def of(cls, request: FhirRequest, bare_resource: str | None = None) -> OperationParams:
        """Read the query string and the body: a `Parameters` resource, or (when
        `bare_resource` names a parameter) a bare resource standing for that parameter.

        Raises:
            Invalid: (400) a body that is neither, or a parameter without name or value.
        """
        params = [Param(name, text=value) for name, value in request.query]
        body = request.body
        if body is None:
            return cls(params)
        kind = body.get("resourceType") if isinstance(body, dict) else None
        if kind == "Parameters":
            for part in body.get("parameter") or []:
                params.append(_param(part))
        elif bare_resource is not None and isinstance(kind, str):
            params.append(Param(bare_resource, resource=body))
        else:
            raise Invalid("The body must be a Parameters resource", code="structure")
        return cls(params)

    def all(self, name: str) -> list[Param]:
        """Every value of `name`, in order."""
        return [p for p in self.params if p.name == name]

    def texts(self, name: str) -> list[str]:
        """The primitive values of `name`. Raises Invalid (400) for a non-primitive one."""
        out = []
        for param in self.all(name):
            if param.text is None:
                raise Invalid(f"Parameter {name!r} needs a primitive value", expression=[name])
            out.append(param.text)
        return out

    def text(self, name: str) -> str | None:
        """The single primitive value of `name`, or None. Raises Invalid (400) if repeated."""
        values = self.texts(name)
        if len(values) > 1:
            raise Invalid(f"Parameter {name!r} may appear only once", expression=[name])
        return values[0] if values else None

    def references(self, name: str) -> list[dict[str, Any]]:
        """The Reference values of `name` (query text `Type/id` becomes `{"reference": text}`)."""
        return [
            p.reference if p.reference is not None else {"reference": p.text or ""}
            for p in self.all(name)
            if p.resource is None
        ]

    def resources(self, name: str, resource_type: str) -> list[dict[str, Any]]:
        """The resource values of `name`. Raises Invalid (400) for another type or a text."""
        out = []
        for param in self.all(name):
            resource = param.resource
            if resource is None or resource.get("resourceType") != resource_type:
                raise Invalid(f"Parameter {name!r} must be a {resource_type}", expression=[name])
            out.append(resource)
        return out


def _param(part: Any) -> Param:
    if not isinstance(part, dict) or not isinstance(part.get("name"), str):
        raise Invalid("Each Parameters.parameter needs a name", code="structure")
    name = part["name"]
    if isinstance(part.get("resource"), dict):
        return Param(name, resource=part["resource"])
    if isinstance(part.get("valueReference"), dict):
        return Param(name, reference=part["valueReference"])
    coding = part.get("valueCoding")
    if isinstance(coding, dict):
        return Param(name, text=f"{coding.get('system', '')}|{coding.get('code', '')}")
    for key in _PRIMITIVES:
        if key in part:
            value = part[key]
            text = str(value).lower() if isinstance(value, bool) else str(value)
            return Param(name, text=text)
    raise Invalid(f"Parameter {name!r} has no value this operation reads", expression=[name])


def split_reference(text: str, bases: tuple[str, ...] = ()) -> tuple[str, str] | None:
    """`(type, id)` of a literal reference to this server (`Type/id`, `[base]/Type/id`,
    optionally versioned; `resources.references`), else None."""
    return parse_reference(text, bases).pair


def literal_id(
    reference: dict[str, Any], resource_type: str, bases: tuple[str, ...] = ()
) -> str | None:
    """The id of a literal reference to a `resource_type` on this server, or None when the
    Reference has no `reference` (e.g. only an identifier).

    Raises:
        Invalid: (400) a reference to another type, another server, or malformed.
    """
    text = reference.get("reference")
    if not isinstance(text, str) or not text:
        return None
    found = split_reference(text, bases)
    if found is None:
        raise Invalid(f"{text!r} is not a reference to a {resource_type} on this server")
    if found[0] != resource_type:
        raise Invalid(f"{text!r} is not a {resource_type} reference", code="value")
    return found[1]


def target_of(
    params: OperationParams, bases: tuple[str, ...]
) -> tuple[str | None, dict[str, Any] | None]:
    """The Appointment a `$hold`/`$book` acts on: `(id, None)` from `appointment-reference`
    (`Appointment/id`, `[base]/Appointment/id` or a bare id), or `(None, resource)` from
    `appointment-resource` (IHE ITI-116/117 OperationDefinitions).

    Raises:
        Invalid: (400) neither or both given, repeated, or not an Appointment.
    """
    references = params.references("appointment-reference")
    resources = params.resources("appointment-resource", "Appointment")
    if len(references) + len(resources) != 1:
        raise Invalid(
            "Give exactly one of 'appointment-reference' and 'appointment-resource'",
            code="required",
            expression=["appointment-reference"],
        )
    if resources:
        return None, resources[0]
    return reference_id(references[0], "Appointment", bases), None


def reference_id(reference: dict[str, Any], resource_type: str, bases: tuple[str, ...]) -> str:
    """The id a reference parameter names (`Type/id`, `[base]/Type/id` or a bare id).

    Raises:
        Invalid: (400) no literal reference, another type or server, or malformed.
    """
    text = reference.get("reference")
    if isinstance(text, str) and FHIR_ID_RE.fullmatch(text):
        return text
    found = literal_id(reference, resource_type, bases)
    if found is None:
        raise Invalid(f"A literal {resource_type} reference is needed", code="required")
    return found


def parse_time(text: str | None, name: str) -> int:
    """A required `start`/`end` parameter as µs UTC.

    Raises:
        Invalid: (400) missing, or not a dateTime with seconds and an offset.
    """
    if text is None:
        raise Invalid(f"Parameter {name!r} is required", code="required", expression=[name])
    try:
        return parse_instant(text)
    except ValueError as exc:
        raise Invalid(
            f"Parameter {name!r} must be a dateTime with seconds and an offset: {exc}",
            expression=[name],
        ) from exc


def definition_parameters(rows: Sequence[tuple[str, str, str, str]]) -> list[dict[str, Any]]:
    """R4 `OperationDefinition.parameter`s from rows `(name, type, "min..max", documentation)`.

    A type `token` is a string with `searchType` token (how IHE writes its code inputs),
    `Reference(A|B)` a Reference with target profiles, and `out:Type` an output parameter.
    """
    out = []
    for name, written, cardinality, documentation in rows:
        minimum, maximum = cardinality.split("..")
        use = "out" if written.startswith("out:") else "in"
        kind = written.removeprefix("out:")
        param: dict[str, Any] = {"name": name, "use": use, "min": int(minimum), "max": maximum}
        param["documentation"] = documentation
        if kind == "token":
            param.update(type="string", searchType="token")
        elif kind.startswith("Reference("):
            targets = kind[len("Reference(") : -1].split("|")
            param["type"] = "Reference"
            param["targetProfile"] = [
                f"http://hl7.org/fhir/StructureDefinition/{t}" for t in targets
            ]
        else:
            param["type"] = kind
        out.append(param)
    return out


def operation_definition(
    id: str, code: str, title: str, description: str, rows: Sequence[tuple[str, str, str, str]]
) -> dict[str, Any]:
    """Our R4 OperationDefinition of an Appointment type-level operation (IHE parameter names
    plus ours); its canonical `url` is given when registered (`conformance`)."""
    return {
        "resourceType": "OperationDefinition",
        "id": id,
        "version": "0.1.0",
        "name": "".join(part.capitalize() for part in id.split("-")),
        "title": title,
        "status": "active",
        "kind": "operation",
        "date": "2026-11-22",
        "publisher": "FHIR scheduling server",
        "description": description,
        "affectsState": code != "find",
        "code": code,
        "resource": ["Appointment"],
        "system": False,
        "type": True,
        "instance": False,
        "parameter": definition_parameters(rows),
    }
