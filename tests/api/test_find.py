"""`Appointment/$find` (IHE ITI-115) over HTTP on both engines: proposals, AND/OR of actor kinds,
held and booked time excluded, proposals kept out of plain search (ITI-118), and the 400 rows of
SCHEDULING.md "Errors"."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from resources.fhir_dates import now_us
from tests.api.booking_helpers import (
    appointment,
    assert_outcome,
    at,
    hold,
    parameters,
    ref,
    running,
    seed,
    the_appointment,
)

FIND = "/Appointment/$find"
WINDOW = {"start": at("09:00"), "end": at("12:00")}


@pytest.fixture
async def clinic(client: httpx.AsyncClient) -> httpx.AsyncClient:
    await seed(client)
    return client


async def find(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    r = await client.get(FIND, params={**WINDOW, **params})
    assert r.status_code == 200, r.text
    bundle: dict[str, Any] = r.json()
    assert (bundle["resourceType"], bundle["type"]) == ("Bundle", "searchset")
    return bundle


def proposals(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle.get("entry", [])]


def starts(bundle: dict[str, Any]) -> list[str]:
    return [p["start"] for p in proposals(bundle)]


def actors(proposal: dict[str, Any]) -> list[str]:
    return [p["actor"]["reference"] for p in proposal["participant"]]


async def test_find_returns_proposed_appointments_with_total(clinic: httpx.AsyncClient) -> None:
    bundle = await find(
        clinic, practitioner="Practitioner/doc", **{"patient-reference": "Patient/pat"}
    )
    assert bundle["total"] == 6
    assert starts(bundle) == [at(t) for t in ("09:00", "09:30", "10:00", "10:30", "11:00", "11:30")]
    first = proposals(bundle)[0]
    assert first["status"] == "proposed"
    assert (first["end"], first["minutesDuration"]) == (at("09:30"), 30)
    assert actors(first) == ["PractitionerRole/dr", "Patient/pat"]
    assert first["slot"][0]["reference"].startswith("Slot/rs-")
    assert first["serviceType"][0]["coding"][0]["code"] == "checkup"
    assert first["requestedPeriod"] == [WINDOW]
    assert bundle["entry"][0]["search"] == {"mode": "match"}
    assert (await clinic.get(f"/Appointment/{first['id']}")).json()["status"] == "proposed"
    limited = await find(clinic, practitioner="Practitioner/doc", _count="2")
    assert (limited["total"], len(proposals(limited))) == (6, 2)


async def test_find_post_parameters_returns_same_times_as_get(clinic: httpx.AsyncClient) -> None:
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "start", "valueDateTime": at("09:00")},
            {"name": "end", "valueDateTime": "2026-12-07T13:00:00+01:00"},
            {"name": "practitioner", "valueReference": {"reference": "Practitioner/doc"}},
            {"name": "_count", "valueInteger": 3},
        ],
    }
    r = await clinic.post(FIND, json=body)
    assert r.status_code == 200, r.text
    assert starts(r.json()) == [at("09:00"), at("09:30"), at("10:00")]


async def test_find_practitioner_as_practitioner_role_same_proposals(
    clinic: httpx.AsyncClient,
) -> None:
    by_role = await find(clinic, practitioner="PractitionerRole/dr")
    by_person = await find(clinic, practitioner="Practitioner/doc")
    assert starts(by_role) == starts(by_person) != []
    assert all("PractitionerRole/dr" in actors(p) for p in proposals(by_role))


async def test_find_practitioner_by_identifier_resolves_it(clinic: httpx.AsyncClient) -> None:
    identifier = {"identifier": {"system": "urn:oid:1.2.3", "value": "PR1"}}
    body = parameters(("start", at("09:00")), ("end", at("10:00")), ("practitioner", identifier))
    r = await clinic.post(FIND, json=body)
    assert r.status_code == 200, r.text
    assert {a for p in proposals(r.json()) for a in actors(p)} == {"PractitionerRole/dr"}


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"start": None}, "required"),
        ({"end": None}, "required"),
        ({"start": "2026-12-07T09:00:00"}, "invalid"),  # no offset
        ({"end": "2026-12-07"}, "invalid"),  # no time
        ({"end": at("09:00")}, "invalid"),  # end == start
        ({"end": at("08:00")}, "invalid"),  # end before start
        ({"end": "2027-01-07T09:00:01Z"}, "invalid"),  # over 31 days
        ({"_count": "0"}, "invalid"),
        ({"duration": "x"}, "invalid"),
        ({"practitioner": "Location/room"}, "invalid"),
        ({"specialty": "a|b|c"}, "invalid"),
    ],
)
async def test_find_bad_parameter_returns_400(
    clinic: httpx.AsyncClient, params: dict[str, str | None], code: str
) -> None:
    query = {k: v for k, v in {**WINDOW, **params}.items() if v is not None}
    r = await clinic.get(FIND, params=query)
    assert_outcome(r, 400, code)


async def test_find_window_of_exactly_31_days_is_accepted(clinic: httpx.AsyncClient) -> None:
    bundle = await find(clinic, end="2027-01-07T09:00:00Z", practitioner="Practitioner/doc")
    assert bundle["total"] > 100 and len(proposals(bundle)) == 20


async def test_find_practitioner_and_location_both_must_be_free(clinic: httpx.AsyncClient) -> None:
    room_busy = appointment(
        at("09:00"), at("10:00"), actors=("Location/room",), patient="Patient/pat2"
    )
    assert (await clinic.post("/Appointment", json=room_busy)).status_code == 201
    both = await find(
        clinic, practitioner="Practitioner/doc", **{"location-reference": "Location/room"}
    )
    assert starts(both)[0] == at("10:00") and both["total"] == 4
    assert actors(proposals(both)[0]) == ["PractitionerRole/dr", "Location/room"]
    alone = await find(clinic, practitioner="Practitioner/doc")
    assert starts(alone)[0] == at("09:00")


async def test_find_repeated_practitioners_are_alternatives(clinic: httpx.AsyncClient) -> None:
    dr_busy = appointment(at("09:00"), at("12:00"))
    assert (await clinic.post("/Appointment", json=dr_busy)).status_code == 201
    one = await find(clinic, practitioner="Practitioner/doc")
    assert one["total"] == 0
    either = await find(clinic, practitioner=["Practitioner/doc", "Practitioner/doc2"])
    assert either["total"] == 6
    assert {a for p in proposals(either) for a in actors(p)} == {"PractitionerRole/dr2"}


async def test_find_excludes_held_and_booked_time(clinic: httpx.AsyncClient) -> None:
    first = proposals(await find(clinic, practitioner="Practitioner/doc"))[0]
    the_appointment(await hold(clinic, ref(first["id"])))
    booked = appointment(at("09:30"), at("10:00"), patient="Patient/pat2")
    assert (await clinic.post("/Appointment", json=booked)).status_code == 201
    bundle = await find(clinic, practitioner="Practitioner/doc")
    assert starts(bundle) == [at(t) for t in ("10:00", "10:30", "11:00", "11:30")]


async def test_find_proposals_never_in_plain_appointment_search(clinic: httpx.AsyncClient) -> None:
    bundle = await find(
        clinic, practitioner="Practitioner/doc", **{"patient-reference": "Patient/pat"}
    )
    some = proposals(bundle)[0]["id"]
    for path, query in (
        ("/Appointment", {"patient": "Patient/pat"}),
        ("/Appointment", {"_id": some}),
        ("/Appointment", {"status": "proposed"}),
        ("/Appointment", {"_tag": "urn:fhir-scheduling-server:appointment|proposal"}),
        ("/Patient/pat/Appointment", {}),
    ):
        r = await clinic.get(path, params=query)
        assert r.status_code == 200 and r.json()["total"] == 0, (path, r.text)
    r = await clinic.post("/Appointment/_search", data={"patient": "Patient/pat"})
    assert r.json()["total"] == 0
    assert (await clinic.get(f"/Appointment/{some}")).status_code == 200
    held = the_appointment(await hold(clinic, ref(some)))
    found = await clinic.get("/Appointment", params={"patient": "Patient/pat"})
    assert [e["resource"]["id"] for e in found.json()["entry"]] == [held["id"]]


async def test_find_proposals_never_included_by_revinclude_or_include(
    clinic: httpx.AsyncClient,
) -> None:
    bundle = await find(
        clinic, practitioner="Practitioner/doc", **{"patient-reference": "Patient/pat"}
    )
    assert proposals(bundle)
    r = await clinic.get("/Patient", params={"_id": "pat", "_revinclude": "Appointment:patient"})
    assert [e["resource"]["resourceType"] for e in r.json()["entry"]] == ["Patient"]
    held = the_appointment(await hold(clinic, ref(proposals(bundle)[0]["id"])))
    r = await clinic.get("/Patient", params={"_id": "pat", "_revinclude": "Appointment:patient"})
    included = [e["resource"]["id"] for e in r.json()["entry"] if e["search"]["mode"] == "include"]
    assert included == [held["id"]]
    proposal_id = proposals(bundle)[1]["id"]
    for target in (proposal_id, held["id"]):
        note = {
            "resourceType": "Basic",
            "id": f"note-{target}",
            "code": {"text": "note"},
            "subject": {"reference": f"Appointment/{target}"},
        }
        assert (await clinic.put(f"/Basic/note-{target}", json=note)).status_code == 201
    r = await clinic.get("/Basic", params={"_include": "Basic:subject"})
    included = [e["resource"]["id"] for e in r.json()["entry"] if e["search"]["mode"] == "include"]
    assert included == [held["id"]]


async def test_find_visit_type_narrows_schedules(clinic: httpx.AsyncClient) -> None:
    checkup = await find(clinic, **{"visit-type": "http://example.org/visit|checkup"})
    assert checkup["total"] == 6
    assert {a for p in proposals(checkup) for a in actors(p)} == {"PractitionerRole/dr"}
    other = await find(clinic, **{"visit-type": "http://example.org/visit|surgery"})
    assert other["total"] == 0 and other.get("entry", []) == []


async def test_find_location_alone_offers_its_time(clinic: httpx.AsyncClient) -> None:
    bundle = await find(clinic, **{"location-reference": "Location/room2"})
    assert bundle["total"] == 6
    assert {tuple(actors(p)) for p in proposals(bundle)} == {("Location/room2",)}


async def test_find_duration_and_group_patients_shape_proposals(clinic: httpx.AsyncClient) -> None:
    bundle = await find(
        clinic,
        schedule="Schedule/s-dr2",
        duration="15",
        **{
            "patient-reference": ["Patient/pat", "Patient/pat2"],
            "reason": "http://snomed.info/sct|1",
        },
    )
    assert bundle["total"] == 12
    first = proposals(bundle)[0]
    assert (first["start"], first["end"]) == (at("09:00"), at("09:15"))
    assert actors(first) == ["PractitionerRole/dr2", "Patient/pat", "Patient/pat2"]
    assert first["reasonCode"] == [{"coding": [{"system": "http://snomed.info/sct", "code": "1"}]}]


async def test_find_expired_proposals_are_purged_then_404(tmp_path: Path) -> None:
    async with running("sqlite", tmp_path) as server:
        bundle = await find(server.client, practitioner="Practitioner/doc", _count="2")
        ids = [p["id"] for p in proposals(bundle)]
        records = server.repository.records
        assert await records.purge_records(now_us()) == 0
        later = now_us() + 1801 * 1_000_000
        assert await records.purge_records(later) == 2
        assert_outcome(await hold(server.client, ref(ids[0])), 404, "not-found")
        assert (await server.client.get(f"/Appointment/{ids[1]}")).status_code == 404
