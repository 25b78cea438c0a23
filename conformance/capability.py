"""The CapabilityStatement served at `GET [base]/metadata`, generated from what is really
served: resource types, interactions, search parameters and operations (R4
capabilitystatement.html, http.html#capabilities)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fhir_server.messages import Operation
from resources.search_parameters import search_params
from resources.types import RESOURCE_TYPES

SOFTWARE_NAME = "fhir-scheduling-server"
SOFTWARE_VERSION = "0.1.0"
IHE_SCHEDULING_SERVER = (
    "https://profiles.ihe.net/ITI/Scheduling/CapabilityStatement/IHE.Scheduling.server"
)
"""The IHE ITI Scheduling Server requirements this server instantiates (IHE ITI-115 §2:3.115.5)."""
BULK_DATA_SERVER = "http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"
"""Bulk Data Access 2.0 (operations.md): instantiated when `$export` is registered."""
SUPPORTED_PARAM_TYPES = frozenset(
    {"string", "token", "date", "reference", "number", "quantity", "uri"}
)
TYPE_INTERACTIONS = (
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
)


def _resource_entry(rtype: str, operations: Mapping[str, Operation]) -> dict[str, Any]:
    params = [
        {
            "name": p.code,
            "definition": f"http://hl7.org/fhir/SearchParameter/{p.id}",
            "type": p.type,
        }
        for p in sorted(search_params(rtype).values(), key=lambda p: p.code)
        if p.type in SUPPORTED_PARAM_TYPES and p.expression is not None
    ]
    entry: dict[str, Any] = {
        "type": rtype,
        "profile": f"http://hl7.org/fhir/StructureDefinition/{rtype}",
        "interaction": [{"code": code} for code in TYPE_INTERACTIONS],
        "versioning": "versioned-update",
        "readHistory": True,
        "updateCreate": True,
        "conditionalCreate": True,
        "conditionalRead": "not-supported",
        "conditionalUpdate": True,
        "conditionalDelete": "single",
        "referencePolicy": ["literal", "logical"],
        "searchInclude": ["*"],
        "searchRevInclude": ["*"],
        "searchParam": params,
    }
    ops = [
        {"name": op.name, "definition": dict(op.type_definitions).get(rtype, _definition_url(op))}
        for op in operations.values()
        if (op.type_level or op.instance)
        and (op.resource_types is None or rtype in op.resource_types)
    ]
    if ops:
        entry["operation"] = ops
    return entry


def _definition_url(op: Operation) -> str:
    if op.definition and "url" in op.definition:
        return str(op.definition["url"])
    return f"http://hl7.org/fhir/OperationDefinition/{op.name}"


BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport"
BACKPORT_SERVER = f"{BACKPORT}/CapabilityStatement/backport-subscription-server-r4"
TOPIC_CANONICAL = f"{BACKPORT}/StructureDefinition/capabilitystatement-subscriptiontopic-canonical"
WEBSOCKET = "http://hl7.org/fhir/StructureDefinition/capabilitystatement-websocket"


def capability_statement(
    base_url: str,
    operations: Mapping[str, Operation],
    date: str = "2026-11-22",
    security: dict[str, Any] | None = None,
    topics: Sequence[str] = (),
    websocket_url: str | None = None,
) -> dict[str, Any]:
    """Build the CapabilityStatement (kind `instance`, fhirVersion 4.0.1, json and xml);
    `security` is `rest.security` (SMART on FHIR, `conformance.smart_configuration`) when
    authorization is on. `topics` are the SubscriptionTopic canonical URLs offered (listed on
    the Subscription resource with the Backport IG's
    `capabilitystatement-subscriptiontopic-canonical` extension, the IG's R4 server
    CapabilityStatement instantiated), `websocket_url` the websocket endpoint of the
    `websocket` channel (R4 `capabilitystatement-websocket` extension)."""
    statement: dict[str, Any] = {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": date,
        "publisher": "fhir-scheduling-server",
        "kind": "instance",
        "instantiates": [IHE_SCHEDULING_SERVER]
        + ([BULK_DATA_SERVER] if "export" in operations else []),
        "software": {"name": SOFTWARE_NAME, "version": SOFTWARE_VERSION},
        "implementation": {"description": "FHIR R4 scheduling server", "url": base_url},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "application/fhir+xml", "json", "xml"],
        "patchFormat": ["application/json-patch+json"],
        "rest": [
            {
                "mode": "server",
                "resource": [_resource_entry(t, operations) for t in sorted(RESOURCE_TYPES)],
                "interaction": [
                    {"code": "transaction"},
                    {"code": "batch"},
                    {"code": "history-system"},
                ],
                "searchParam": [
                    {"name": "_count", "type": "number"},
                    {"name": "_sort", "type": "string"},
                    {"name": "_total", "type": "token"},
                    {"name": "_summary", "type": "token"},
                    {"name": "_elements", "type": "string"},
                ],
                "operation": [
                    {"name": op.name, "definition": _definition_url(op)}
                    for op in operations.values()
                    if op.system
                ],
            }
        ],
    }
    if security is not None:
        statement["rest"][0]["security"] = security
    if topics:
        _announce_subscriptions(statement, topics, websocket_url)
    return statement


def _announce_subscriptions(
    statement: dict[str, Any], topics: Sequence[str], websocket_url: str | None
) -> None:
    """Topic-based Subscriptions (Backport IG "Conformance") on the CapabilityStatement."""
    statement["instantiates"].append(BACKPORT_SERVER)
    rest = statement["rest"][0]
    for entry in rest["resource"]:
        if entry["type"] == "Subscription":
            entry["supportedProfile"] = [f"{BACKPORT}/StructureDefinition/backport-subscription"]
            entry["extension"] = [{"url": TOPIC_CANONICAL, "valueCanonical": url} for url in topics]
    if websocket_url:
        rest.setdefault("extension", []).append({"url": WEBSOCKET, "valueUri": websocket_url})
