"""`Slot/$find-slots` and `Schedule/{id}/$find-slots` over HTTP on both engines (SCHEDULING.md
"Operations", "Resources and where availability comes from", "Errors"), and the
OperationDefinition and StructureDefinitions the server serves without storing them."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from conformance import operation_definitions
from fhir_server.demo import DEMO_SCHEDULE_ID, demo_clinic
from operations.scheduling.claims import HOLD_EXPIRES_URL
from operations.scheduling.extensions import SLOT_CAPACITY_URL, extension_url
from resources.validation import validate_resource
from tests.conftest import shared_data

FIND = "/Slot/$find-slots"
TZ_URL = "http://hl7.org/fhir/StructureDefinition/timezone"
WEEKDAYS = ["mon", "tue", "wed", "thu", "fri"]
MONDAY = "2026-12-07"  # EST (UTC-5): 09:00 local is 14:00Z
SERVICE = {"coding": [{"system": "http://example.org/service", "code": "checkup"}]}


def tz(zone: str) -> dict[str, Any]:
    return {"url": TZ_URL, "valueCode": zone}


def hours(*spans: tuple[str, str], days: list[str] | None = None) -> list[dict[str, Any]]:
    return [
        {"daysOfWeek": days or WEEKDAYS, "availableStartTime": a, "availableEndTime": b}
        for a, b in spans
    ]


def schedule(sid: str, actor: str, zone: str = "America/New_York", **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Schedule",
        "id": sid,
        "extension": [tz(zone)],
        "active": True,
        "serviceType": [SERVICE],
        "actor": [{"reference": actor}],
        **extra,
    }


def booking(
    start: str, end: str, actor: str = "PractitionerRole/dr", **extra: Any
) -> dict[str, Any]:
    return {
        "resourceType": "Appointment",
        "status": "booked",
        "start": start,
        "end": end,
        "participant": [
            {"actor": {"reference": "Patient/pat"}, "status": "accepted"},
            {"actor": {"reference": actor}, "status": "accepted"},
        ],
        **extra,
    }


async def put(client: httpx.AsyncClient, *resources: dict[str, Any]) -> None:
    for resource in resources:
        r = await client.put(f"/{resource['resourceType']}/{resource['id']}", json=resource)
        assert r.status_code in (200, 201), r.text


async def find(client: httpx.AsyncClient, path: str = FIND, **params: Any) -> dict[str, Any]:
    r = await client.get(path, params=params)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def day(date: str, zone: str = "America/New_York") -> dict[str, str]:
    """The $find-slots window of one local day."""
    first = dt.datetime.fromisoformat(date).replace(tzinfo=ZoneInfo(zone))
    after = (first + dt.timedelta(days=1)).replace(tzinfo=ZoneInfo(zone))
    return {"start": first.isoformat(), "end": after.isoformat()}


def slots(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]


def starts(bundle: dict[str, Any]) -> list[str]:
    return [slot["start"] for slot in slots(bundle)]


def utc_range(first: str, last: str, step: int = 30) -> list[str]:
    """`YYYY-MM-DDThh:mm` UTC times from first to last inclusive, every `step` minutes."""
    at, end = dt.datetime.fromisoformat(first), dt.datetime.fromisoformat(last)
    out = []
    while at <= end:
        out.append(at.strftime("%Y-%m-%dT%H:%M:00Z"))
        at += dt.timedelta(minutes=step)
    return out


@pytest.fixture
async def clinic(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """Dr. (a PractitionerRole, weekdays 09-12 and 13-17 New York time) with Schedule `s-dr`."""
    await put(
        client,
        {"resourceType": "Patient", "id": "pat"},
        {"resourceType": "Practitioner", "id": "doc"},
        {
            "resourceType": "PractitionerRole",
            "id": "dr",
            "practitioner": {"reference": "Practitioner/doc"},
            "availableTime": hours(("09:00:00", "12:00:00"), ("13:00:00", "17:00:00")),
        },
        schedule("s-dr", "PractitionerRole/dr"),
    )
    return client


MONDAY_SLOTS = utc_range(f"{MONDAY}T14:00", f"{MONDAY}T16:30") + utc_range(
    f"{MONDAY}T18:00", f"{MONDAY}T21:30"
)


async def test_find_slots_practitioner_role_available_time_lunch_break_gap(
    clinic: httpx.AsyncClient,
) -> None:
    bundle = await find(clinic, **day(MONDAY))
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    assert starts(bundle) == MONDAY_SLOTS
    assert bundle["total"] == 14
    first = slots(bundle)[0]
    assert first == {
        "resourceType": "Slot",
        "id": first["id"],
        "meta": {"versionId": "1"},
        "serviceType": [SERVICE],
        "schedule": {"reference": "Schedule/s-dr"},
        "status": "free",
        "start": f"{MONDAY}T14:00:00Z",
        "end": f"{MONDAY}T14:30:00Z",
    }
    assert first["id"].startswith("rs-") and first["id"].endswith("-s-dr")
    entry = bundle["entry"][0]
    assert entry["fullUrl"] == f"http://test/fhir/Slot/{first['id']}"
    include = [e for e in bundle["entry"] if e["search"]["mode"] == "include"]
    assert [e["fullUrl"] for e in include] == ["http://test/fhir/Schedule/s-dr"]
    assert include[0]["resource"]["id"] == "s-dr"


async def test_find_slots_window_start_mid_day_same_slot_ids(clinic: httpx.AsyncClient) -> None:
    whole = slots(await find(clinic, **day(MONDAY)))
    later = await find(clinic, start=f"{MONDAY}T15:10:00Z", end=f"{MONDAY}T19:00:00Z")
    assert [s["id"] for s in slots(later)] == [
        s["id"] for s in whole if "15:30" <= s["start"][11:16] < "19:00"
    ]


async def test_find_slots_europe_berlin_schedule_local_hours(client: httpx.AsyncClient) -> None:
    role = {
        "resourceType": "PractitionerRole",
        "id": "b",
        "availableTime": hours(("08:00:00", "10:00:00")),
    }
    await put(client, role, schedule("s-b", "PractitionerRole/b", "Europe/Berlin"))
    bundle = await find(client, **day("2026-07-01", "Europe/Berlin"))  # CEST, UTC+2
    assert starts(bundle) == utc_range("2026-07-01T06:00", "2026-07-01T07:30")


async def test_find_slots_new_york_spring_forward_day_utc_shift(client: httpx.AsyncClient) -> None:
    role = {
        "resourceType": "PractitionerRole",
        "id": "ny",
        "availableTime": hours(("09:00:00", "12:00:00"), days=["sun"]),
    }
    await put(client, role, schedule("s-ny", "PractitionerRole/ny"))
    bundle = await find(client, **day("2026-03-08"))  # 23 hours long; EDT from 02:00 local
    assert starts(bundle) == utc_range("2026-03-08T13:00", "2026-03-08T15:30")
    assert slots(bundle)[-1]["end"] == "2026-03-08T16:00:00Z"


async def test_find_slots_berlin_fall_back_day_repeated_hour_not_doubled(
    client: httpx.AsyncClient,
) -> None:
    role = {
        "resourceType": "PractitionerRole",
        "id": "be",
        "availableTime": hours(("00:00:00", "04:00:00"), ("09:00:00", "10:00:00"), days=["sun"]),
    }
    await put(client, role, schedule("s-be", "PractitionerRole/be", "Europe/Berlin"))
    bundle = await find(client, **day("2026-10-25", "Europe/Berlin"))  # 25 hours long
    # 00:00 CEST = 22:00Z the day before; 04:00 CET = 03:00Z: five real hours, of which
    # 01:00Z-02:00Z repeats 02:00-03:00 (CET after CEST) and is not opened: four wall hours.
    expected = (
        utc_range("2026-10-24T22:00", "2026-10-25T00:30")
        + utc_range("2026-10-25T02:00", "2026-10-25T02:30")
        + utc_range("2026-10-25T08:00", "2026-10-25T08:30")
    )
    assert starts(bundle) == expected
    assert len({s["id"] for s in slots(bundle)}) == len(expected)


async def test_find_slots_new_york_fall_back_day_repeated_hour_offered_once(
    client: httpx.AsyncClient,
) -> None:
    every_day = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    role = {
        "resourceType": "PractitionerRole",
        "id": "ny24",
        "availableTime": [{"daysOfWeek": every_day, "allDay": True}],
    }
    await put(client, role, schedule("s-ny24", "PractitionerRole/ny24"))
    bundle = await find(client, **day("2026-11-01"), _count=100)  # 25 real hours
    # 01:00-02:00 EDT is 05:00Z-06:00Z; its repeat 01:00-02:00 EST (06:00Z-07:00Z) is not
    # opened: 24 wall-clock hours, 48 slots of 30 minutes.
    expected = utc_range("2026-11-01T04:00", "2026-11-01T05:30") + utc_range(
        "2026-11-01T07:00", "2026-11-02T04:30"
    )
    assert starts(bundle) == expected
    assert bundle["total"] == 48
    ends = [s["end"] for s in slots(bundle)]
    assert ends[3:5] == ["2026-11-01T06:00:00Z", "2026-11-01T07:30:00Z"]


async def test_find_slots_booked_appointment_removes_slot_cancel_gives_it_back(
    clinic: httpx.AsyncClient,
) -> None:
    r = await clinic.post(
        "/Appointment", json=booking(f"{MONDAY}T14:30:00Z", f"{MONDAY}T15:00:00Z")
    )
    assert r.status_code == 201, r.text
    booked = r.json()
    after = starts(await find(clinic, **day(MONDAY)))
    assert after == [s for s in MONDAY_SLOTS if s != f"{MONDAY}T14:30:00Z"]
    cancelled = {**booked, "status": "cancelled"}
    assert (await clinic.put(f"/Appointment/{booked['id']}", json=cancelled)).status_code == 200
    assert starts(await find(clinic, **day(MONDAY))) == MONDAY_SLOTS


async def test_find_slots_live_hold_not_offered(clinic: httpx.AsyncClient) -> None:
    expires = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    hold = booking(
        f"{MONDAY}T18:00:00Z",
        f"{MONDAY}T18:30:00Z",
        status="pending",
        extension=[{"url": HOLD_EXPIRES_URL, "valueInstant": expires}],
    )
    assert (await clinic.post("/Appointment", json=hold)).status_code == 201
    assert f"{MONDAY}T18:00:00Z" not in starts(await find(clinic, **day(MONDAY)))


async def test_find_slots_busy_unavailable_slot_blocks_rule_slots(
    clinic: httpx.AsyncClient,
) -> None:
    block = {
        "resourceType": "Slot",
        "id": "meeting",
        "schedule": {"reference": "Schedule/s-dr"},
        "status": "busy-unavailable",
        "start": f"{MONDAY}T15:00:00Z",
        "end": f"{MONDAY}T16:00:00Z",
    }
    await put(clinic, block)
    taken = {f"{MONDAY}T15:00:00Z", f"{MONDAY}T15:30:00Z"}
    assert starts(await find(clinic, **day(MONDAY))) == [s for s in MONDAY_SLOTS if s not in taken]


async def test_find_slots_stored_slot_capacity_two_seats_left_then_gone(
    clinic: httpx.AsyncClient,
) -> None:
    group = {
        "resourceType": "Slot",
        "id": "group",
        "schedule": {"reference": "Schedule/s-dr"},
        "status": "free",
        "start": f"{MONDAY}T18:00:00Z",
        "end": f"{MONDAY}T19:00:00Z",
        "extension": [{"url": SLOT_CAPACITY_URL, "valueInteger": 2}],
    }
    await put(clinic, group)

    async def offered() -> list[dict[str, Any]]:
        return [s for s in slots(await find(clinic, **day(MONDAY))) if s["id"] == "group"]

    (slot,) = await offered()
    assert slot["extension"] == [{"url": SLOT_CAPACITY_URL, "valueInteger": 2}]
    assert slot["meta"]["versionId"] == "1" and slot["status"] == "free"
    rule_starts = starts(await find(clinic, **day(MONDAY)))
    assert f"{MONDAY}T18:30:00Z" not in rule_starts  # the stored Slot owns its hour
    seat = booking(
        f"{MONDAY}T18:00:00Z",
        f"{MONDAY}T19:00:00Z",
        "Patient/pat",
        slot=[{"reference": "Slot/group"}],
    )
    assert (await clinic.post("/Appointment", json=seat)).status_code == 201
    (slot,) = await offered()
    assert "extension" not in slot  # one seat left: the default capacity
    pat2 = {"actor": {"reference": "Patient/pat2"}, "status": "accepted"}
    other = {**seat, "participant": [pat2]}
    assert (await clinic.post("/Appointment", json=other)).status_code == 201
    assert await offered() == []


async def test_find_slots_planning_horizon_clips_rule_slots(client: httpx.AsyncClient) -> None:
    role = {
        "resourceType": "PractitionerRole",
        "id": "h",
        "availableTime": hours(("09:00:00", "17:00:00")),
    }
    horizon = {"start": f"{MONDAY}T10:00:00-05:00", "end": f"{MONDAY}T12:00:00-05:00"}
    await put(client, role, schedule("s-h", "PractitionerRole/h", planningHorizon=horizon))
    bundle = await find(client, start=f"{MONDAY}T00:00:00Z", end="2026-12-10T00:00:00Z")
    assert starts(bundle) == utc_range(f"{MONDAY}T15:00", f"{MONDAY}T16:30")


async def test_find_slots_inactive_schedule_offers_nothing(clinic: httpx.AsyncClient) -> None:
    inactive = schedule("s-dr", "PractitionerRole/dr", active=False)
    await put(clinic, inactive)
    assert (await find(clinic, **day(MONDAY)))["total"] == 0
    bundle = await find(clinic, "/Schedule/s-dr/$find-slots", **day(MONDAY))
    assert bundle["total"] == 0 and "entry" not in bundle


async def test_read_rule_slot_while_free_200_after_booking_404(clinic: httpx.AsyncClient) -> None:
    slot = slots(await find(clinic, **day(MONDAY)))[3]
    r = await clinic.get(f"/Slot/{slot['id']}")
    assert r.status_code == 200
    assert r.json() == slot
    assert r.headers["etag"] == 'W/"1"'
    assert (
        await clinic.post("/Appointment", json=booking(slot["start"], slot["end"]))
    ).status_code == 201
    gone = await clinic.get(f"/Slot/{slot['id']}")
    assert gone.status_code == 404
    assert gone.json()["issue"][0]["code"] == "not-found"
    assert (await clinic.get("/Slot/rs-nonsense")).status_code == 404


async def test_find_slots_post_parameters_equals_get(clinic: httpx.AsyncClient) -> None:
    window = day(MONDAY)
    query = {
        **window,
        "actor": "PractitionerRole/dr",
        "service-type": "http://example.org/service|checkup",
        "_count": "5",
    }
    got = await find(clinic, **query)
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "start", "valueDateTime": window["start"]},
            {"name": "end", "valueDateTime": window["end"]},
            {"name": "actor", "valueReference": {"reference": "PractitionerRole/dr"}},
            {"name": "service-type", "valueCoding": SERVICE["coding"][0]},
            {"name": "_count", "valueInteger": 5},
        ],
    }
    r = await clinic.post(FIND, json=body)
    assert r.status_code == 200, r.text
    posted = r.json()
    for bundle in (got, posted):
        bundle.pop("meta")
        bundle.pop("link")
    assert posted == got
    assert got["total"] == 14 and len(slots(got)) == 5


@pytest.mark.parametrize(
    ("params", "code", "expression"),
    [
        ({"end": "2026-12-08T00:00:00Z"}, "required", "start"),
        ({"start": "2026-12-07T00:00:00", "end": "2026-12-08T00:00:00Z"}, "invalid", "start"),
        ({"start": "2026-12-07", "end": "2026-12-08T00:00:00Z"}, "invalid", "start"),
        ({"start": "2026-12-08T00:00:00Z", "end": "2026-12-08T00:00:00Z"}, "invalid", "end"),
        ({"start": "2026-12-01T00:00:00Z", "end": "2027-01-02T00:00:00Z"}, "invalid", "end"),
        ({**day(MONDAY), "duration": "0"}, "invalid", "duration"),
        ({**day(MONDAY), "actor": "Patient/pat"}, "invalid", "actor"),
        ({**day(MONDAY), "_count": "many"}, "invalid", "_count"),
        ({**day(MONDAY), "specialty": "a|b|c"}, "invalid", "specialty"),
    ],
)
async def test_find_slots_bad_parameter_400_names_it(
    clinic: httpx.AsyncClient, params: dict[str, str], code: str, expression: str
) -> None:
    r = await clinic.get(FIND, params=params)
    assert r.status_code == 400
    (issue,) = r.json()["issue"]
    assert (issue["severity"], issue["code"], issue["expression"]) == ("error", code, [expression])


async def test_find_slots_31_day_window_accepted(clinic: httpx.AsyncClient) -> None:
    bundle = await find(
        clinic, start="2026-12-01T00:00:00Z", end="2027-01-01T00:00:00Z", _count="0"
    )
    assert bundle["total"] == 23 * 14 and "entry" not in bundle


async def test_find_slots_wrong_level_404_get_on_post_body_400(clinic: httpx.AsyncClient) -> None:
    for path in ("/Slot/x/$find-slots", "/Schedule/$find-slots", "/Appointment/$find-slots"):
        r = await clinic.get(path, params=day(MONDAY))
        assert r.status_code == 404, path
    assert (await clinic.get("/Schedule/nope/$find-slots", params=day(MONDAY))).status_code == 404
    r = await clinic.post(FIND, json={"resourceType": "Patient"})
    assert r.status_code == 400


async def test_find_slots_instance_level_limits_to_that_schedule(clinic: httpx.AsyncClient) -> None:
    await put(clinic, schedule("s-dr-2", "PractitionerRole/dr"))
    both = await find(clinic, **day(MONDAY))
    assert {s["schedule"]["reference"] for s in slots(both)} == {"Schedule/s-dr", "Schedule/s-dr-2"}
    assert starts(both) == sorted(MONDAY_SLOTS * 2)
    one = await find(clinic, "/Schedule/s-dr-2/$find-slots", **day(MONDAY))
    assert {s["schedule"]["reference"] for s in slots(one)} == {"Schedule/s-dr-2"}
    assert starts(one) == MONDAY_SLOTS
    assert one["link"][0]["url"].startswith("http://test/fhir/Schedule/s-dr-2/$find-slots?start=")
    narrowed = await find(clinic, **day(MONDAY), schedule="s-dr-2", duration="60")
    assert starts(narrowed) == utc_range(f"{MONDAY}T14:00", f"{MONDAY}T16:00", 60) + utc_range(
        f"{MONDAY}T18:00", f"{MONDAY}T21:00", 60
    )
    assert slots(narrowed)[0]["end"] == f"{MONDAY}T15:00:00Z"


async def test_find_slots_max_bookings_per_day_reached_day_offers_nothing(
    clinic: httpx.AsyncClient,
) -> None:
    limit = {"url": extension_url("max-bookings-per-day"), "valuePositiveInt": 1}
    await put(
        clinic, schedule("s-dr", "PractitionerRole/dr", extension=[tz("America/New_York"), limit])
    )
    assert len(starts(await find(clinic, **day(MONDAY)))) == 14
    assert (
        await clinic.post(
            "/Appointment", json=booking(f"{MONDAY}T14:00:00Z", f"{MONDAY}T14:30:00Z")
        )
    ).status_code == 201
    assert (await find(clinic, **day(MONDAY)))["total"] == 0
    assert (await find(clinic, **day("2026-12-08")))["total"] == 14


def ndjson(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def test_find_slots_smart_scheduling_links_schedule_10_week(
    client: httpx.AsyncClient,
) -> None:
    folder = shared_data("smart-scheduling-links")
    files = [
        folder / "locations.ndjson",
        folder / "schedules.ndjson",
        *sorted(folder.glob("slots-*.ndjson")),
    ]
    resources = [resource for path in files for resource in ndjson(path)]
    await put(client, *resources)
    low, high = dt.datetime(2021, 3, 1, tzinfo=dt.UTC), dt.datetime(2021, 3, 8, tzinfo=dt.UTC)

    def capacity(slot: dict[str, Any]) -> int:
        return int(
            next(e["valueInteger"] for e in slot["extension"] if e["url"] == SLOT_CAPACITY_URL)
        )

    expected = {
        r["id"]: capacity(r)
        for r in resources
        if r["resourceType"] == "Slot"
        and r["schedule"]["reference"] == "Schedule/10"
        and r["status"] == "free"
        and low
        <= dt.datetime.fromisoformat(r["start"])
        <= dt.datetime.fromisoformat(r["end"])
        <= high
    }
    assert len(expected) == 7  # one Slot a day that week
    bundle = await find(
        client, start="2021-03-01T00:00:00Z", end="2021-03-08T00:00:00Z", schedule="Schedule/10"
    )
    assert bundle["total"] == len(expected)
    assert {s["id"]: capacity(s) for s in slots(bundle)} == expected
    assert {s["schedule"]["reference"] for s in slots(bundle)} == {"Schedule/10"}


async def test_find_slots_demo_clinic_dr_smith_next_monday_boston_hours(
    client: httpx.AsyncClient,
) -> None:
    today = dt.date(2026, 11, 18)  # a Wednesday: next Monday is clear of demo bookings and leave
    await put(client, *demo_clinic(today))
    monday = today + dt.timedelta(days=(7 - today.weekday()) % 7)
    boston = ZoneInfo("America/New_York")

    def utc(clock: str) -> str:
        local = dt.datetime.combine(monday, dt.time.fromisoformat(clock), tzinfo=boston)
        return local.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    local = [f"{h:02d}:{m:02d}" for h in range(9, 17) for m in (0, 30) if not 12 <= h < 13]
    bundle = await find(
        client, f"/Schedule/{DEMO_SCHEDULE_ID}/$find-slots", **day(monday.isoformat())
    )
    assert starts(bundle) == [utc(clock) for clock in local]
    assert len(local) == 14


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


async def test_find_slots_unknown_parameter_ignored_strict_400(clinic: httpx.AsyncClient) -> None:
    lenient = await find(clinic, **day(MONDAY), colour="blue")
    assert lenient["total"] == 14 and "colour" not in lenient["link"][0]["url"]
    strict = await clinic.get(
        FIND, params={**day(MONDAY), "colour": "blue"}, headers={"Prefer": "handling=strict"}
    )
    assert strict.status_code == 400
    assert strict.json()["issue"][0]["expression"] == ["colour"]


async def test_find_slots_xml_format_renders_bundle(clinic: httpx.AsyncClient) -> None:
    r = await clinic.get(FIND, params={**day(MONDAY), "_count": "1", "_format": "xml"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/fhir+xml")
    assert "<Slot>" in r.text and '<total value="14"/>' in r.text
