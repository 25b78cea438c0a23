"""The FhirError hierarchy: one class per HTTP status, each carrying its FHIR issue type.

Every error the server reports to a client is one of these; the HTTP edge turns it into an
OperationOutcome (FHIR R4 `operationoutcome.html`) with `severity`, `code`, `diagnostics` and,
where known, `expression`. Issue type codes come from the R4 value set `issue-type`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

IssueSeverity = Literal["fatal", "error", "warning", "information"]
IssueType = Literal[
    "invalid",
    "structure",
    "required",
    "value",
    "invariant",
    "security",
    "login",
    "unknown",
    "expired",
    "forbidden",
    "suppressed",
    "processing",
    "not-supported",
    "duplicate",
    "multiple-matches",
    "not-found",
    "deleted",
    "too-long",
    "code-invalid",
    "extension",
    "too-costly",
    "business-rule",
    "conflict",
    "transient",
    "lock-error",
    "no-store",
    "exception",
    "timeout",
    "incomplete",
    "throttled",
    "informational",
]


@dataclass(frozen=True, slots=True)
class Issue:
    """One `OperationOutcome.issue`.

    Attributes:
        code: the FHIR `issue-type` code.
        diagnostics: human-readable detail, never internal text such as a traceback.
        severity: `fatal`, `error`, `warning` or `information`.
        expression: FHIRPath locations of the problem (e.g. `Patient.birthDate`).
        details_code: an optional code of ours for `issue.details.coding`
            (e.g. `slot-unavailable`).
    """

    code: IssueType
    diagnostics: str
    severity: IssueSeverity = "error"
    expression: tuple[str, ...] = ()
    details_code: str | None = None

    def to_fhir(self) -> dict[str, Any]:
        """Return the issue as a FHIR JSON object."""
        out: dict[str, Any] = {"severity": self.severity, "code": self.code}
        if self.details_code:
            out["details"] = {
                "coding": [
                    {
                        "system": "urn:fhir-scheduling-server:issue-detail",
                        "code": self.details_code,
                    }
                ]
            }
        out["diagnostics"] = self.diagnostics
        if self.expression:
            out["expression"] = list(self.expression)
        return out


def operation_outcome(issues: list[Issue]) -> dict[str, Any]:
    """Build an OperationOutcome resource (FHIR JSON) from issues."""
    return {"resourceType": "OperationOutcome", "issue": [i.to_fhir() for i in issues]}


class FhirError(Exception):
    """Base of every error reported to a client as an OperationOutcome.

    Attributes:
        status: the HTTP status code.
        issues: the OperationOutcome issues (at least one).
        headers: extra HTTP response headers (e.g. `WWW-Authenticate`).
    """

    status: int = 500
    default_code: IssueType = "exception"

    def __init__(
        self,
        diagnostics: str,
        *,
        code: IssueType | None = None,
        expression: tuple[str, ...] | list[str] = (),
        severity: IssueSeverity = "error",
        details_code: str | None = None,
        issues: list[Issue] | None = None,
        headers: dict[str, str] | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(diagnostics)
        if status is not None:
            self.status = status
        self.issues: list[Issue] = issues or [
            Issue(
                code=code or self.default_code,
                diagnostics=diagnostics,
                severity=severity,
                expression=tuple(expression),
                details_code=details_code,
            )
        ]
        self.headers: dict[str, str] = headers or {}

    @property
    def diagnostics(self) -> str:
        """The first issue's diagnostics."""
        return self.issues[0].diagnostics

    def outcome(self) -> dict[str, Any]:
        """The OperationOutcome body for this error."""
        return operation_outcome(self.issues)


class Invalid(FhirError):
    """400 `invalid`: the request is malformed (bad JSON, bad parameter, bad resource)."""

    status = 400
    default_code: IssueType = "invalid"


class Unprocessable(FhirError):
    """422 `processing`: well-formed but breaks a FHIR or business rule (invariants, profiles)."""

    status = 422
    default_code: IssueType = "processing"


class Unauthorized(FhirError):
    """401 `login`: no or bad credentials."""

    status = 401
    default_code: IssueType = "login"


class Forbidden(FhirError):
    """403 `forbidden`: authenticated but not allowed."""

    status = 403
    default_code: IssueType = "forbidden"


class NotFound(FhirError):
    """404 `not-found`: no such resource, version, type or route."""

    status = 404
    default_code: IssueType = "not-found"


class MethodNotAllowed(FhirError):
    """405 `not-supported`: the HTTP method is not allowed on this URL."""

    status = 405
    default_code: IssueType = "not-supported"


class NotAcceptable(FhirError):
    """406 `not-supported`: no representation matches the Accept header or `_format`."""

    status = 406
    default_code: IssueType = "not-supported"


class Conflict(FhirError):
    """409 `conflict`: the write conflicts with the current state (version race, taken time)."""

    status = 409
    default_code: IssueType = "conflict"


class Gone(FhirError):
    """410 `deleted`: the resource was deleted."""

    status = 410
    default_code: IssueType = "deleted"


class PreconditionFailed(FhirError):
    """412 `conflict`: an `If-Match` version or a conditional criteria did not hold."""

    status = 412
    default_code: IssueType = "conflict"


class PayloadTooLarge(FhirError):
    """413 `too-long`: the request body exceeds the configured limit."""

    status = 413
    default_code: IssueType = "too-long"


class UnsupportedMediaType(FhirError):
    """415 `not-supported`: the request Content-Type is not a FHIR format we read."""

    status = 415
    default_code: IssueType = "not-supported"


class TooManyRequests(FhirError):
    """429 `throttled`: asked again too soon (a Bulk Data status polled faster than its
    `Retry-After`, one export too many); carries a `Retry-After` header."""

    status = 429
    default_code: IssueType = "throttled"


class ServiceUnavailable(FhirError):
    """503 `transient`: the store stayed busy past its deadline (another process held its
    write lock); the request may be repeated. Carries `Retry-After`."""

    status = 503
    default_code: IssueType = "transient"


class TooCostly(FhirError):
    """400/403 `too-costly`: the request would do too much work."""

    status = 400
    default_code: IssueType = "too-costly"


class ServerError(FhirError):
    """500 `exception`: an unexpected failure; diagnostics carry only a request id."""

    status = 500
    default_code: IssueType = "exception"


class StoreConflict(Conflict):
    """Raised by a ResourceStore when an expected version or uniqueness guarantee failed.

    Attributes:
        key: what clashed, e.g. `Patient/123` or a claim key.
    """

    def __init__(self, diagnostics: str, *, key: str = "") -> None:
        super().__init__(diagnostics)
        self.key = key


class ClaimConflict(StoreConflict):
    """Raised by a ResourceStore when a time claim is held by another owner (the time is taken;
    SCHEDULING.md "Never double-book"). `key` is `scope#quantum`."""
