"""AuditEvents built by the scheduling operations are valid R4 resources, so they are stored
without being validated again on every hold and book."""

from __future__ import annotations

import itertools

import pytest

from operations.scheduling.audit import audit_event
from resources.validation import validate_resource


@pytest.mark.parametrize(
    ("transaction", "action", "outcome", "patients", "description"),
    list(
        itertools.product(
            ["ITI-116", "ITI-117"],
            ["C", "U"],
            ["0", "4"],
            [[], ["p1"], ["p1", "p2"]],
            [None, "the time was taken"],
        )
    ),
)
def test_audit_event_every_shape_validates(
    transaction: str, action: str, outcome: str, patients: list[str], description: str | None
) -> None:
    event = audit_event(
        transaction=transaction,  # type: ignore[arg-type]
        action=action,  # type: ignore[arg-type]
        appointment_id="a-1",
        patients=patients,
        base_url="http://127.0.0.1:8080/fhir",
        requestor="Practitioner/p1",
        outcome=outcome,  # type: ignore[arg-type]
        description=description,
    )
    validate_resource(event, expected_type="AuditEvent")
    assert event["entity"][-1]["what"] == {"reference": "Appointment/a-1"}
