"""The Bulk Data Access 2.0 OperationDefinitions, as HL7 publishes them (bulk-data IG 2.0.0,
`input/resources/operationdefinition-{export,patient-export,group-export}.json`, copied
verbatim beside this module): `[base]/$export`, `[base]/Patient/$export`,
`[base]/Group/[id]/$export`. All three have the code `export`; the CapabilityStatement names
`patient-export` on Patient and `group-export` on Group (`Operation.type_definitions`)."""

from __future__ import annotations

import importlib.resources
from typing import Any, Final

import orjson

__all__ = ["DEFINITION_IDS", "definitions", "type_definitions"]

DEFINITION_IDS: Final = ("export", "patient-export", "group-export")
_BY_TYPE: Final = {"Patient": "patient-export", "Group": "group-export"}


def definitions() -> list[dict[str, Any]]:
    """Fresh copies of the three OperationDefinitions (FHIR JSON), in `DEFINITION_IDS` order."""
    folder = importlib.resources.files("conformance")
    out: list[dict[str, Any]] = []
    for definition_id in DEFINITION_IDS:
        raw = folder.joinpath(f"bulkdata-operationdefinition-{definition_id}.json").read_bytes()
        out.append(orjson.loads(raw))
    return out


def type_definitions() -> tuple[tuple[str, str], ...]:
    """`(resource type, canonical URL)` of the type- and instance-level definitions."""
    urls = {d["id"]: str(d["url"]) for d in definitions()}
    return tuple((rtype, urls[definition_id]) for rtype, definition_id in _BY_TYPE.items())
