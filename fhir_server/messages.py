"""The plain data of one FHIR interaction: `FhirRequest` in, `FhirResult` out, and the
operation registry's `Operation` / `OperationCall` (R4 http.html, operations.html).

The HTTP edge (`api/`) builds FhirRequests, the dispatcher (`interactions.py`) and batch and
transaction Bundles (`bundles.py`) route them, operations (`operations/`) answer them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from fhir_server.access import Permission
from fhir_server.model import StoredResource

if TYPE_CHECKING:
    from fhir_server.repository import Repository

__all__ = ["FhirRequest", "FhirResult", "Operation", "OperationCall", "OperationHandler"]

PreferReturn = Literal["minimal", "representation", "OperationOutcome"]


@dataclass(slots=True)
class FhirRequest:
    """One interaction.

    Attributes:
        method: HTTP method, upper case.
        path: the path below the FHIR base, without leading slash (`Patient/1`).
        query: query (or form) parameters in order.
        base_url: the FHIR base URL used for links (`http://host/fhir`).
        body: the parsed body (a resource dict, a JSON Patch list, or None).
        if_match / if_none_exist / if_none_match / if_modified_since: conditional headers.
        prefer_return: `Prefer: return=...`.
        strict: `Prefer: handling=strict`.
        respond_async: `Prefer: respond-async` (R4 async.html; Bulk Data `$export`).
        response_format: the format negotiated for the response (`json` or `xml`).
    """

    method: str
    path: str
    query: list[tuple[str, str]] = field(default_factory=list)
    base_url: str = ""
    body: Any = None
    if_match: str | None = None
    if_none_exist: str | None = None
    if_none_match: str | None = None
    if_modified_since: str | None = None
    prefer_return: PreferReturn | None = None
    strict: bool = False
    respond_async: bool = False
    response_format: str = "json"


@dataclass(slots=True)
class FhirResult:
    """What an interaction produced.

    Attributes:
        status: HTTP status.
        body: a FHIR JSON object to send (may embed orjson Fragments), or None.
        stored: the version concerned (ETag/Last-Modified/Location come from it).
        raw: for plain reads, the stored JSON bytes, sendable without re-serialising.
        location: a `Location` header value.
        headers: other headers.
        summary / elements: `_summary` / `_elements` to apply to a single resource body.
    """

    status: int
    body: Any = None
    stored: StoredResource | None = None
    raw: bytes | None = None
    location: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    summary: str | None = None
    elements: tuple[str, ...] = ()

    def etag(self) -> str | None:
        """`W/"n"` of the stored version, if any."""
        return f'W/"{self.stored.version_id}"' if self.stored else None


OperationHandler = Callable[["OperationCall"], Awaitable[FhirResult]]


@dataclass(slots=True)
class OperationCall:
    """An operation invocation (R4 operations.html): `[base]/$op`, `[base]/Type/$op`,
    `[base]/Type/id/$op`, with its parameters from the query string or a Parameters body."""

    name: str
    resource_type: str | None
    id: str | None
    request: FhirRequest
    repository: Repository
    """The request's repository: every read and write of the operation goes through it."""
    target: StoredResource | None = None
    """For an instance-level call, the resource it is invoked on, as read (checked) by the
    dispatcher: the operation need not read it again."""


@dataclass(frozen=True, slots=True)
class Operation:
    """A registered operation: name without `$`, where it may be invoked, its handler.

    `requires` lists the permissions a caller's token needs (`fhir_server.access`): pairs
    of a resource type (None: the type the operation is invoked on) and a permission, e.g.
    `$hold` needs `("Appointment", "c")` and `("Appointment", "u")` (SMART.md).
    """

    name: str
    handler: OperationHandler
    system: bool = False
    type_level: bool = False
    instance: bool = False
    resource_types: frozenset[str] | None = None
    methods: frozenset[str] = frozenset({"GET", "POST"})
    definition: dict[str, Any] | None = None
    requires: tuple[tuple[str | None, Permission], ...] = ((None, "r"),)
    type_definitions: tuple[tuple[str, str], ...] = ()
    """`(resource type, canonical URL)` where the operation's definition differs by type
    (Bulk Data `$export`: `patient-export` on Patient, `group-export` on Group); the
    CapabilityStatement names these instead of `definition` on those types."""
