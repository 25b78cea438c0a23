"""`Appointment/$book` (IHE ITI-117) over HTTP on every engine: proposals and holds booked
with their AuditEvents, idempotent retries, patients added, `If-Match`, expired holds, atomic
moves, cancellations and reschedules, and every row of SCHEDULING.md "Errors" for `$book`."""

from __future__ import annotations

import httpx

from tests.api.booking_helpers import (
    LAPSED,
    appointment,
    assert_outcome,
    assert_taken,
    at,
    audits,
    book,
    count,
    first_proposal,
    hold,
    read,
    ref,
    requestor_of,
    the_appointment,
)
from tests.api.booking_helpers import clinic as clinic  # noqa: PLC0414 (the fixture)


async def test_book_proposal_returns_booked_and_audits(clinic: httpx.AsyncClient) -> None:
    proposal = await first_proposal(clinic)
    booked = the_appointment(await book(clinic, ref(proposal["id"]), ("comment", "first visit")))
    assert booked["id"] == proposal["id"]
    assert (booked["status"], booked["comment"]) == ("booked", "first visit")
    assert "extension" not in booked and "tag" not in booked["meta"]
    assert {p["status"] for p in booked["participant"]} == {"accepted"}
    assert await audits(clinic, booked["id"]) == [("C", "ITI-117", "0")]
    r = await clinic.get("/AuditEvent", params={"entity": f"Appointment/{booked['id']}"})
    event = r.json()["entry"][0]["resource"]
    assert {e["what"]["reference"] for e in event["entity"]} == {
        "Patient/pat",
        f"Appointment/{booked['id']}",
    }
    assert event["type"]["code"] == "rest"
    assert event["agent"][0] == {
        "type": event["agent"][0]["type"],
        "who": {"display": requestor_of(clinic)},
        "requestor": True,
    }


async def test_book_hold_books_same_appointment_and_clears_hold(clinic: httpx.AsyncClient) -> None:
    proposal = await first_proposal(clinic)
    held = the_appointment(await hold(clinic, ref(proposal["id"])))
    booked = the_appointment(await book(clinic, ("appointment-resource", held)))
    assert (booked["id"], booked["status"]) == (held["id"], "booked")
    assert "extension" not in booked
    assert await audits(clinic, held["id"]) == [("C", "ITI-116", "0"), ("C", "ITI-117", "0")]


async def test_book_retry_returns_same_appointment_unchanged(clinic: httpx.AsyncClient) -> None:
    proposal = await first_proposal(clinic)
    first = the_appointment(await book(clinic, ref(proposal["id"])))
    again = the_appointment(await book(clinic, ref(proposal["id"])))
    assert again == first
    new = appointment(at("11:00"), at("11:30"), "pending", patient="Patient/pat2")
    made = the_appointment(await book(clinic, ("appointment-resource", new)))
    retry = the_appointment(await book(clinic, ("appointment-resource", new)))
    assert retry == made and made["meta"]["versionId"] == "1"
    assert await count(clinic, "Appointment", status="booked") == 2
    assert len(await audits(clinic, made["id"])) == 1


async def test_book_back_to_back_both_succeed(clinic: httpx.AsyncClient) -> None:
    early = appointment(at("09:00"), at("09:30"), "pending")
    late = appointment(at("09:30"), at("10:00"), "pending", patient="Patient/pat2")
    the_appointment(await book(clinic, ("appointment-resource", early)))
    the_appointment(await book(clinic, ("appointment-resource", late)))
    assert await count(clinic, "Appointment", status="booked") == 2


async def test_book_taken_time_returns_409_fatal_and_writes_nothing(
    clinic: httpx.AsyncClient,
) -> None:
    assert (
        await clinic.post("/Appointment", json=appointment(at("09:00"), at("09:30")))
    ).status_code == 201
    overlapping = appointment(at("09:15"), at("09:45"), "pending", patient="Patient/pat2")
    assert_taken(await book(clinic, ("appointment-resource", overlapping)))
    assert await count(clinic, "Appointment") == 1
    assert await count(clinic, "AuditEvent") == 0


