"""Our OperationDefinitions (R4 4.0.1), built in code, and the registry that serves them.

SCHEDULING.md "Operations": `$find-slots` is ours (`slot-find-slots`, below); the IHE ITI
Scheduling operations (`appointment-find`, `appointment-hold`, `appointment-book`) are
registered here too, with the IHE parameter names. Each definition is kept with its canonical
`url` under `DEFAULT_ROOT`; `get`/`all` re-root it under the server's configured canonical base
(`Settings.extension_base` without its `/StructureDefinition`), so one server names them
consistently. The server stores them at start-up (`fhir_server.app.publish_conformance`), so
`GET [base]/OperationDefinition/{id}` and `OperationDefinition?url=` find them like any
resource, and `with_definitions` makes the CapabilityStatement point to them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Final

import orjson

from fhir_server.config import DEFAULT_CANONICAL_ROOT, canonical_root
from fhir_server.messages import Operation

__all__ = [
    "DEFAULT_ROOT",
    "OPERATION_DEFINITIONS",
    "all",
    "by_code",
    "canonical_root",
    "get",
    "register",
    "with_definitions",
]

DEFAULT_ROOT: Final = DEFAULT_CANONICAL_ROOT
"""The server-neutral canonical root of our conformance resources (`{root}/{Type}/{id}`)."""
OPERATION_DEFINITIONS: dict[str, dict[str, Any]] = {}
"""Every registered OperationDefinition by id, with its `url` under `DEFAULT_ROOT`."""


def register(definition: Mapping[str, Any]) -> dict[str, Any]:
    """Add (or replace) an OperationDefinition, keyed by its `id`.

    Its `url` defaults to `{DEFAULT_ROOT}/OperationDefinition/{id}`.

    Returns:
        The stored copy.

    Raises:
        ValueError: not an OperationDefinition, or without `id` or `code`.
    """
    if definition.get("resourceType") != "OperationDefinition":
        raise ValueError("only OperationDefinitions can be registered")
    if not definition.get("id") or not definition.get("code"):
        raise ValueError("an OperationDefinition needs an id and a code")
    stored: dict[str, Any] = orjson.loads(orjson.dumps(definition))
    stored.setdefault("url", f"{DEFAULT_ROOT}/OperationDefinition/{stored['id']}")
    OPERATION_DEFINITIONS[stored["id"]] = stored
    return stored


def get(definition_id: str, extension_base: str | None = None) -> dict[str, Any] | None:
    """A fresh copy of the definition `definition_id`, its `url` under the canonical root of
    `extension_base` (ours only; others keep theirs), or None when there is none."""
    found = OPERATION_DEFINITIONS.get(definition_id)
    if found is None:
        return None
    copy: dict[str, Any] = orjson.loads(orjson.dumps(found))
    root = canonical_root(extension_base)
    if copy["url"].startswith(DEFAULT_ROOT + "/") and root != DEFAULT_ROOT:
        copy["url"] = root + copy["url"][len(DEFAULT_ROOT) :]
    return copy


def all(extension_base: str | None = None) -> list[dict[str, Any]]:
    """Fresh copies of every registered definition (see `get`), by id."""
    return [d for key in sorted(OPERATION_DEFINITIONS) if (d := get(key, extension_base))]


def by_code(code: str, extension_base: str | None = None) -> dict[str, Any] | None:
    """The definition of the operation named `code` (without `$`), or None (see `get`)."""
    for key, definition in sorted(OPERATION_DEFINITIONS.items()):
        if definition.get("code") == code:
            return get(key, extension_base)
    return None


def with_definitions(
    operations: Mapping[str, Operation], extension_base: str | None = None
) -> dict[str, Operation]:
    """The operations, each whose name has a registered definition (`by_code`) carrying it,
    so the CapabilityStatement's `operation.definition` names our canonical URL."""
    out: dict[str, Operation] = {}
    for name, op in operations.items():
        definition = by_code(name, extension_base)
        out[name] = op if definition is None else replace(op, definition=definition)
    return out


