"""`$validate` (R4 resource-operation-validate): validate a resource without storing it.

Invoked as `POST [base]/Type/$validate` (body: the resource, or a Parameters resource with a
`resource` parameter) or `POST [base]/Type/id/$validate`. Returns 200 with an OperationOutcome:
an `information` issue when valid, the validation issues when not (still 200, as the spec's
operation succeeded in validating).
"""

from __future__ import annotations

from typing import Any

from fhir_server.messages import FhirResult, Operation, OperationCall
from resources.errors import FhirError, Invalid, Issue, operation_outcome
from resources.validation import validate_resource


def _resource_of(body: Any) -> Any:
    if isinstance(body, dict) and body.get("resourceType") == "Parameters":
        for param in body.get("parameter") or []:
            if isinstance(param, dict) and param.get("name") == "resource":
                return param.get("resource")
        raise Invalid("The Parameters body has no 'resource' parameter", code="required")
    return body


async def validate(call: OperationCall) -> FhirResult:
    """Validate the posted resource against the R4 models and our invariants."""
    resource = _resource_of(call.request.body)
    if resource is None:
        raise Invalid("$validate needs a resource in the body", code="required")
    try:
        validate_resource(resource, expected_type=call.resource_type)
        if call.id is not None and isinstance(resource, dict) and resource.get("id") != call.id:
            raise Invalid(
                f"The resource id {resource.get('id')!r} does not match {call.id!r}",
                expression=[f"{call.resource_type}.id"],
            )
    except FhirError as exc:
        return FhirResult(200, exc.outcome())
    ok = Issue(code="informational", severity="information", diagnostics="Validation successful")
    return FhirResult(200, operation_outcome([ok]))


OPERATION = Operation(
    name="validate",
    handler=validate,
    type_level=True,
    instance=True,
    methods=frozenset({"POST"}),
    definition={"url": "http://hl7.org/fhir/OperationDefinition/Resource-validate"},
)
