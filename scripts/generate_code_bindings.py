"""Compile the R4 code lists that widen or switch off the R4B models' `enum_values`.

Output: `resources/code_bindings.json`, read by `resources.code_bindings`.

The `fhir.resources.R4B` models carry, on each `code` field with a required binding, the allowed
codes as `json_schema_extra["enum_values"]`. Those lists come from the R4B (4.3.0) element's
short description, so a few of them are cut short (`["registered", "preliminary", "final",
"amended", "+"]` for `Observation.status`) and some value sets differ from R4 (4.0.1), the
version we serve. This script compares every such list with the `enum` of the same element in
the official R4 JSON schema (`hl7-r4/definitions/fhir.r4.schema.json`, HL7 FHIR R4, CC0) and
writes, keyed by R4B model class and JSON name (`Observation.status`,
`EncounterStatusHistory.status`, `QuestionnaireItem.type`):

    {"header": {...},
     "codes": {key: [code, ...]},      # R4 enum, then R4B-only codes: replaces enum_values
     "unchecked": {key: reason}}      # enum_values not to be enforced at all

* R4 enum not a subset of enum_values -> `codes`: the union (R4 order first), markers dropped.
* enum_values cut short (`+`, `etc.`) and no R4 enum -> `unchecked` (we cannot list the codes).
* `NOT_REQUIRED` below -> `unchecked`: bindings that are not required in R4, or not enumerable.
* Anything else: enum_values are enforced as they are.

`NOT_REQUIRED` was found by comparing every enum_values list, once, with the R4
StructureDefinitions and ValueSets (npm `hl7.fhir.r4.examples` 4.0.1): apart from the lists cut
short, every other list equals its R4 required value set (R4 `terminologies.html#required`).
The R4 JSON schema misses the enums of shared value sets (`request-status`, `event-status`,
`fm-status`) and of repeating codes, which is why enum_values stay the primary source.

Usage: `.venv/bin/python scripts/generate_code_bindings.py [SCHEMA_FILE]`.
"""

from __future__ import annotations

import sys
import types
import typing
from pathlib import Path
from typing import Any

import orjson
from fhir.resources.R4B import get_fhir_model_class
from fhir_core.types import FhirBase

from resources.types import RESOURCE_TYPES

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SCHEMA = (
    REPO_ROOT / ".." / "shared" / "data" / "hl7-r4" / "definitions" / "fhir.r4.schema.json"
)
OUTPUT = REPO_ROOT / "resources" / "code_bindings.json"

HEADER = {
    "source": "HL7 FHIR R4 (4.0.1) JSON schema fhir.r4.schema.json (enum lists), compared "
    "with the enum_values of fhir.resources R4B models",
    "licence": "CC0-1.0 (HL7 FHIR R4)",
    "generator": "scripts/generate_code_bindings.py (do not edit by hand; re-run it)",
}
MARKERS = frozenset({"+", "etc."})
"""Words in enum_values that mean the R4B short description listed only some codes."""

NOT_REQUIRED = {
    "Expression.language": "R4 binding is extensible (expression-language; datatypes.html"
    "#Expression): other media types are allowed, although the R4 JSON schema lists three",
    "CapabilityStatement.format": "R4 binding is required to mimetypes (BCP 13), which cannot "
    "be listed; enum_values hold words of the short description (formats, json, ttl, mime)",
}


def _model_of(annotation: Any) -> Any:
    """The FHIR model class inside `Optional[List[X]]`, or None for primitives."""
    while typing.get_origin(annotation) in (typing.Union, types.UnionType, list):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) != 1:
            return None
        annotation = args[0]
    if isinstance(annotation, type) and issubclass(annotation, FhirBase):
        return annotation.get_model_klass()
    return None


def _schema_enum(prop: dict[str, Any]) -> list[str] | None:
    enum = prop.get("enum", prop.get("items", {}).get("enum"))
    return list(enum) if enum is not None else None


def _schema_ref(prop: dict[str, Any]) -> str | None:
    ref = prop.get("$ref", prop.get("items", {}).get("$ref"))
    return ref.rsplit("/", 1)[-1] if isinstance(ref, str) else None