async def test_book_without_patient_returns_422(clinic: httpx.AsyncClient) -> None:
    no_patient = appointment(at("09:00"), at("09:30"), "pending", patient=None)
    r = await book(clinic, ("appointment-resource", no_patient))
    assert_outcome(r, 422, "business-rule")
    assert await count(clinic, "Appointment") == 0


async def test_book_patient_reference_and_resource_add_patients(clinic: httpx.AsyncClient) -> None:
    group = appointment(at("10:00"), at("10:30"), "pending", patient=None)
    newcomer = {"resourceType": "Patient", "name": [{"family": "New"}]}
    booked = the_appointment(
        await book(
            clinic,
            ("appointment-resource", group),
            ("patient-reference", {"reference": "Patient/pat2"}),
            ("patient-resource", newcomer),
        )
    )
    patients = [
        p["actor"]["reference"]
        for p in booked["participant"]
        if p["actor"]["reference"].startswith("Patient/")
    ]
    assert patients[0] == "Patient/pat2" and len(patients) == 2
    created = await clinic.get(f"/{patients[1]}")
    assert created.json()["name"] == [{"family": "New"}]


async def test_book_invariant_broken_returns_422(clinic: httpx.AsyncClient) -> None:
    half = appointment(at("09:00"), at("09:30"), "pending")
    del half["end"]
    r = await book(clinic, ("appointment-resource", half))
    assert_outcome(r, 422, "invariant")


async def test_book_if_match_mismatch_returns_412(clinic: httpx.AsyncClient) -> None:
    proposal = await first_proposal(clinic)
    held = the_appointment(await hold(clinic, ref(proposal["id"])))
    assert held["meta"]["versionId"] == "1"  # the proposal was a record, the hold version 1
    stale = await book(clinic, ref(held["id"]), headers={"If-Match": 'W/"2"'})
    assert_outcome(stale, 412, "conflict")
    assert (await read(clinic, held["id"]))["status"] == "pending"
    current = f'W/"{held["meta"]["versionId"]}"'
    the_appointment(await book(clinic, ref(held["id"]), headers={"If-Match": current}))


async def test_book_expired_hold_returns_404(clinic: httpx.AsyncClient) -> None:
    proposal = await first_proposal(clinic)
    held = the_appointment(await hold(clinic, ref(proposal["id"])))
    lapsed = {**held, "extension": [LAPSED]}
    assert (await clinic.put(f"/Appointment/{held['id']}", json=lapsed)).status_code == 200
    assert_outcome(await book(clinic, ref(held["id"])), 404, "not-found")
    # the lapsed hold no longer guards its time: another patient can book it
    other = appointment(held["start"], held["end"], "pending", patient="Patient/pat2")
    the_appointment(await book(clinic, ("appointment-resource", other)))


async def test_book_move_in_place_releases_old_and_claims_new(clinic: httpx.AsyncClient) -> None:
    booked = the_appointment(await book(clinic, ref((await first_proposal(clinic))["id"])))
    moved = {**booked, "start": at("10:00"), "end": at("10:30")}
    after = the_appointment(await book(clinic, ("appointment-resource", moved)))
    assert (after["id"], after["start"], after["status"]) == (booked["id"], at("10:00"), "booked")
    old_time = appointment(booked["start"], booked["end"], "pending", patient="Patient/pat2")
    the_appointment(await book(clinic, ("appointment-resource", old_time)))
    new_time = appointment(at("10:00"), at("10:30"), "pending", patient="Patient/pat3")
    assert_taken(await book(clinic, ("appointment-resource", new_time)))
    assert [a[0] for a in await audits(clinic, booked["id"])] == ["C", "U"]


async def test_book_move_onto_taken_time_returns_409_and_keeps_old(
    clinic: httpx.AsyncClient,
) -> None:
    taken = appointment(at("11:00"), at("11:30"), patient="Patient/pat2")
    assert (await clinic.post("/Appointment", json=taken)).status_code == 201
    booked = the_appointment(await book(clinic, ref((await first_proposal(clinic))["id"])))
    moved = {**booked, "start": at("11:00"), "end": at("11:30")}
    assert_taken(await book(clinic, ("appointment-resource", moved)))
    assert await read(clinic, booked["id"]) == booked


