"""The AuditEvent of every hold, book, move and cancel (SCHEDULING.md "Never double-book": "Audit
every hold, book and cancel as an AuditEvent (ITI-116/117 subtypes)").

Shaped as the Scheduling Server records it in IHE Scheduling (`IHE.Scheduling.Hold.Audit.Recipient`,
`IHE.Scheduling.Book.Audit.Recipient`; IHE ITI-117 §2:3.117.6.1.2), which build on the IHE Basic
Audit Log Patterns (BALP) `PatientCreate`: type `rest`, subtypes the RESTful interaction and
`urn:ihe:event-type-code#ITI-116|ITI-117`, a client agent (DCM 110153, the requestor) and a server
agent (DCM 110152), one `patient` entity per Patient and the Appointment as `data` entity.
The requestor is the SMART token's user (`fhirUser`) or client, `anonymous` when
authorization is off, or the server's job (`Repository.policy.requestor()`).

`override_event` records a booking an EHR made outside an actor's availability (SCHEDULING.md
"Booking rules on every path": "every override is an AuditEvent").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from resources.fhir_dates import format_instant, now_us

_DCM = "http://dicom.nema.org/resources/ontology/DCM"
_EVENTS = {"ITI-116": "Hold Appointment", "ITI-117": "Book Appointment"}
OVERRIDE_SYSTEM = "urn:fhir-scheduling-server:audit-event"
"""The code system of our own AuditEvent subtypes."""


def audit_event(
    *,
    transaction: Literal["ITI-116", "ITI-117"],
    action: Literal["C", "U"],
    appointment_id: str,
    patients: Sequence[str],
    base_url: str,
    requestor: str,
    outcome: Literal["0", "4"] = "0",
    description: str | None = None,
) -> dict[str, Any]:
    """An AuditEvent of one hold, book, move or cancel, as the Scheduling Server records it
    (IHE `IHE.Scheduling.Hold/Book.Audit.Recipient`, built on BALP `PatientCreate`).

    Args:
        transaction: `ITI-116` (hold, hold expiry) or `ITI-117` (book, move, cancel).
        action: `C` for a hold or a new booking, `U` for a move or a cancel.
        appointment_id: the Appointment concerned (entity `data`).
        patients: Patient ids (one `patient` entity each).
        base_url: this server's FHIR base (the server agent and source).
        outcome: `0` success, `4` minor failure (e.g. the time was taken).
        requestor: who asked: the request's token holder (`anonymous` with authorization
            off) or the server's job (`Repository.policy.requestor()`).
        description: `outcomeDesc`, e.g. why it failed.
    """
    interaction = "create" if action == "C" else "update"
    entities: list[dict[str, Any]] = [
        {
            "what": {"reference": f"Patient/{pid}"},
            "type": _coding("http://terminology.hl7.org/CodeSystem/audit-entity-type", "1"),
            "role": _coding("http://terminology.hl7.org/CodeSystem/object-role", "1"),
        }
        for pid in patients
    ]
    entities.append(
        {
            "what": {"reference": f"Appointment/{appointment_id}"},
            "type": _coding("http://terminology.hl7.org/CodeSystem/audit-entity-type", "2"),
            "role": _coding("http://terminology.hl7.org/CodeSystem/object-role", "4"),
        }
    )
    server = base_url or "fhir-scheduling-server"
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "type": _coding("http://terminology.hl7.org/CodeSystem/audit-event-type", "rest"),
        "subtype": [
            _coding("http://hl7.org/fhir/restful-interaction", interaction),
            {**_coding("urn:ihe:event-type-code", transaction), "display": _EVENTS[transaction]},
        ],
        "action": action,
        "recorded": format_instant(now_us()),
        "outcome": outcome,
        "agent": [
            {
                "type": {"coding": [{**_coding(_DCM, "110153"), "display": "Source Role ID"}]},
                "who": {"display": requestor},
                "requestor": True,
            },
            {
                "type": {"coding": [{**_coding(_DCM, "110152"), "display": "Destination Role ID"}]},
                "who": {"display": server},
                "requestor": False,
                "network": {"address": server, "type": "5"},
            },
        ],
        "source": {
            "site": server,
            "observer": {"display": server},
            "type": [_coding("http://terminology.hl7.org/CodeSystem/security-source-type", "4")],
        },
        "entity": entities,
    }
    if description:
        event["outcomeDesc"] = description
    return event


def _coding(system: str, code: str) -> dict[str, str]:
    return {"system": system, "code": code}


def override_event(
    *,
    appointment_id: str,
    patients: Sequence[str],
    base_url: str,
    requestor: str,
    description: str,
) -> dict[str, Any]:
    """An AuditEvent of a booking or hold written outside an actor's availability by a caller
    allowed to (an EHR's `user/`/`system/` REST write, or `$book` with `override-availability`),
    shaped like `audit_event` with our subtype `availability-override` and the reason in
    `outcomeDesc`.
    """
    event = audit_event(
        transaction="ITI-117",
        action="C",
        appointment_id=appointment_id,
        patients=patients,
        base_url=base_url,
        requestor=requestor,
        description=description,
    )
    override = {
        "system": OVERRIDE_SYSTEM,
        "code": "availability-override",
        "display": "Booked outside availability",
    }
    event["subtype"] = [*event["subtype"], override]
    return event
