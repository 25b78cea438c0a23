"""`batch` and `transaction` processing at `POST [base]` (R4 http.html#transaction, bundle.html).

* batch: each entry is an independent interaction through the same dispatcher as HTTP; a failed
  entry gets its OperationOutcome in its response, the others go on.
* transaction: all or nothing. Entries are processed in FHIR order (DELETE, POST, PUT/PATCH,
  then GET/HEAD); `urn:uuid:` fullUrls of created resources and conditional references
  (`Patient?identifier=...`) are resolved and rewritten in every reference; every write is
  prepared by the same repository code as the REST interaction (`Repository.prepare_*`:
  permissions, conditional matches and their read check, booking rules) and committed by ONE
  `Repository.apply`, so any failure leaves no trace. Conditional criteria are locked across
  processes for the whole transaction.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import orjson

from fhir_server.interactions import written
from fhir_server.messages import FhirRequest, FhirResult
from fhir_server.repository import Prepared, Repository
from resources.errors import Conflict, FhirError, Invalid, PreconditionFailed, StoreConflict
from resources.fhir_dates import format_instant

Dispatch = Callable[[FhirRequest, Repository], Awaitable[FhirResult]]
ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}
STATUS_TEXT = {200: "200 OK", 201: "201 Created", 204: "204 No Content", 304: "304 Not Modified"}
JSON_PATCH = "application/json-patch+json"
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
        dispatch: the interaction dispatcher (batch entries and transaction reads).
    """

    def __init__(self, dispatch: Dispatch) -> None:
        self.dispatch = dispatch

    async def __call__(self, req: FhirRequest, repo: Repository) -> FhirResult:
        """Handle `POST [base]` with a Bundle body, with the request's repository."""
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
            return await self._batch(req, repo, entries)
        if kind == "transaction":
            return await self._transaction(req, repo, entries)
        raise Invalid(
            f"Bundle.type {kind!r} cannot be processed; POST a batch or transaction",
            code="invalid",
            expression=["Bundle.type"],
        )

    async def _batch(self, req: FhirRequest, repo: Repository, entries: list[Any]) -> FhirResult:
        out: list[dict[str, Any]] = []
        for i, entry in enumerate(entries):
            try:
                method, url = _entry_request(entry, i)
                result = await self.dispatch(_request_for(entry, method, url, req), repo)
                out.append(_response_entry(result, req.base_url))
            except FhirError as exc:
                out.append(_error_entry(exc))
        body = {"resourceType": "Bundle", "type": "batch-response", "entry": out}
        return FhirResult(200, body)

    async def _transaction(
        self, req: FhirRequest, repo: Repository, entries: list[Any]
    ) -> FhirResult:
        parsed = [(i, *_entry_request(e, i), e) for i, e in enumerate(entries)]
        mapping = _assign_ids(parsed, repo)
        results: dict[int, FhirResult] = {}
        async with repo.criteria_locks(_criteria(parsed, req.base_url)):
            await _resolve_conditional_references(repo, entries, mapping)
            prepared: list[Prepared] = []
            touched: set[str] = set()
            for i, method, url, entry in sorted(parsed, key=lambda p: (ORDER[p[1]], p[0])):
                if method in ("GET", "HEAD"):
                    continue
                try:
                    write = await _prepare(req, repo, method, url, entry, mapping)
                except FhirError as exc:
                    raise _entry_error(exc, i) from exc
                if write.op is not None:
                    key = f"{write.op.version.resource_type}/{write.op.version.id}"
                    if key in touched:
                        raise Invalid(
                            f"{key} appears more than once in the transaction",
                            expression=[f"Bundle.entry[{i}]"],
                        )
                    touched.add(key)
                    prepared.append(write)
                results[i] = _entry_result(req, method, write)
            try:
                await repo.apply(prepared)
            except StoreConflict as exc:
                raise Conflict(
                    f"The transaction conflicts with a concurrent change ({exc.key}); nothing "
                    "was written"
                ) from exc
        for i, method, url, entry in parsed:
            if method in ("GET", "HEAD"):
                try:
                    results[i] = await self.dispatch(_request_for(entry, "GET", url, req), repo)
                except FhirError as exc:
                    raise _entry_error(exc, i) from exc
        out = [_response_entry(results[i], req.base_url) for i in range(len(parsed))]
        body = {"resourceType": "Bundle", "type": "transaction-response", "entry": out}
        return FhirResult(200, body)


def _criteria(parsed: list[tuple[int, str, str, Any]], base_url: str) -> list[tuple[str, str]]:
    """The conditional criteria of a transaction's writes, `(type, criteria)`, to lock."""
    out: list[tuple[str, str]] = []
    for _i, method, url, entry in parsed:
        path, query = _split_url(url, base_url)
        if method == "POST" and entry["request"].get("ifNoneExist"):
            out.append((path, str(entry["request"]["ifNoneExist"])))
        elif method in ("PUT", "DELETE") and query and "/" not in path:
            out.append((path, urlencode(query)))
    return out