def _r4_enums(definitions: dict[str, Any]) -> dict[str, list[str] | None]:
    """For each R4B `Model.element` with enum_values and an R4 element: the R4 enum or None.

    Walks each R4 schema definition that names an R4B model (resources and datatypes) beside
    its model; backbone elements (`Appointment_Participant`) are reached through their parent.

    Raises:
        ValueError: a model class would match two different R4 definitions.
    """
    matched: dict[Any, str] = {}
    out: dict[str, list[str] | None] = {}

    def walk(model: Any, name: str) -> None:
        matched[model] = name
        properties: dict[str, Any] = definitions[name].get("properties", {})
        for field_name, info in model.model_fields.items():
            alias = info.alias or field_name
            prop = properties.get(alias)
            if prop is None:
                continue  # an R4B-only element
            extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
            if "enum_values" in extra:
                out[f"{model.__name__}.{alias}"] = _schema_enum(prop)
            child, ref = _model_of(info.annotation), _schema_ref(prop)
            if child is None or ref is None or "_" not in ref:
                continue  # a primitive, or a datatype walked from its own definition
            if child not in matched:
                walk(child, ref)
            elif matched[child] != ref:
                raise ValueError(f"{child.__name__} matches R4 {matched[child]} and {ref}")

    for name in sorted(definitions):
        if "_" in name or "properties" not in definitions[name]:
            continue
        try:
            model = get_fhir_model_class(name)
        except (KeyError, ValueError):
            continue  # an R4-only resource type, or a primitive
        if model not in matched:
            walk(model, name)
    return out


def _enum_values() -> dict[str, list[str]]:
    """Every `Model.element` enum_values list of the R4B models reached by the R4 walk."""
    out: dict[str, list[str]] = {}
    seen: set[Any] = set()

    def visit(model: Any) -> None:
        if model in seen:
            return
        seen.add(model)
        for field_name, info in model.model_fields.items():
            extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
            if isinstance(extra.get("enum_values"), list):
                out[f"{model.__name__}.{info.alias or field_name}"] = list(extra["enum_values"])
            child = _model_of(info.annotation)
            if child is not None:
                visit(child)

    for name in sorted(RESOURCE_TYPES):
        visit(get_fhir_model_class(name))
    return out


def build(schema_file: Path) -> dict[str, Any]:
    """Build the document written to `resources/code_bindings.json`.

    Raises:
        FileNotFoundError: the schema file is missing.
        ValueError: the schema and the models disagree on structure (see `_r4_enums`).
    """
    definitions = orjson.loads(schema_file.read_bytes())["definitions"]
    r4 = _r4_enums(definitions)
    codes: dict[str, list[str]] = {}
    unchecked: dict[str, str] = dict(NOT_REQUIRED)
    for key, enum_values in sorted(_enum_values().items()):
        if key in NOT_REQUIRED:
            continue
        r4_enum = r4.get(key)
        cut_short = not MARKERS.isdisjoint(enum_values)
        if r4_enum is not None and (cut_short or not set(r4_enum) <= set(enum_values)):
            extra = [c for c in enum_values if c not in MARKERS and c not in r4_enum]
            codes[key] = r4_enum + extra
        elif cut_short:
            unchecked[key] = (
                "R4B enum_values are cut short and the R4 JSON schema lists no codes: "
                f"{', '.join(enum_values)}"
            )
    return {"header": HEADER, "codes": codes, "unchecked": dict(sorted(unchecked.items()))}


def main(argv: list[str]) -> int:
    """Write the code bindings file; `argv[1]`, when given, is the R4 JSON schema file."""
    schema_file = Path(argv[1]) if len(argv) > 1 else DEFAULT_SCHEMA
    document = build(schema_file.resolve())
    OUTPUT.write_bytes(orjson.dumps(document, option=orjson.OPT_SORT_KEYS) + b"\n")
    print(
        f"wrote {OUTPUT.relative_to(REPO_ROOT)}: {len(document['codes'])} widened, "
        f"{len(document['unchecked'])} unchecked"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