def _param(
    name: str,
    kind: str,
    documentation: str,
    *,
    minimum: int = 0,
    maximum: str = "*",
    use: str = "in",
    search_type: str | None = None,
    targets: tuple[str, ...] = (),
) -> dict[str, Any]:
    """One `OperationDefinition.parameter` (R4: a token input is a string with searchType)."""
    param: dict[str, Any] = {"name": name, "use": use, "min": minimum, "max": maximum}
    param["documentation"] = documentation
    param["type"] = kind
    if targets:
        param["targetProfile"] = [f"http://hl7.org/fhir/StructureDefinition/{t}" for t in targets]
    if search_type:
        param["searchType"] = search_type
    return param


_ACTORS: Final = ("Practitioner", "PractitionerRole", "Location", "HealthcareService", "Device")

SLOT_FIND_SLOTS: Final = register(
    {
        "resourceType": "OperationDefinition",
        "id": "slot-find-slots",
        "url": f"{DEFAULT_ROOT}/OperationDefinition/slot-find-slots",
        "version": "0.1.0",
        "name": "FindSlots",
        "title": "Find free Slots",
        "status": "active",
        "kind": "operation",
        "date": "2026-11-22",
        "publisher": "FHIR scheduling server",
        "description": (
            "Lists the free Slots of Schedules in a time window: Slots stored with status free "
            "that still have a seat, and Slots derived from weekly availability rules (the "
            "Schedule's availability extension, PractitionerRole.availableTime, "
            "HealthcareService.availableTime or Location.hoursOfOperation), without blocked, "
            "booked or held time, within the planning horizon of active Schedules."
        ),
        "affectsState": False,
        "code": "find-slots",
        "comment": (
            "Invoked at type level on Slot (`Slot/$find-slots`, any Schedule) and at instance "
            "level on Schedule (`Schedule/[id]/$find-slots`, that Schedule only); the other two "
            "combinations are not supported. GET or POST. Repeats of one parameter are ORed, "
            "different parameters ANDed. Rule-derived Slots carry deterministic ids that "
            "`GET Slot/[id]` and `Appointment/$book` resolve while the time is free. Errors: "
            "400 for a missing or malformed parameter, a time without a UTC offset, end not "
            "after start, or a window over 31 days."
        ),
        "resource": ["Slot", "Schedule"],
        "system": False,
        "type": True,
        "instance": True,
        "parameter": [
            _param(
                "start",
                "dateTime",
                "Start of the window (inclusive); seconds and a UTC offset are required.",
                minimum=1,
                maximum="1",
            ),
            _param(
                "end",
                "dateTime",
                "End of the window (exclusive); after start, at most 31 days later.",
                minimum=1,
                maximum="1",
            ),
            _param(
                "schedule",
                "Reference",
                "A Schedule (reference or id) whose Slots are wanted.",
                targets=("Schedule",),
            ),
            _param(
                "actor",
                "Reference",
                "Who or what is booked; a Practitioner also matches its PractitionerRoles.",
                targets=_ACTORS,
            ),
            _param(
                "service-type",
                "string",
                "A service type as system|code, on the Schedule or its service actors.",
                search_type="token",
            ),
            _param(
                "specialty",
                "string",
                "A specialty as system|code, on the Schedule or its actors.",
                search_type="token",
            ),
            _param(
                "location",
                "Reference",
                "A Location that is an actor of the Schedule or the site of one.",
                targets=("Location",),
            ),
            _param(
                "organization",
                "Reference",
                "An Organization the Schedule's actors belong to.",
                targets=("Organization",),
            ),
            _param(
                "duration",
                "positiveInt",
                "Visit length in minutes for rule-derived Slots (default: the Schedule's).",
                maximum="1",
            ),
            _param(
                "_count",
                "integer",
                "How many Slots to return (default 100, at most 1000).",
                maximum="1",
            ),
            _param(
                "return",
                "Bundle",
                "A searchset Bundle: the free Slots (match) and their Schedules (include); "
                "total counts every free Slot found.",
                minimum=1,
                maximum="1",
                use="out",
            ),
        ],
    }
)
"""`Slot/$find-slots`, `Schedule/[id]/$find-slots` (SCHEDULING.md "Operations")."""