def _assign_ids(parsed: list[tuple[int, str, str, Any]], repo: Repository) -> dict[str, str]:
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
        new_id = repo.new_id()
        entry["_assigned_id"] = new_id
        if isinstance(full, str) and full:
            mapping[full] = f"{rtype}/{new_id}"
    return mapping


async def _resolve_conditional_references(
    repo: Repository, entries: list[Any], mapping: dict[str, str]
) -> None:
    """Resolve `Type?criteria` references to the one match the caller may see (R4
    http.html#trules "conditional references").

    Raises:
        PreconditionFailed: (412) no match or several.
        Forbidden: (403) the match is outside what the caller may see.
    """
    refs: set[str] = set()
    for entry in entries:
        _collect_references(entry.get("resource"), refs)
    for ref in sorted(refs):
        if ref in mapping or not _CONDITIONAL_REF.match(ref):
            continue
        rtype, criteria = ref.split("?", 1)
        matches = await repo.find(rtype, criteria)
        if len(matches) != 1:
            raise PreconditionFailed(
                f"Conditional reference {ref!r} matches {len(matches)} resources; "
                "it must match exactly one",
                code="not-found" if not matches else "multiple-matches",
            )
        await repo.check_read(matches[0])
        mapping[ref] = f"{rtype}/{matches[0].id}"


async def _prepare(
    req: FhirRequest,
    repo: Repository,
    method: str,
    url: str,
    entry: dict[str, Any],
    mapping: dict[str, str],
) -> Prepared:
    """Prepare one write entry with the same repository code as its REST interaction."""
    path, query = _split_url(url, req.base_url)
    parts = path.split("/")
    resource = entry.get("resource")
    if isinstance(resource, dict):
        resource = _rewrite_references(resource, mapping)
    request = entry["request"]
    if method == "POST":
        if len(parts) != 1:
            raise Invalid(f"POST url {url!r} must be a resource type")
        if not isinstance(resource, dict) or resource.get("resourceType") != parts[0]:
            raise Invalid(
                f"The resource does not match the POST url {url!r}", expression=["resourceType"]
            )
        return await repo.prepare_create(
            resource, if_none_exist=request.get("ifNoneExist"), id=entry["_assigned_id"]
        )
    if method == "PATCH":
        if len(parts) != 2:
            raise Invalid(f"PATCH url {url!r} must be Type/id")
        patch = _patch_document(entry.get("resource"))
        return await repo.prepare_patch(parts[0], parts[1], patch, if_match=request.get("ifMatch"))
    if method == "PUT":
        if not isinstance(resource, dict):
            raise Invalid("PUT needs a resource", expression=["Bundle.entry.resource"])
        if len(parts) == 1 and query:
            return await repo.prepare_conditional_update(parts[0], urlencode(query), resource)
        if len(parts) != 2:
            raise Invalid(f"PUT url {url!r} must be Type/id or Type?criteria")
        return await repo.prepare_update(
            parts[0], parts[1], resource, if_match=request.get("ifMatch")
        )
    if len(parts) == 1 and query:
        return await repo.prepare_conditional_delete(parts[0], urlencode(query))
    if len(parts) != 2:
        raise Invalid(f"DELETE url {url!r} must be Type/id or Type?criteria")
    return await repo.prepare_delete(parts[0], parts[1], if_match=request.get("ifMatch"))


def _patch_document(resource: Any) -> Any:
    """The JSON Patch of a PATCH entry: a `Binary` with `contentType`
    `application/json-patch+json` and base64 `data` (R4 http.html#patch in a transaction), or
    the patch array itself."""
    if isinstance(resource, dict) and resource.get("resourceType") == "Binary":
        if resource.get("contentType") != JSON_PATCH:
            raise Invalid(f"A PATCH entry's Binary must have contentType {JSON_PATCH}")
        try:
            return orjson.loads(base64.b64decode(str(resource.get("data", "")), validate=True))
        except (binascii.Error, orjson.JSONDecodeError) as exc:
            raise Invalid(f"The PATCH entry's Binary data is not a JSON Patch: {exc}") from exc
    return resource


def _entry_result(req: FhirRequest, method: str, write: Prepared) -> FhirResult:
    """The response of one write entry (201 for a creation, 204 for a deletion)."""
    if method == "DELETE":
        return FhirResult(204, stored=write.op.version if write.op else None)
    assert write.result is not None
    status = 201 if write.result.outcome == "created" else 200
    return written(req, write.result, status)


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
