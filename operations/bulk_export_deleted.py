"""The `deleted` file of a `_since` export: one transaction Bundle with one `DELETE` entry per
resource deleted after `_since` (Bulk Data Access 2.0 export.md "Response - Complete Status",
`deleted`).

A deletion is reported when it is the resource's newest version up to the transaction time (a
resource deleted and written again before then is in `output` instead, if at all), and, at
Patient and Group level, when its last content was in the export's scope (`Scope.covers`).
`_typeFilter` is not applied to deleted resources (their content is gone). Deletions are read
from the history of each exported type, which a token confined to a compartment or to
granular scopes may not read: such a token is told so in the `error` file instead.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final

from fhir_server.model import StoredResource
from fhir_server.repository import Repository
from operations.bulk_export_files import NdjsonWriter
from operations.bulk_export_request import ExportRequest
from operations.bulk_export_scope import Scope
from resources.fhir_dates import format_instant

__all__ = ["Deletions"]

HISTORY_PAGE: Final = 1000


class Deletions:
    """Writes the deletions of one export.

    Args:
        repository: the caller's repository.
        request: the export (`since` set).
        scope: its compartment checks.
        horizon: the transaction time, µs UTC.
        heartbeat: awaited after each history page (yields; may raise to stop).
    """

    def __init__(
        self,
        repository: Repository,
        request: ExportRequest,
        scope: Scope,
        horizon: int,
        heartbeat: Callable[[], Awaitable[None]],
    ) -> None:
        self.repository = repository
        self.request = request
        self.scope = scope
        self.horizon = horizon
        self.heartbeat = heartbeat

    async def write(self, writer: NdjsonWriter, errors: NdjsonWriter) -> None:
        """One Bundle line per deletion to report, type by type."""
        since = self.request.since
        assert since is not None
        for rtype in self.request.types:
            reach = self.repository.policy.reach(rtype, "s")
            if reach is None or reach.confined:
                note = f"Deleted {rtype} resources are not reported to a confined access token"
                errors.write_issue("informational", note, "information")
                continue
            offset = 0
            while True:
                versions, _ = await self.repository.history(
                    "type",
                    rtype,
                    since=since + 1,
                    before=self.horizon + 1,
                    count=HISTORY_PAGE,
                    offset=offset,
                )
                for version in versions:
                    if version.deleted and await self._reported(version):
                        writer.write_json(self._bundle(version))
                await self.heartbeat()
                if len(versions) < HISTORY_PAGE:
                    break
                offset += HISTORY_PAGE

    async def _reported(self, marker: StoredResource) -> bool:
        lookup = self.repository.lookup
        rtype, id = marker.resource_type, marker.id
        current = await lookup.read(rtype, id)
        if current is None:
            return False
        if current.version_id != marker.version_id and current.last_updated <= self.horizon:
            return False  # written again before the transaction time
        newer = current.version_id - marker.version_id
        versions = await lookup.history("instance", rtype, id, count=newer + 2)
        if any(
            v.version_id > marker.version_id and v.last_updated <= self.horizon for v in versions
        ):
            return False
        if self.scope.level == "system":
            return True
        before = next((v for v in versions if v.version_id < marker.version_id and v.content), None)
        return before is not None and self.scope.covers(before)

    def _bundle(self, marker: StoredResource) -> dict[str, Any]:
        url = f"{marker.resource_type}/{marker.id}"
        return {
            "resourceType": "Bundle",
            "meta": {"lastUpdated": format_instant(marker.last_updated)},
            "type": "transaction",
            "entry": [
                {
                    "fullUrl": f"{self.repository.base_url}/{url}",
                    "request": {"method": "DELETE", "url": url},
                }
            ],
        }