async def test_book_cancel_releases_time_and_audits(clinic: httpx.AsyncClient) -> None:
    booked = the_appointment(await book(clinic, ref((await first_proposal(clinic))["id"])))
    reason = {"text": "patient request"}
    cancel = {**booked, "status": "cancelled", "cancelationReason": reason}
    cancelled = the_appointment(await book(clinic, ("appointment-resource", cancel)))
    assert (cancelled["status"], cancelled["cancelationReason"]) == ("cancelled", reason)
    assert await audits(clinic, booked["id"]) == [("C", "ITI-117", "0"), ("U", "ITI-117", "0")]
    again = appointment(booked["start"], booked["end"], "pending", patient="Patient/pat2")
    the_appointment(await book(clinic, ("appointment-resource", again)))
    retry = the_appointment(await book(clinic, ("appointment-resource", cancel)))
    assert retry["meta"]["versionId"] == cancelled["meta"]["versionId"]


async def test_book_cancelled_appointment_returns_409_illegal_status_change(
    clinic: httpx.AsyncClient,
) -> None:
    booked = the_appointment(await book(clinic, ref((await first_proposal(clinic))["id"])))
    cancelled = the_appointment(
        await book(clinic, ("appointment-resource", {**booked, "status": "cancelled"}))
    )
    r = await book(clinic, ("appointment-resource", {**cancelled, "status": "booked"}))
    assert_outcome(r, 409, "business-rule")
    assert_outcome(await book(clinic, ref(booked["id"])), 409, "business-rule")


async def test_book_reschedule_cancels_old_and_books_new_atomically(
    clinic: httpx.AsyncClient,
) -> None:
    old = the_appointment(await book(clinic, ref((await first_proposal(clinic))["id"])))
    new = appointment(at("10:30"), at("11:00"), "pending")
    cancel_old = ("cancelled-appt-id", {"reference": f"Appointment/{old['id']}"})
    booked = the_appointment(await book(clinic, ("appointment-resource", new), cancel_old))
    assert booked["status"] == "booked" and booked["id"] != old["id"]
    assert (await read(clinic, old["id"]))["status"] == "cancelled"
    retry = the_appointment(await book(clinic, ("appointment-resource", new), cancel_old))
    assert retry == booked
    assert await count(clinic, "Appointment", status="booked") == 1


async def test_book_reschedule_onto_taken_time_leaves_old_booked(
    clinic: httpx.AsyncClient,
) -> None:
    old = the_appointment(await book(clinic, ref((await first_proposal(clinic))["id"])))
    taken = appointment(at("11:00"), at("11:30"), patient="Patient/pat2")
    assert (await clinic.post("/Appointment", json=taken)).status_code == 201
    new = appointment(at("11:00"), at("11:30"), "pending")
    cancel_old = ("cancelled-appt-id", {"reference": f"Appointment/{old['id']}"})
    assert_taken(await book(clinic, ("appointment-resource", new), cancel_old))
    assert await read(clinic, old["id"]) == old
    assert await count(clinic, "Appointment") == 2
    assert await audits(clinic, old["id"]) == [("C", "ITI-117", "0")]


async def test_book_multi_actor_with_room_taken_writes_nothing(clinic: httpx.AsyncClient) -> None:
    room_busy = appointment(
        at("09:00"), at("10:00"), actors=("Location/room",), patient="Patient/pat2"
    )
    assert (await clinic.post("/Appointment", json=room_busy)).status_code == 201
    actors = ("PractitionerRole/dr", "Location/room")
    both = appointment(at("09:30"), at("10:00"), "pending", actors=actors)
    before = (await count(clinic, "Appointment"), await count(clinic, "AuditEvent"))
    assert_taken(await book(clinic, ("appointment-resource", both)))
    assert (await count(clinic, "Appointment"), await count(clinic, "AuditEvent")) == before
    doctor_only = appointment(at("09:30"), at("10:00"), "pending")
    the_appointment(await book(clinic, ("appointment-resource", doctor_only)))
