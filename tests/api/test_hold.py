"""`Appointment/$hold` (IHE ITI-116) over HTTP on every engine: a proposal held with its
`Expires` header and AuditEvent, held resources filled from a rule Slot, and the rows of
SCHEDULING.md "Errors" that `$hold` shares with `$book` (405, 404, 400, 409, 422)."""

from __future__ import annotations

import email.utils

import httpx
import pytest

from operations.scheduling.claims import HOLD_EXPIRES_URL
from resources.fhir_dates import now_us, parse_instant
from tests.api.booking_helpers import (
    appointment,
    assert_outcome,
    assert_taken,
    at,
    audits,
    count,
    first_proposal,
    hold,
    parameters,
    read,
    ref,
    the_appointment,
)
from tests.api.booking_helpers import clinic as clinic  # noqa: PLC0414 (the fixture)


async def test_hold_proposal_returns_pending_with_expires_header(
    clinic: httpx.AsyncClient,
) -> None:
    proposal = await first_proposal(clinic)
    before = now_us()
    response = await hold(clinic, ref(proposal["id"]))
    held = the_appointment(response)
    assert held["id"] == proposal["id"]
    assert held["status"] == "pending"
    assert (held["start"], held["end"]) == (proposal["start"], proposal["end"])
    assert "tag" not in held["meta"]
    (expiry,) = [e["valueInstant"] for e in held["extension"] if e["url"] == HOLD_EXPIRES_URL]
    expires = parse_instant(expiry)
    assert before + 299_000_000 <= expires <= now_us() + 300_000_000
    header = email.utils.parsedate_to_datetime(response.headers["Expires"])
    assert abs(header.timestamp() - expires / 1e6) < 1
    assert await audits(clinic, held["id"]) == [("C", "ITI-116", "0")]
    assert await count(clinic, "Appointment", patient="Patient/pat") == 1


@pytest.mark.parametrize("operation", ["$hold", "$book"])
async def test_hold_or_book_by_get_returns_405(client: httpx.AsyncClient, operation: str) -> None:
    r = await client.get(f"/Appointment/{operation}", params={"appointment-reference": "x"})
    assert_outcome(r, 405, "not-supported")


@pytest.mark.parametrize("operation", ["$hold", "$book"])
async def test_hold_or_book_unknown_reference_returns_404(
    clinic: httpx.AsyncClient, operation: str
) -> None:
    r = await clinic.post(f"/Appointment/{operation}", json=parameters(ref("nope")))
    assert_outcome(r, 404, "not-found")


@pytest.mark.parametrize("operation", ["$hold", "$book"])
async def test_hold_or_book_without_target_returns_400(
    clinic: httpx.AsyncClient, operation: str
) -> None:
    r = await clinic.post(f"/Appointment/{operation}", json=parameters(("comment", "hi")))
    assert_outcome(r, 400, "required")


async def test_hold_taken_time_returns_409_fatal_and_writes_nothing(
    clinic: httpx.AsyncClient,
) -> None:
    first = await first_proposal(clinic)
    second = await first_proposal(clinic, **{"patient-reference": "Patient/pat2"})
    assert (first["start"], first["end"]) == (second["start"], second["end"])
    the_appointment(await hold(clinic, ref(first["id"])))
    assert_taken(await hold(clinic, ref(second["id"])))
    assert (await read(clinic, second["id"]))["meta"]["versionId"] == "1"
    assert await audits(clinic, second["id"]) == []


async def test_hold_already_held_returns_409(clinic: httpx.AsyncClient) -> None:
    proposal = await first_proposal(clinic)
    the_appointment(await hold(clinic, ref(proposal["id"])))
    assert_outcome(await hold(clinic, ref(proposal["id"])), 409, "conflict")


async def test_hold_booked_appointment_returns_409_illegal_status_change(
    clinic: httpx.AsyncClient,
) -> None:
    created = await clinic.post("/Appointment", json=appointment(at("09:00"), at("09:30")))
    r = await hold(clinic, ref(created.json()["id"]))
    assert_outcome(r, 409, "business-rule")


async def test_hold_resource_with_rule_slot_fills_time_and_actors(
    clinic: httpx.AsyncClient,
) -> None:
    slots = await clinic.get(
        "/Slot/$find-slots", params={"schedule": "s-room", "start": at("10:00"), "end": at("11:00")}
    )
    slot_id = slots.json()["entry"][0]["resource"]["id"]
    resource = {
        "resourceType": "Appointment",
        "status": "proposed",
        "slot": [{"reference": f"Slot/{slot_id}"}],
        "participant": [{"actor": {"reference": "Patient/pat"}, "status": "accepted"}],
    }
    held = the_appointment(await hold(clinic, ("appointment-resource", resource)))
    assert (held["status"], held["start"], held["end"]) == ("pending", at("10:00"), at("10:30"))
    assert {"reference": "Location/room"} in [p["actor"] for p in held["participant"]]
    assert (await clinic.get(f"/Slot/{slot_id}")).status_code == 404  # held: no longer free


async def test_hold_resource_without_actor_or_slot_returns_422(clinic: httpx.AsyncClient) -> None:
    resource = appointment(at("09:00"), at("09:30"), "proposed", actors=())
    r = await hold(clinic, ("appointment-resource", resource))
    assert_outcome(r, 422, "business-rule")
