"""The request-scoped repository: the only way into the store (ARCHITECTURE.md "One way in").

`RepositoryFactory` is built once at start-up over the started store and the settings; features
register their hooks on it (`rules` for a type's write rules, `virtual` for computed resources).
Each request gets `factory.for_request(policy, base_url)`, each background job
`factory.for_job(name)`: a `Repository` that checks the caller's policy on every read, search,
include and write, resolves references against this server's bases, runs the write rules of
the type on every path, and commits atomically. Nothing else holds the store.

Modules: `base` (state, access enforcement), `reads`, `writes` (prepare), `commit` (apply),
`rest`, `prepared` (write values), `includes` (`_include`), `lookup` (unchecked reads for the
server's own rules; records), `services` (hook protocols).
"""

from __future__ import annotations

import dataclasses

from fhir_server.access import AccessPolicy, SystemPolicy
from fhir_server.config import Settings
from fhir_server.repository.commit import MAX_RETRIES
from fhir_server.repository.includes import SearchResult
from fhir_server.repository.lookup import Lookup, Records
from fhir_server.repository.prepared import Outcome, Prepared, WriteResult, patched
from fhir_server.repository.reads import check_type, criteria_key, load_json
from fhir_server.repository.rest import RestWrites
from fhir_server.repository.services import (
    OwnerReader,
    PlannedWrite,
    RulesPlan,
    Services,
    VirtualReader,
    WriteRules,
)
from fhir_server.repository.yielding import yielding
from fhir_server.storage.base import ResourceStore

__all__ = [
    "MAX_RETRIES",
    "Lookup",
    "Outcome",
    "OwnerReader",
    "PlannedWrite",
    "Prepared",
    "Records",
    "Repository",
    "RepositoryFactory",
    "RulesPlan",
    "SearchResult",
    "VirtualReader",
    "WriteResult",
    "WriteRules",
    "check_type",
    "criteria_key",
    "load_json",
    "patched",
]


class Repository(RestWrites):
    """FHIR interactions for one request or job (reads in `reads`; writes prepared in
    `writes`, committed in `commit`, REST in `rest`; access enforcement in `base`). Build it
    with `RepositoryFactory`."""


class RepositoryFactory:
    """Builds the repositories of one server.

    Args:
        store: the started store; from here on reachable only through repositories.
        settings: the server settings.

    Attributes:
        rules: write rules by resource type (`WriteRules`), e.g. Appointment's booking rules.
        virtual: readers of computed resources by type (`VirtualReader`).
        owners: owner readers of the owned types (`OwnerReader`, `access.OWNED_TYPES`).
    """

    def __init__(self, store: ResourceStore, settings: Settings) -> None:
        self._services = Services(store, settings)
        # the same rules, readers and owners (shared dicts) over a store letting requests go
        # first (`yielding.py`)
        self._job_services = dataclasses.replace(self._services, store=yielding(store))
        self.rules = self._services.rules
        self.virtual = self._services.virtual
        self.owners = self._services.owners

    @property
    def settings(self) -> Settings:
        """The server settings."""
        return self._services.settings

    def for_request(self, policy: AccessPolicy, base_url: str = "") -> Repository:
        """The repository of one request: `policy` from its token (a `SystemPolicy` when
        authorization is off), `base_url` the FHIR base it came in on."""
        return Repository(self._services, policy, base_url)

    def for_job(self, name: str, base_url: str = "") -> Repository:
        """The repository of a background job (sweeper, dispatcher, messaging, purges),
        acting as the server itself (`SystemPolicy(name)`: `name` is the requestor its audit
        records name). Its store calls let requests go first (`yielding.py`)."""
        return Repository(self._job_services, SystemPolicy(name), base_url)

    def for_server(self, name: str, base_url: str = "") -> Repository:
        """The repository of the server's own work done while a caller waits (the
        authorization server, health and metrics, waitlist links, websocket bindings,
        start-up, the command line): `SystemPolicy(name)`, store calls at full speed."""
        return Repository(self._services, SystemPolicy(name), base_url)
