"""`batch` and `transaction` processing at `POST [base]` (R4 http.html#transaction, bundle.html).

* batch: each entry is an independent interaction through the same dispatcher as HTTP; a failed
  entry gets its OperationOutcome in its response, the others go on.
* transaction: all or nothing. Entries are processed in FHIR order (DELETE, POST, PUT/PATCH,
  then GET/HEAD); `urn:uuid:` fullUrls of created resources and conditional references
  (`Patient?identifier=...`) are resolved and rewritten in every reference; every write is
  prepared first and committed by ONE `ResourceStore.apply`, so any failure leaves no trace.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from fhir_server.access import Permission, require, require_unconfined
from fhir_server.interactions import FhirRequest, FhirResult
from fhir_server.repository import Repository, WriteResult, criteria_key
from fhir_server.storage.base import StoredResource, WriteOp
from resources.errors import Conflict, FhirError, Invalid, PreconditionFailed, StoreConflict
from resources.fhir_dates import format_instant

Dispatch = Callable[[FhirRequest], Awaitable[FhirResult]]
ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}
STATUS_TEXT = {200: "200 OK", 201: "201 Created", 204: "204 No Content", 304: "304 Not Modified"}
_PERMISSIONS: dict[str, tuple[Permission, str]] = {
    "POST": ("c", "create"),
    "PUT": ("u", "update"),
    "PATCH": ("u", "patch"),
    "DELETE": ("d", "delete"),
}
_CONDITIONAL_REF = re.compile(r"^[A-Z][A-Za-z]+\?.+")


def _status(code: int) -> str:
    return STATUS_TEXT.get(code, str(code))


def _entry_request(entry: Any, index: int) -> tuple[str, str]:
    where = f"Bundle.entry[{index}].request"
    if not isinstance(entry, dict) or not isinstance(entry.get("request"), dict):
        raise Invalid(f"{where} is missing", code="required", expression=[where])
    method = entry["request"].get("method")
    url = entry["request"].get("url")
    if method not in ORDER or not isinstance(url, str) or not url:
        raise Invalid(
            f"{where} needs a method (GET, HEAD, POST, PUT, PATCH, DELETE) and a url",
            code="required",
            expression=[where],
        )
    return method, url


def _split_url(url: str, base_url: str) -> tuple[str, list[tuple[str, str]]]:
    if url.startswith(base_url + "/"):
        url = url[len(base_url) + 1 :]
    parts = urlsplit(url)
    return parts.path.strip("/"), parse_qsl(parts.query, keep_blank_values=True)


def _request_for(entry: dict[str, Any], method: str, url: str, parent: FhirRequest) -> FhirRequest:
    path, query = _split_url(url, parent.base_url)
    req = entry["request"]
    return FhirRequest(
        method=method,
        path=path,
        query=query,
        base_url=parent.base_url,
        body=entry.get("resource"),
        if_match=req.get("ifMatch"),
        if_none_exist=req.get("ifNoneExist"),
        if_none_match=req.get("ifNoneMatch"),
        prefer_return=parent.prefer_return,
    )


def _response_entry(result: FhirResult, base_url: str) -> dict[str, Any]:
    response: dict[str, Any] = {"status": _status(result.status)}
    stored = result.stored
    if stored is not None:
        response["etag"] = f'W/"{stored.version_id}"'
        response["lastModified"] = format_instant(stored.last_updated)
        if result.location:
            response["location"] = result.location
    entry: dict[str, Any] = {}
    if stored is not None and not stored.deleted:
        entry["fullUrl"] = f"{base_url}/{stored.resource_type}/{stored.id}"
    if result.raw is not None:
        import orjson

        entry["resource"] = orjson.Fragment(result.raw)
    elif result.body is not None:
        if isinstance(result.body, dict) and result.body.get("resourceType") == "OperationOutcome":
            response["outcome"] = result.body
        else:
            entry["resource"] = result.body
    entry["response"] = response
    return entry


def _error_entry(exc: FhirError) -> dict[str, Any]:
    return {"response": {"status": str(exc.status), "outcome": exc.outcome()}}


def _rewrite_references(node: Any, mapping: dict[str, str]) -> Any:
    """Replace `reference` values found in `mapping` anywhere in a resource (copy)."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "reference" and isinstance(value, str) and value in mapping:
                out[key] = mapping[value]
            else:
                out[key] = _rewrite_references(value, mapping)
        return out
    if isinstance(node, list):
        return [_rewrite_references(v, mapping) for v in node]
    return node


