"""Compile the official R4 search parameters and compartments into package data.

Output: `resources/search_parameters.json`.

Reads, from the shared data folder beside the repo (or the folder given as the only argument),
`hl7-r4/definitions/Bundle-searchParams.json`, `CompartmentDefinition-patient.json` and
`CompartmentDefinition-practitioner.json` (npm `hl7.fhir.r4.examples` 4.0.1, CC0-1.0), and writes
a compact JSON file with sorted keys, so that running it twice gives the same bytes:

    {"header": {...},
     "params": {ResourceType: {code: {"type", "expression", "targets", "id"}}},
     "compartments": {"Patient" | "Practitioner": {ResourceType: [param code, ...]}}}

`expression` keeps only the branches of the official union (split on top-level `|`) that start
with `Type.` or `(Type.`; for parameters based on `Resource`/`DomainResource` it stays as written
(`Resource.id`) and applies to every resource type (R4 `searchparameter.html`,
`compartmentdefinition.html`). Composite and special parameters are kept with their type so the
search parser can name them unsupported; `_text`, `_content` and `_query` have expression null.

Usage: `.venv/bin/python scripts/generate_definitions.py [DEFINITIONS_DIR]`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson

from resources.indexing import split_union

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DEFINITIONS = REPO_ROOT / ".." / "shared" / "data" / "hl7-r4" / "definitions"
OUTPUT = REPO_ROOT / "resources" / "search_parameters.json"

HEADER = {
    "source": "hl7.fhir.r4.examples 4.0.1 definitions: Bundle-searchParams.json, "
    "CompartmentDefinition-patient.json, CompartmentDefinition-practitioner.json",
    "licence": "CC0-1.0",
    "generator": "scripts/generate_definitions.py (do not edit by hand; re-run it)",
}
ABSTRACT_BASES = frozenset({"Resource", "DomainResource"})
# Resources that are not DomainResources, so `DomainResource` parameters skip them.
NON_DOMAIN_RESOURCES = frozenset({"Binary", "Bundle", "Parameters"})
COMPARTMENTS = {
    "Patient": "CompartmentDefinition-patient.json",
    "Practitioner": "CompartmentDefinition-practitioner.json",
}


def expression_for(expression: str | None, resource_type: str) -> str | None:
    """The part of an official expression that applies to `resource_type`, or None if none."""
    if expression is None:
        return None
    kept = [
        branch
        for branch in split_union(expression)
        if branch.startswith((f"{resource_type}.", f"({resource_type}."))
    ]
    return " | ".join(kept) if kept else None


def resource_types(params: list[dict[str, Any]], compartments: list[dict[str, Any]]) -> list[str]:
    """Every R4 resource type: named in a SearchParameter base or a CompartmentDefinition."""
    names: set[str] = set()
    for param in params:
        names.update(param["base"])
    for compartment in compartments:
        names.update(entry["code"] for entry in compartment["resource"])
    return sorted(names - ABSTRACT_BASES)


def build(definitions: Path) -> dict[str, Any]:
    """Build the document written to `resources/search_parameters.json`.

    Raises:
        FileNotFoundError: a definitions file is missing.
        ValueError: a parameter's expression has no branch for one of its concrete bases.
    """
    bundle = orjson.loads((definitions / "Bundle-searchParams.json").read_bytes())
    params = [entry["resource"] for entry in bundle["entry"]]
    compartment_docs = {
        name: orjson.loads((definitions / filename).read_bytes())
        for name, filename in COMPARTMENTS.items()
    }
    types = resource_types(params, list(compartment_docs.values()))
    by_type: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in types}
    for param in params:
        official = param.get("expression")
        for base in param["base"]:
            if base in ABSTRACT_BASES:
                applies = [t for t in types if base == "Resource" or t not in NON_DOMAIN_RESOURCES]
                expression = official
            else:
                applies = [base]
                expression = expression_for(official, base)
                if expression is None and len(param["base"]) == 1:
                    # A single-base expression is all for that type even when it is relative
                    # (`InsurancePlan-name` is `name | alias`) or a bare composite base.
                    expression = official
                if official is not None and expression is None:
                    raise ValueError(f"{param['id']}: no branch of {official!r} for {base}")
            for resource_type in applies:
                if param["code"] in by_type[resource_type]:
                    raise ValueError(f"{param['id']}: {resource_type} already has that code")
                by_type[resource_type][param["code"]] = {
                    "type": param["type"],
                    "expression": expression,
                    "targets": list(param.get("target", [])),
                    "id": param["id"],
                }
    compartments = {
        name: {
            entry["code"]: list(entry["param"]) for entry in doc["resource"] if entry.get("param")
        }
        for name, doc in compartment_docs.items()
    }
    return {"header": HEADER, "params": by_type, "compartments": compartments}


def main(argv: list[str]) -> int:
    """Write the definitions file; `argv[1]`, when given, is the definitions folder."""
    definitions = Path(argv[1]) if len(argv) > 1 else DEFAULT_DEFINITIONS
    document = build(definitions.resolve())
    OUTPUT.write_bytes(orjson.dumps(document, option=orjson.OPT_SORT_KEYS) + b"\n")
    count = sum(len(codes) for codes in document["params"].values())
    print(f"wrote {OUTPUT.relative_to(REPO_ROOT)}: {len(document['params'])} types, {count} params")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
