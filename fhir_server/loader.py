"""Load FHIR data from files into the repository: the engine behind `fhir-server load`.

Accepts FHIR JSON resources, Bundles of any type, NDJSON (one resource a line) and whole
directories (recursively, `*.json` and `*.ndjson`, in sorted order). Resources with an id are
upserted with `update` (so a re-run changes nothing: identical content makes no new version);
resources without an id are created. `transaction` and `batch` Bundles are processed as such
(their `urn:uuid` references resolved); other Bundles are unpacked entry by entry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from fhir_server.bundles import BundleProcessor
from fhir_server.messages import FhirRequest
from fhir_server.repository import Repository
from resources.errors import FhirError, Invalid, Issue, operation_outcome


@dataclass(slots=True)
class Rejection:
    """One item that could not be loaded: where it came from and why."""

    source: str
    outcome: dict[str, Any]


@dataclass(slots=True)
class LoadReport:
    """Counts of what a load did, and every rejection with its OperationOutcome."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: list[Rejection] = field(default_factory=list)

    @property
    def loaded(self) -> int:
        """Resources created or updated."""
        return self.created + self.updated


@dataclass(frozen=True, slots=True)
class Item:
    """One thing to load: a resource (or a whole Bundle) and where it came from."""

    source: str
    data: Any


def iter_files(paths: list[Path]) -> Iterator[Path]:
    """Expand directories into their `.json`/`.ndjson` files, sorted; keep files as given."""
    for path in paths:
        if path.is_dir():
            yield from sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix in (".json", ".ndjson")
            )
        else:
            yield path


def iter_items(path: Path) -> Iterator[Item]:
    """Read one file into items; unreadable content yields an item carrying the error."""
    if path.suffix == ".ndjson":
        with path.open("rb") as fh:
            for number, line in enumerate(fh, start=1):
                if line.strip():
                    yield _parse(f"{path}:{number}", line)
        return
    yield _parse(str(path), path.read_bytes())


def _parse(source: str, raw: bytes) -> Item:
    try:
        return Item(source, orjson.loads(raw))
    except orjson.JSONDecodeError as exc:
        return Item(source, Invalid(f"Malformed JSON: {exc}", code="structure"))


class Loader:
    """Load items into a repository, counting outcomes.

    Args:
        repository: where to write (a job repository: every write rule applies).
        bundles: processor for transaction/batch Bundles.
        base_url: base URL used for Bundle processing links.
    """

    def __init__(
        self, repository: Repository, bundles: BundleProcessor, base_url: str = ""
    ) -> None:
        self.repository = repository
        self.bundles = bundles
        self.base_url = base_url

    async def load_item(self, item: Item, report: LoadReport) -> None:
        """Load one item (a resource or a Bundle), recording the outcome in `report`."""
        data = item.data
        if isinstance(data, FhirError):
            report.rejected.append(Rejection(item.source, data.outcome()))
            return
        if isinstance(data, dict) and data.get("resourceType") == "Bundle":
            kind = data.get("type")
            if kind in ("transaction", "batch"):
                await self._load_bundle(item, report)
                return
            for i, entry in enumerate(data.get("entry") or []):
                resource = entry.get("resource") if isinstance(entry, dict) else None
                if resource is not None:
                    await self.load_item(Item(f"{item.source}#entry[{i}]", resource), report)
            return
        await self._load_resource(item, report)

    async def _load_resource(self, item: Item, report: LoadReport) -> None:
        resource = item.data
        try:
            if not isinstance(resource, dict):
                raise Invalid("Not a FHIR resource (a JSON object)", code="structure")
            if resource.get("id"):
                result = await self.repository.update(
                    str(resource.get("resourceType")), str(resource["id"]), resource
                )
            else:
                result = await self.repository.create(resource)
        except FhirError as exc:
            report.rejected.append(Rejection(item.source, exc.outcome()))
            return
        if result.outcome == "created":
            report.created += 1
        elif result.outcome == "updated":
            report.updated += 1
        else:
            report.unchanged += 1

    async def _load_bundle(self, item: Item, report: LoadReport) -> None:
        bundle = _as_upserts(item.data)
        req = FhirRequest("POST", "", base_url=self.base_url, body=bundle, prefer_return="minimal")
        try:
            result = await self.bundles(req, self.repository)
        except FhirError as exc:
            report.rejected.append(Rejection(item.source, exc.outcome()))
            return
        for i, entry in enumerate(result.body.get("entry", [])):
            status = entry.get("response", {}).get("status", "")
            if status.startswith("201"):
                report.created += 1
            elif status.startswith("200"):
                report.updated += 1
            elif not status.startswith(("2", "3")):
                outcome = entry["response"].get("outcome") or operation_outcome(
                    [Issue(code="processing", diagnostics=f"entry failed with {status}")]
                )
                report.rejected.append(Rejection(f"{item.source}#entry[{i}]", outcome))

    async def load_paths(
        self, paths: list[Path], progress: Callable[[str], None] | None = None
    ) -> LoadReport:
        """Load every file under `paths`; `progress` is called once per file."""
        report = LoadReport()
        for path in iter_files(paths):
            for item in iter_items(path):
                await self.load_item(item, report)
            if progress is not None:
                progress(str(path))
        return report


def _as_upserts(bundle: dict[str, Any]) -> dict[str, Any]:
    """Turn unconditional POST entries whose resource has an id into `PUT Type/id`, so that
    loading the same Bundle twice changes nothing (urn:uuid references still resolve)."""
    entries = []
    for entry in bundle.get("entry") or []:
        request = entry.get("request") if isinstance(entry, dict) else None
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if (
            isinstance(request, dict)
            and isinstance(resource, dict)
            and request.get("method") == "POST"
            and not request.get("ifNoneExist")
            and resource.get("id")
            and resource.get("resourceType")
        ):
            url = f"{resource['resourceType']}/{resource['id']}"
            entries.append({**entry, "request": {**request, "method": "PUT", "url": url}})
            continue
        entries.append(entry)
    return {**bundle, "entry": entries}