def _collect_references(node: Any, found: set[str]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                found.add(value)
            else:
                _collect_references(value, found)
    elif isinstance(node, list):
        for v in node:
            _collect_references(v, found)


class BundleProcessor:
    """Process batch and transaction Bundles.

    Args:
        repository: for preparing transaction writes.
        dispatch: the interaction dispatcher (batch entries and transaction reads).
    """

    def __init__(self, repository: Repository, dispatch: Dispatch) -> None:
        self.repository = repository
        self.dispatch = dispatch

    async def __call__(self, req: FhirRequest) -> FhirResult:
        """Handle `POST [base]` with a Bundle body."""
        bundle = req.body
        if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
            raise Invalid(
                "POST to the base URL takes a Bundle", code="invalid", expression=["resourceType"]
            )
        kind = bundle.get("type")
        entries = bundle.get("entry") or []
        if not isinstance(entries, list):
            raise Invalid(
                "Bundle.entry must be an array", code="structure", expression=["Bundle.entry"]
            )
        if kind == "batch":
            return await self._batch(req, entries)
        if kind == "transaction":
            return await self._transaction(req, entries)
        raise Invalid(
            f"Bundle.type {kind!r} cannot be processed; POST a batch or transaction",
            code="invalid",
            expression=["Bundle.type"],
        )

    async def _batch(self, req: FhirRequest, entries: list[Any]) -> FhirResult:
        out: list[dict[str, Any]] = []
        for i, entry in enumerate(entries):
            try:
                method, url = _entry_request(entry, i)
                result = await self.dispatch(_request_for(entry, method, url, req))
                out.append(_response_entry(result, req.base_url))
            except FhirError as exc:
                out.append(_error_entry(exc))
        body = {"resourceType": "Bundle", "type": "batch-response", "entry": out}
        return FhirResult(200, body)

    async def _transaction(self, req: FhirRequest, entries: list[Any]) -> FhirResult:
        parsed = [(i, *_entry_request(e, i), e) for i, e in enumerate(entries)]
        mapping = self._assign_ids(parsed)
        async with contextlib.AsyncExitStack() as locks:
            for _i, method, url, entry in parsed:
                if method == "POST" and entry["request"].get("ifNoneExist"):
                    rtype = url.split("?")[0].strip("/")
                    key = criteria_key(rtype, entry["request"]["ifNoneExist"])
                    await locks.enter_async_context(self.repository.store.lock(key))
            await self._resolve_conditional_references(entries, mapping)
            results: dict[int, FhirResult] = {}
            ops: list[WriteOp] = []
            touched: set[str] = set()
            for i, method, url, entry in sorted(parsed, key=lambda p: (ORDER[p[1]], p[0])):
                if method in ("GET", "HEAD"):
                    continue
                try:
                    op, result = await self._prepare(req, method, url, entry, mapping)
                except FhirError as exc:
                    raise _entry_error(exc, i) from exc
                if op is not None:
                    key = f"{op.version.resource_type}/{op.version.id}"
                    if key in touched:
                        raise Invalid(
                            f"{key} appears more than once in the transaction",
                            expression=[f"Bundle.entry[{i}]"],
                        )
                    touched.add(key)
                    ops.append(op)
                results[i] = result
            try:
                await self.repository.apply(ops)
            except StoreConflict as exc:
                raise Conflict(
                    f"The transaction conflicts with a concurrent change ({exc.key}); nothing "
                    "was written"
                ) from exc
        for i, method, url, entry in parsed:
            if method in ("GET", "HEAD"):
                try:
                    results[i] = await self.dispatch(_request_for(entry, "GET", url, req))
                except FhirError as exc:
                    raise _entry_error(exc, i) from exc
        out = [_response_entry(results[i], req.base_url) for i in range(len(parsed))]
        body = {"resourceType": "Bundle", "type": "transaction-response", "entry": out}
        return FhirResult(200, body)

    def _assign_ids(self, parsed: list[tuple[int, str, str, Any]]) -> dict[str, str]:
        """Give every POSTed entry its server id now, so `urn:uuid` references resolve."""
        mapping: dict[str, str] = {}
        for i, method, url, entry in parsed:
            full = entry.get("fullUrl")
            if method == "PUT" and isinstance(full, str) and full.startswith("urn:"):
                path = url.split("?")[0].strip("/")
                if path.count("/") == 1:
                    mapping[full] = path
            if method != "POST":
                continue
            resource = entry.get("resource")
            if not isinstance(resource, dict):
                raise Invalid(
                    f"Bundle.entry[{i}] POST needs a resource",
                    code="required",
                    expression=[f"Bundle.entry[{i}].resource"],
                )
            rtype = url.split("?")[0].strip("/")
            new_id = self.repository.new_id()
            entry["_assigned_id"] = new_id
            full = entry.get("fullUrl")
            if isinstance(full, str) and full:
                mapping[full] = f"{rtype}/{new_id}"
        return mapping

    async def _resolve_conditional_references(
        self, entries: list[Any], mapping: dict[str, str]
    ) -> None:
        refs: set[str] = set()
        for entry in entries:
            _collect_references(entry.get("resource"), refs)
        for ref in sorted(refs):
            if ref in mapping or not _CONDITIONAL_REF.match(ref):
                continue
            rtype, criteria = ref.split("?", 1)
            matches = await self.repository.find(rtype, criteria)
            if len(matches) != 1:
                raise PreconditionFailed(
                    f"Conditional reference {ref!r} matches {len(matches)} resources; "
                    "it must match exactly one",
                    code="not-found" if not matches else "multiple-matches",
                )
            mapping[ref] = f"{rtype}/{matches[0].id}"

    async def _prepare(
        self,
        req: FhirRequest,
        method: str,
        url: str,
        entry: dict[str, Any],
        mapping: dict[str, str],
    ) -> tuple[WriteOp | None, FhirResult]:
        """Prepare one write entry: its WriteOp (None when nothing is written) and result."""
        path, query = _split_url(url, req.base_url)
        parts = path.split("/")
        resource = entry.get("resource")
        if isinstance(resource, dict):
            resource = _rewrite_references(resource, mapping)
        if parts and parts[0]:  # the entry's own permission, as over REST
            permission, interaction = _PERMISSIONS[method]
            require(parts[0], permission, interaction)
            if len(parts) == 1 and method != "POST":
                require_unconfined(parts[0], f"conditional-{interaction}")
        if method == "POST":
            return await self._prepare_create(req, url, parts, resource, entry)
        if method in ("PUT", "PATCH"):
            return await self._prepare_update(req, method, url, parts, query, resource, entry)
        return await self._prepare_delete(url, parts, query, entry)

    async def _prepare_create(
        self,
        req: FhirRequest,
        url: str,
        parts: list[str],
        resource: Any,
        entry: dict[str, Any],
    ) -> tuple[WriteOp | None, FhirResult]:
        repo = self.repository
        if len(parts) != 1:
            raise Invalid(f"POST url {url!r} must be a resource type")
        if not isinstance(resource, dict) or resource.get("resourceType") != parts[0]:
            raise Invalid(
                f"The resource does not match the POST url {url!r}", expression=["resourceType"]
            )
        criteria = entry["request"].get("ifNoneExist")
        if criteria:
            match = await repo.find_one(parts[0], criteria)
            if match is not None:
                return None, _result(req, WriteResult(match, "found"), 200)
        op = await repo.prepare_create(resource, id=entry["_assigned_id"])
        return op, _result(req, WriteResult(op.version, "created"), 201)

    async def _prepare_update(
        self,
        req: FhirRequest,
        method: str,
        url: str,
        parts: list[str],
        query: list[tuple[str, str]],
        resource: Any,
        entry: dict[str, Any],
    ) -> tuple[WriteOp | None, FhirResult]:
        repo = self.repository
        if len(parts) == 1 and query and method == "PUT":
            if not isinstance(resource, dict):
                raise Invalid("PUT needs a resource")
            match = await repo.find_one(parts[0], _criteria(query))
            target = match.id if match else (resource.get("id") or repo.new_id())
            parts = [parts[0], str(target)]
            resource = {**resource, "id": target}
        if len(parts) != 2:
            raise Invalid(f"{method} url {url!r} must be Type/id or Type?criteria")
        if method == "PATCH":
            current = await repo.read(parts[0], parts[1])
            resource = repo.patched(current, entry.get("resource"), parts[0], parts[1])
        if not isinstance(resource, dict):
            raise Invalid(f"{method} needs a resource")
        op, before = await repo.prepare_update(
            parts[0], parts[1], resource, if_match=entry["request"].get("ifMatch"), method=method
        )
        if op is None:
            assert before is not None
            return None, _result(req, WriteResult(before, "unchanged"), 200)
        created = before is None or before.deleted
        outcome = WriteResult(op.version, "created" if created else "updated")
        return op, _result(req, outcome, 201 if created else 200)

    async def _prepare_delete(
        self, url: str, parts: list[str], query: list[tuple[str, str]], entry: dict[str, Any]
    ) -> tuple[WriteOp | None, FhirResult]:
        repo = self.repository
        if len(parts) == 1 and query:
            match = await repo.find_one(parts[0], _criteria(query))
            if match is None:
                return None, FhirResult(204)
            parts = [parts[0], match.id]
        if len(parts) != 2:
            raise Invalid(f"DELETE url {url!r} must be Type/id or Type?criteria")
        op, _current = await repo.prepare_delete(
            parts[0], parts[1], if_match=entry["request"].get("ifMatch")
        )
        return op, FhirResult(204, stored=op.version if op else None)


def _criteria(query: list[tuple[str, str]]) -> str:
    return urlencode(query)


def _result(req: FhirRequest, result: WriteResult, status: int) -> FhirResult:
    stored: StoredResource = result.stored
    location = f"{req.base_url}/{stored.resource_type}/{stored.id}/_history/{stored.version_id}"
    out = FhirResult(status, stored=stored, location=location)
    if req.prefer_return != "minimal":
        out.raw = stored.content
    return out


def _entry_error(exc: FhirError, index: int) -> FhirError:
    """Re-raise an entry's error for the whole transaction, naming the entry."""
    prefix = f"Bundle.entry[{index}]: "
    exc.issues = [
        type(issue)(
            code=issue.code,
            diagnostics=prefix + issue.diagnostics,
            severity=issue.severity,
            expression=issue.expression,
            details_code=issue.details_code,
        )
        for issue in exc.issues
    ]
    return exc
