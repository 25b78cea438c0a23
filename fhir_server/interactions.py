"""FHIR RESTful interactions as plain data in, plain data out (R4 `http.html`).

`Interactions.dispatch(FhirRequest, Repository) -> FhirResult` routes one interaction by method
and path relative to the base (`Patient/1/_history/2`) to the request's repository, search and
operations. The HTTP edge (`api/`) and batch/transaction Bundles (`bundles.py`) both use it, so
an entry in a batch behaves exactly like the same request over HTTP. The dispatcher checks
nothing itself: permissions, compartments and booking rules are the repository's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Literal
from urllib.parse import urlencode

from fhir_server.bundle_builder import Transform, embed, history_bundle, searchset
from fhir_server.messages import FhirRequest, FhirResult, Operation, OperationCall
from fhir_server.model import StoredResource
from fhir_server.repository import Repository, WriteResult, check_type, load_json
from fhir_server.search.parse import parse_search
from fhir_server.search.query import CompartmentCondition, Condition
from resources.errors import Invalid, Issue, MethodNotAllowed, NotFound, operation_outcome
from resources.fhir_dates import now_us, parse_instant
from resources.search_parameters import compartment_params
from resources.summary import apply_elements, apply_summary
from resources.types import is_resource_type

__all__ = ["BundleHandler", "Interactions", "resource_body", "written"]

COMPARTMENT_TYPES = frozenset({"Patient", "Practitioner"})
BundleHandler = Callable[[FhirRequest, Repository], Awaitable[FhirResult]]
"""Processes `POST [base]` with a batch or transaction Bundle (`bundles.BundleProcessor`)."""
_MESSAGES = {
    "created": "Created",
    "updated": "Updated",
    "unchanged": "No change: the submitted content equals the current version",
    "found": "An existing resource matched the If-None-Exist criteria",
    "deleted": "Deleted",
}


class Interactions:
    """The interaction dispatcher over registered operations.

    Args:
        operations: registered operations by name (without `$`).
        capabilities: returns the CapabilityStatement for `GET /metadata` (given the base).
        bundle_handler: processes batch and transaction Bundles posted to the base.
    """

    def __init__(
        self,
        operations: dict[str, Operation] | None = None,
        capabilities: Callable[[str], dict[str, Any]] | None = None,
        bundle_handler: BundleHandler | None = None,
    ) -> None:
        self.operations = operations or {}
        self.capabilities = capabilities
        self.bundle_handler = bundle_handler

    async def dispatch(self, req: FhirRequest, repo: Repository) -> FhirResult:
        """Route and perform one interaction with the request's repository.

        Raises:
            FhirError subclasses for every client-visible failure.
        """
        parts = [p for p in req.path.strip("/").split("/") if p]
        method = req.method
        if not parts:
            if method == "POST" and self.bundle_handler is not None:
                return await self.bundle_handler(req, repo)
            raise MethodNotAllowed(f"{method} is not supported on the base URL")
        head = parts[0]
        if head == "metadata" and len(parts) == 1:
            _only(method, "GET", req.path)
            assert self.capabilities is not None
            return FhirResult(200, self.capabilities(req.base_url))
        if head == "_history" and len(parts) == 1:
            _only(method, "GET", req.path)
            return await self._history(req, repo, "system", None, None)
        if head.startswith("$"):
            return await self._operation(req, repo, head[1:], None, None)
        check_type(head)
        if len(parts) == 1:
            return await self._type_level(req, repo, head)
        second = parts[1]
        if len(parts) == 2:
            if second == "_search":
                _only(method, "POST", req.path)
                return await self._search(req, repo, head)
            if second == "_history":
                _only(method, "GET", req.path)
                return await self._history(req, repo, "type", head, None)
            if second.startswith("$"):
                return await self._operation(req, repo, second[1:], head, None)
            return await self._instance(req, repo, head, second)
        third = parts[2]
        if len(parts) == 3 and third == "_history":
            _only(method, "GET", req.path)
            return await self._history(req, repo, "instance", head, second)
        if len(parts) == 3 and third.startswith("$"):
            return await self._operation(req, repo, third[1:], head, second)
        if len(parts) == 4 and third == "_history":
            _only(method, "GET", req.path)
            stored = await repo.vread(head, second, parts[3])
            return FhirResult(200, stored=stored, raw=stored.content)
        if len(parts) == 3 and head in COMPARTMENT_TYPES and is_resource_type(third):
            _only(method, "GET", req.path)
            return await self._compartment_search(req, repo, head, second, third)
        raise NotFound(f"No route for {req.method} {req.path}", code="not-found")

    # -- type level -------------------------------------------------------------------------

    async def _type_level(self, req: FhirRequest, repo: Repository, rtype: str) -> FhirResult:
        if req.method == "GET":
            return await self._search(req, repo, rtype)
        if req.method == "POST":
            resource = resource_body(req, rtype)
            result = await repo.create(resource, if_none_exist=req.if_none_exist)
            return written(req, result, 201 if result.outcome == "created" else 200)
        criteria = urlencode(req.query)
        if req.method == "PUT":
            if not req.query:
                raise Invalid("A conditional update needs search criteria in the URL")
            resource = resource_body(req, rtype)
            result = await repo.conditional_update(rtype, criteria, resource)
            return written(req, result, 201 if result.outcome == "created" else 200)
        if req.method == "DELETE":
            if not req.query:
                raise MethodNotAllowed(
                    "DELETE on a type needs search criteria (conditional delete)"
                )
            deleted = await repo.conditional_delete(rtype, criteria)
            return _deleted(deleted > 0)
        raise MethodNotAllowed(f"{req.method} is not supported on {rtype}")

    async def _search(
        self,
        req: FhirRequest,
        repo: Repository,
        rtype: str,
        extra: tuple[Condition, ...] = (),
        path: str | None = None,
    ) -> FhirResult:
        request = parse_search(rtype, req.query, repo.context, strict=req.strict)
        result = await repo.search(request, extra)
        transform = _subset_transform(request.summary, request.elements)
        bundle = searchset(result, request, req.base_url, path or rtype, transform)
        return FhirResult(200, bundle)

    async def _compartment_search(
        self, req: FhirRequest, repo: Repository, ctype: str, cid: str, rtype: str
    ) -> FhirResult:
        if not compartment_params(ctype, rtype) and rtype != ctype:
            raise NotFound(f"{rtype} is not in the {ctype} compartment")
        cond = CompartmentCondition(f"{ctype}/{cid}")
        return await self._search(req, repo, rtype, (cond,), f"{ctype}/{cid}/{rtype}")

    # -- instance level ---------------------------------------------------------------------

    async def _instance(
        self, req: FhirRequest, repo: Repository, rtype: str, id: str
    ) -> FhirResult:
        if req.method in ("GET", "HEAD"):
            stored = await repo.read(rtype, id)
            if req.if_none_match and req.if_none_match.strip() == f'W/"{stored.version_id}"':
                return FhirResult(304, stored=stored)
            summary = _single(req, "_summary")
            elements = tuple(e for e in (_single(req, "_elements") or "").split(",") if e)
            return FhirResult(
                200, stored=stored, raw=stored.content, summary=summary, elements=elements
            )
        if req.method == "PUT":
            resource = resource_body(req, rtype)
            result = await repo.update(rtype, id, resource, if_match=req.if_match)
            return written(req, result, 201 if result.outcome == "created" else 200)
        if req.method == "PATCH":
            result = await repo.patch(rtype, id, req.body, if_match=req.if_match)
            return written(req, result, 200)
        if req.method == "DELETE":
            deleted = await repo.delete(rtype, id, if_match=req.if_match)
            res = _deleted(deleted is not None)
            if deleted is not None:
                res.stored = deleted.stored
            return res
        raise MethodNotAllowed(f"{req.method} is not supported on {rtype}/{id}")

    # -- history ----------------------------------------------------------------------------

    async def _history(
        self,
        req: FhirRequest,
        repo: Repository,
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
            count_text = params.get("_count", str(repo.context.default_count))
            offset_text = params.get("_offset", "0")
            if not count_text.isdigit() or not offset_text.isdigit():
                raise ValueError("_count and _offset must be non-negative integers")
        except ValueError as exc:
            raise Invalid(f"Invalid history parameter: {exc}") from exc
        count = min(int(count_text), repo.context.max_count)
        offset = int(offset_text)
        versions, total = await repo.history(
            scope, rtype, id, since=since, before=before, count=count, offset=offset
        )
        path = "/".join(p for p in (rtype, id, "_history") if p)
        kept = [(k, v) for k, v in req.query if k in ("_since", "_count")]
        bundle = history_bundle(versions, total, req.base_url, path, kept, offset, count, before)
        return FhirResult(200, bundle)

    # -- operations -------------------------------------------------------------------------

    async def _operation(
        self, req: FhirRequest, repo: Repository, name: str, rtype: str | None, id: str | None
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
        for rt, permission in op.requires:
            repo.require(rt or rtype or "*", permission, f"${name}")
        target = None
        if rtype is not None and id is not None:  # it must exist and be visible to the caller
            target = await repo.read(rtype, id)
        return await op.handler(OperationCall(name, rtype, id, req, repo, target))


def written(req: FhirRequest, result: WriteResult, status: int) -> FhirResult:
    """The FhirResult of a write: Location, and the body `Prefer: return` asks for."""
    stored = result.stored
    location = f"{req.base_url}/{stored.resource_type}/{stored.id}/_history/{stored.version_id}"
    out = FhirResult(status, stored=stored, location=location)
    if req.prefer_return == "minimal":
        return out
    if req.prefer_return == "OperationOutcome":
        message = _MESSAGES[result.outcome]
        out.body = operation_outcome(
            [Issue(code="informational", diagnostics=message, severity="information")]
        )
        return out
    out.raw = stored.content
    return out


def _deleted(did_delete: bool) -> FhirResult:
    message = "Deleted" if did_delete else "Nothing to delete: no current resource"
    body = operation_outcome(
        [Issue(code="informational", diagnostics=message, severity="information")]
    )
    return FhirResult(200, body)


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


def _only(method: str, allowed: str, path: str) -> None:
    if method != allowed and not (allowed == "GET" and method == "HEAD"):
        raise MethodNotAllowed(f"{method} is not allowed on {path}; use {allowed}")


def _single(req: FhirRequest, name: str) -> str | None:
    for k, v in req.query:
        if k == name:
            return v
    return None


def resource_body(req: FhirRequest, rtype: str) -> dict[str, Any]:
    """The request body as a resource of `rtype`.

    Raises:
        Invalid: (400) not a JSON object, or another resourceType than the URL's.
    """
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
