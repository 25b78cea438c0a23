"""FHIR RESTful interactions as plain data in, plain data out (R4 `http.html`).

`dispatch(FhirRequest) -> FhirResult` routes one interaction by method and path relative to the
base (`Patient/1/_history/2`) to the repository, search and operations. The HTTP edge (`api/`)
and batch/transaction bundles (`bundles.py`) both use it, so an entry in a batch behaves exactly
like the same request over HTTP.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Literal
from urllib.parse import urlencode

from fhir_server.access import Permission, access, require, require_unconfined
from fhir_server.bundle_builder import Transform, embed, history_bundle, searchset
from fhir_server.repository import Repository, WriteResult, check_type, load_json
from fhir_server.search.parse import parse_search
from fhir_server.search.query import ChainCondition, CompartmentCondition, Condition, HasCondition
from fhir_server.search_service import SearchResult, run_search
from fhir_server.storage.base import StoredResource
from resources.errors import Invalid, Issue, MethodNotAllowed, NotFound, operation_outcome
from resources.fhir_dates import now_us, parse_instant
from resources.search_parameters import compartment_params
from resources.summary import apply_elements, apply_summary
from resources.types import is_resource_type

PreferReturn = Literal["minimal", "representation", "OperationOutcome"]
COMPARTMENT_TYPES = frozenset({"Patient", "Practitioner"})


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


class Interactions:
    """The interaction dispatcher over one Repository and a set of operations.

    Args:
        repository: the FHIR repository.
        operations: registered operations by name (without `$`).
        capabilities: returns the CapabilityStatement for `GET /metadata`.
        default_tz: zone for dates without an offset.

    Attributes:
        search_narrowing: conditions ANDed to every search of a type (type, compartment and
            `_search`), e.g. Appointment proposals kept out of plain search (IHE ITI-118).
    """

    def __init__(
        self,
        repository: Repository,
        operations: dict[str, Operation] | None = None,
        capabilities: Callable[[str], dict[str, Any]] | None = None,
        bundle_handler: Callable[[FhirRequest], Awaitable[FhirResult]] | None = None,
    ) -> None:
        self.repository = repository
        self.operations = operations or {}
        self.capabilities = capabilities
        self.bundle_handler = bundle_handler
        self.search_narrowing: dict[str, tuple[Condition, ...]] = {}

    async def dispatch(self, req: FhirRequest) -> FhirResult:
        """Route and perform one interaction.

        Raises:
            FhirError subclasses for every client-visible failure.
        """
        parts = [p for p in req.path.strip("/").split("/") if p]
        method = req.method
        if not parts:
            if method == "POST" and self.bundle_handler is not None:
                return await self.bundle_handler(req)
            raise MethodNotAllowed(f"{method} is not supported on the base URL")
        head = parts[0]
        if head == "metadata" and len(parts) == 1:
            _only(method, "GET", req.path)
            assert self.capabilities is not None
            return FhirResult(200, self.capabilities(req.base_url))
        if head == "_history" and len(parts) == 1:
            _only(method, "GET", req.path)
            require_unconfined("*", "history-system")
            return await self._history(req, "system", None, None)
        if head.startswith("$"):
            return await self._operation(req, head[1:], None, None)
        check_type(head)
        if len(parts) == 1:
            return await self._type_level(req, head)
        second = parts[1]
        if len(parts) == 2:
            if second == "_search":
                _only(method, "POST", req.path)
                return await self._search(req, head)
            if second == "_history":
                _only(method, "GET", req.path)
                require_unconfined(head, "history-type")
                return await self._history(req, "type", head, None)
            if second.startswith("$"):
                return await self._operation(req, second[1:], head, None)
            return await self._instance(req, head, second)
        third = parts[2]
        if len(parts) == 3 and third == "_history":
            _only(method, "GET", req.path)
            require(head, "s", "history-instance")
            current = await self.repository.read_or_deleted(head, second)
            await _check_read(self.repository, current, head, second)
            return await self._history(req, "instance", head, second)
        if len(parts) == 3 and third.startswith("$"):
            return await self._operation(req, third[1:], head, second)
        if len(parts) == 4 and third == "_history":
            _only(method, "GET", req.path)
            require(head, "r", "vread")
            stored = await self.repository.vread(head, second, parts[3])
            await _check_read(self.repository, stored, head, second)
            return FhirResult(200, stored=stored, raw=stored.content)
        if len(parts) == 3 and head in COMPARTMENT_TYPES and is_resource_type(third):
            _only(method, "GET", req.path)
            return await self._compartment_search(req, head, second, third)
        raise NotFound(f"No route for {req.method} {req.path}", code="not-found")

    # -- type level -------------------------------------------------------------------------

    async def _type_level(self, req: FhirRequest, rtype: str) -> FhirResult:
        if req.method == "GET":
            return await self._search(req, rtype)
        if req.method == "POST":
            require(rtype, "c", "create")
            resource = _resource_body(req, rtype)
            result = await self.repository.create(resource, if_none_exist=req.if_none_exist)
            if result.outcome == "found":  # the match is shown: it must be visible
                await _check_read(self.repository, result.stored, rtype, result.stored.id)
            status = 201 if result.outcome == "created" else 200
            return self._written(req, result, status)
        criteria = urlencode(req.query)
        if req.method == "PUT":
            if not req.query:
                raise Invalid("A conditional update needs search criteria in the URL")
            require(rtype, "u", "conditional-update")
            require_unconfined(rtype, "conditional-update")
            resource = _resource_body(req, rtype)
            result = await self.repository.conditional_update(rtype, criteria, resource)
            return self._written(req, result, 201 if result.outcome == "created" else 200)
        if req.method == "DELETE":
            if not req.query:
                raise MethodNotAllowed(
                    "DELETE on a type needs search criteria (conditional delete)"
                )
            require(rtype, "d", "conditional-delete")
            require_unconfined(rtype, "conditional-delete")
            deleted = await self.repository.conditional_delete(rtype, criteria)
            return self._deleted(deleted > 0)
        raise MethodNotAllowed(f"{req.method} is not supported on {rtype}")

    async def _search(
        self,
        req: FhirRequest,
        rtype: str,
        extra: tuple[Condition, ...] = (),
        path: str | None = None,
    ) -> FhirResult:
        repo = self.repository
        context = repo.context
        if not context.base_url:  # recognise absolute references to this server's base
            context = replace(context, base_url=req.base_url)
        request = parse_search(rtype, req.query, context, strict=req.strict)
        policy = access()
        admit = None
        if policy is not None:  # search_conditions demands `s` on the type itself
            for ctype in _chained_types(request.query.conditions):
                policy.require(ctype, "s", "chained search")
            extra = extra + policy.search_conditions(rtype, context)
            admit = partial(policy.admit, repo.store)
        extra = extra + self.search_narrowing.get(rtype, ())
        result: SearchResult = await run_search(
            repo.store, request, extra, repo.context.default_tz, self.search_narrowing, admit
        )
        transform = _subset_transform(request.summary, request.elements)
        bundle = searchset(result, request, req.base_url, path or rtype, transform)
        return FhirResult(200, bundle)

    async def _compartment_search(
        self, req: FhirRequest, ctype: str, cid: str, rtype: str
    ) -> FhirResult:
        if not compartment_params(ctype, rtype) and rtype != ctype:
            raise NotFound(f"{rtype} is not in the {ctype} compartment")
        cond = CompartmentCondition(f"{ctype}/{cid}")
        return await self._search(req, rtype, (cond,), f"{ctype}/{cid}/{rtype}")

    # -- instance level ---------------------------------------------------------------------

    async def _instance(self, req: FhirRequest, rtype: str, id: str) -> FhirResult:
        repo = self.repository
        if req.method in ("GET", "HEAD"):
            require(rtype, "r", "read")
            stored = await repo.read(rtype, id)
            await _check_read(repo, stored, rtype, id)
            if req.if_none_match and req.if_none_match.strip() == f'W/"{stored.version_id}"':
                return FhirResult(304, stored=stored)
            summary = _single(req, "_summary")
            elements = tuple(e for e in (_single(req, "_elements") or "").split(",") if e)
            return FhirResult(
                200, stored=stored, raw=stored.content, summary=summary, elements=elements
            )
        if req.method == "PUT":
            require(rtype, "u", "update")
            resource = _resource_body(req, rtype)
            result = await repo.update(rtype, id, resource, if_match=req.if_match)
            return self._written(req, result, 201 if result.outcome == "created" else 200)
        if req.method == "PATCH":
            require(rtype, "u", "patch")
            result = await repo.patch(rtype, id, req.body, if_match=req.if_match)
            return self._written(req, result, 200)
        if req.method == "DELETE":
            require(rtype, "d", "delete")
            deleted = await repo.delete(rtype, id, if_match=req.if_match)
            res = self._deleted(deleted is not None)
            if deleted is not None:
                res.stored = deleted.stored
            return res
        raise MethodNotAllowed(f"{req.method} is not supported on {rtype}/{id}")

    def _written(self, req: FhirRequest, result: WriteResult, status: int) -> FhirResult:
        stored = result.stored
        location = f"{req.base_url}/{stored.resource_type}/{stored.id}/_history/{stored.version_id}"
        out = FhirResult(status, stored=stored, location=location)
        if req.prefer_return == "minimal":
            return out
        if req.prefer_return == "OperationOutcome":
            message = {
                "created": "Created",
                "updated": "Updated",
                "unchanged": "No change: the submitted content equals the current version",
                "found": "An existing resource matched the If-None-Exist criteria",
                "deleted": "Deleted",
            }[result.outcome]
            out.body = operation_outcome(
                [Issue(code="informational", diagnostics=message, severity="information")]
            )
            return out
        out.raw = stored.content
        return out

    def _deleted(self, did_delete: bool) -> FhirResult:
        message = "Deleted" if did_delete else "Nothing to delete: no current resource"
        body = operation_outcome(
            [Issue(code="informational", diagnostics=message, severity="information")]
        )
        return FhirResult(200, body)

    # -- history ----------------------------------------------------------------------------

    async def _history(
        self,
        req: FhirRequest,
        scope: Literal["instance", "type", "system"],
        rtype: str | None,
        id: str | None,
    ) -> FhirResult:
        params = dict(req.query)
        try:
            since = parse_instant(params["_since"]) if "_since" in params else None
            before = parse_instant(params["_before"]) if "_before" in params else now_us() + 1
            if "_at" in params:
                raise Invalid("_at is not supported; use _since", code="not-supported")
            count_text = params.get("_count", str(self.repository.context.default_count))
            offset_text = params.get("_offset", "0")
            if not count_text.isdigit() or not offset_text.isdigit():
                raise ValueError("_count and _offset must be non-negative integers")
        except ValueError as exc:
            raise Invalid(f"Invalid history parameter: {exc}") from exc
        count = min(int(count_text), self.repository.context.max_count)
        offset = int(offset_text)
        versions, total = await self.repository.store.history(
            scope, rtype, id, since=since, before=before, count=count, offset=offset
        )
        path = "/".join(p for p in (rtype, id, "_history") if p)
        kept = [(k, v) for k, v in req.query if k in ("_since", "_count")]
        bundle = history_bundle(versions, total, req.base_url, path, kept, offset, count, before)
        return FhirResult(200, bundle)

    # -- operations -------------------------------------------------------------------------

    async def _operation(
        self, req: FhirRequest, name: str, rtype: str | None, id: str | None
    ) -> FhirResult:
        op = self.operations.get(name)
        level_ok = op is not None and (
            (rtype is None and op.system)
            or (rtype is not None and id is None and op.type_level)
            or (id is not None and op.instance)
        )
        if (
            op is None
            or not level_ok
            or (
                rtype is not None
                and op.resource_types is not None
                and rtype not in op.resource_types
            )
        ):
            where = "/".join(p for p in (rtype, id) if p) or "the base"
            raise NotFound(f"Operation ${name} is not supported on {where}", code="not-supported")
        if req.method not in op.methods:
            raise MethodNotAllowed(
                f"${name} does not accept {req.method}; use {' or '.join(sorted(op.methods))}"
            )
        policy = access()
        if policy is not None:
            for rt, permission in op.requires:
                policy.require(rt or rtype or "*", permission, f"${name}")
            if rtype is not None and id is not None:
                target = await self.repository.read(rtype, id)
                await policy.check_read(self.repository.store, target)
        return await op.handler(OperationCall(name, rtype, id, req, self.repository))


def _subset_transform(summary: str | None, elements: tuple[str, ...]) -> Transform:
    """The entry renderer for `_summary`/`_elements` (stored JSON embedded as is otherwise)."""
    if summary in (None, "false", "count") and not elements:
        return embed

    def transform(stored: StoredResource) -> Any:
        resource = load_json(stored.content)
        if summary not in (None, "false", "count"):
            resource = apply_summary(resource, summary or "false")
        if elements:
            resource = apply_elements(resource, elements)
        return resource

    return transform


async def _check_read(repo: Repository, stored: StoredResource, rtype: str, id: str) -> None:
    """Forbidden (403) if the current policy may not see `stored` (a deletion marker is
    judged by the latest version that had content)."""
    policy = access()
    if policy is None:
        return
    if stored.deleted:
        versions, _ = await repo.store.history("instance", rtype, id, count=2)
        stored = next((v for v in versions if not v.deleted), stored)
    await policy.check_read(repo.store, stored)


def _chained_types(conditions: tuple[Condition, ...]) -> list[str]:
    """The types a search reaches into through chaining and `_has` (each needs `s`)."""
    out: list[str] = []
    for cond in conditions:
        if isinstance(cond, ChainCondition):
            out.append(cond.target_type)
            out.extend(_chained_types((cond.inner,)))
        elif isinstance(cond, HasCondition):
            out.append(cond.source_type)
            out.extend(_chained_types((cond.inner,)))
    return out


def _only(method: str, allowed: str, path: str) -> None:
    if method != allowed and not (allowed == "GET" and method == "HEAD"):
        raise MethodNotAllowed(f"{method} is not allowed on {path}; use {allowed}")


def _single(req: FhirRequest, name: str) -> str | None:
    for k, v in req.query:
        if k == name:
            return v
    return None


def _resource_body(req: FhirRequest, rtype: str) -> dict[str, Any]:
    body = req.body
    if not isinstance(body, dict):
        raise Invalid("The request body must be a FHIR resource (a JSON object)", code="structure")
    if body.get("resourceType") != rtype:
        raise Invalid(
            f"The body's resourceType {body.get('resourceType')!r} does not match the URL "
            f"type {rtype!r}",
            code="invalid",
            expression=["resourceType"],
        )
    return body
