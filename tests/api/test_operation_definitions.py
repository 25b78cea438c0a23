"""The OperationDefinition and StructureDefinitions the server serves without storing them
(`conformance.operation_definitions`), over HTTP on every engine: read, listed in the
CapabilityStatement, a stored copy under another id, and the registry rerooted under the
configured base."""

from __future__ import annotations

import httpx
import pytest

from conformance import operation_definitions
from operations.scheduling.extensions import extension_url
from resources.validation import validate_resource
from tests.api.find_slots_helpers import put


async def test_read_operation_definition_served_without_storing(client: httpx.AsyncClient) -> None:
    r = await client.get("/OperationDefinition/slot-find-slots")
    assert r.status_code == 200
    definition = r.json()
    assert (
        definition["url"]
        == "https://fhir-scheduling.example.org/OperationDefinition/slot-find-slots"
    )
    assert definition["code"] == "find-slots" and definition["resource"] == ["Slot", "Schedule"]
    validate_resource(definition)
    names = [p["name"] for p in definition["parameter"]]
    assert names[:2] == ["start", "end"] and "_count" in names
    sd = await client.get("/StructureDefinition/schedule-availability")
    assert sd.status_code == 200 and sd.json()["url"] == extension_url("schedule-availability")
    assert (await client.get("/StructureDefinition/unknown")).status_code == 404
    metadata = (await client.get("/metadata")).json()
    (slot_entry,) = [e for e in metadata["rest"][0]["resource"] if e["type"] == "Slot"]
    ops = {op["name"]: op["definition"] for op in slot_entry["operation"]}
    assert ops["find-slots"] == definition["url"]


async def test_read_stored_operation_definition_other_id_still_works(
    client: httpx.AsyncClient,
) -> None:
    mine = {**operation_definitions.get("slot-find-slots"), "id": "copy", "url": "http://x.org/od"}  # type: ignore[dict-item]
    await put(client, mine)
    assert (await client.get("/OperationDefinition/copy")).json()["url"] == "http://x.org/od"


def test_operation_definitions_registry_reroots_under_configured_base() -> None:
    base = "https://scheduling.example.com/fhir/StructureDefinition"
    definition = operation_definitions.get("slot-find-slots", base)
    assert definition is not None
    assert (
        definition["url"]
        == "https://scheduling.example.com/fhir/OperationDefinition/slot-find-slots"
    )
    assert operation_definitions.by_code("find-slots", base) == definition
    assert "slot-find-slots" in [d["id"] for d in operation_definitions.all()]
    definition["name"] = "changed"
    assert operation_definitions.get("slot-find-slots")["name"] == "FindSlots"  # type: ignore[index]
    with pytest.raises(ValueError, match="id and a code"):
        operation_definitions.register({"resourceType": "OperationDefinition", "id": "x"})
