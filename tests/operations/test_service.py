"""The SchedulingService and what it reads (`operations.scheduling.service`, `context`), on
every engine: which Schedules match, free slots with claims and seats, rule slots by id."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from fhir_server.app import build_repositories
from fhir_server.repository import Repository
from fhir_server.search.query import TokenValue
from operations.scheduling.extensions import DEFAULT_BASE, SLOT_CAPACITY_URL, extension_url
from operations.scheduling.intervals import Interval
from operations.scheduling.matching import reference_parts
from operations.scheduling.service import OfferedSlot, SchedulingService
from operations.scheduling.slots import CandidateSlot, rule_slot_id
from operations.scheduling.taken import claimed_intervals
from resources.fhir_dates import parse_instant
from tests.conftest import make_settings
from tests.engines import ALL_ENGINES, make_store

MONDAY = "2026-12-07"
SERVICE = TokenValue("http://example.org/service", "derm")
SPECIALTY = TokenValue("http://example.org/specialty", "skin")
TZ = {"url": "http://hl7.org/fhir/StructureDefinition/timezone", "valueCode": "America/New_York"}
HOURS = [{"daysOfWeek": ["mon"], "availableStartTime": "09:00:00", "availableEndTime": "11:00:00"}]


def concept(token: TokenValue) -> list[dict[str, Any]]:
    return [{"coding": [{"system": token.system, "code": token.code}]}]


def sched(sid: str, *actors: str, **extra: Any) -> dict[str, Any]:
    actor = [{"reference": a} for a in actors]
    return {"resourceType": "Schedule", "id": sid, "actor": actor, "extension": [TZ], **extra}


CLINIC: list[dict[str, Any]] = [
    {"resourceType": "Organization", "id": "org"},
    {
        "resourceType": "Location",
        "id": "room",
        "managingOrganization": {"reference": "Organization/x"},
    },
    {"resourceType": "Location", "id": "site"},
    {"resourceType": "Practitioner", "id": "doc"},
    {
        "resourceType": "HealthcareService",
        "id": "derm",
        "type": concept(SERVICE),
        "providedBy": {"reference": "Organization/org"},
    },
    {
        "resourceType": "PractitionerRole",
        "id": "dr",
        "practitioner": {"reference": "Practitioner/doc"},
        "specialty": concept(SPECIALTY),
        "location": [{"reference": "Location/site"}],
        "availableTime": HOURS,
    },
    {
        "resourceType": "PractitionerRole",
        "id": "nurse",
        "organization": {"reference": "Organization/org"},
        "healthcareService": [{"reference": "HealthcareService/derm"}],
    },
    sched("s-dr", "PractitionerRole/dr"),
    sched("s-dr-room", "PractitionerRole/dr", "Location/room"),
    sched("s-room", "Location/room", serviceType=concept(SERVICE)),
    sched("s-derm", "HealthcareService/derm"),
    sched("s-nurse", "PractitionerRole/nurse"),
    sched("s-other", "HealthcareService/derm", serviceType=concept(TokenValue("x", "y"))),
    sched("s-off", "PractitionerRole/dr", active=False),
]


@pytest.fixture(params=ALL_ENGINES)
async def repository(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Repository]:
    """A repository over a started store of each engine holding CLINIC."""
    store, drop = make_store(request.param, tmp_path)
    await store.start()
    repo = build_repositories(store, make_settings(tmp_path)).for_job("test", "http://test/fhir")
    for resource in CLINIC:
        await repo.update(resource["resourceType"], resource["id"], resource)
    try:
        yield repo
    finally:
        if drop is not None:
            await drop()
        await store.close()


@pytest.fixture
def service(repository: Repository) -> SchedulingService:
    """The service of `repository`."""
    return SchedulingService(repository)


async def book_dr(repository: Repository, start: str, end: str) -> None:
    """A booked Appointment of PractitionerRole/dr on MONDAY from `start` to `end` (UTC HH:MM)."""
    await repository.create(
        {
            "resourceType": "Appointment",
            "status": "booked",
            "start": f"{MONDAY}T{start}:00Z",
            "end": f"{MONDAY}T{end}:00Z",
            "participant": [{"actor": {"reference": "PractitionerRole/dr"}, "status": "accepted"}],
        }
    )


async def ids(service: SchedulingService, **criteria: Any) -> list[str]:
    return [s["id"] for s in await service.matcher.schedules(**criteria)]


async def test_schedules_no_criteria_every_active_schedule(service: SchedulingService) -> None:
    assert await ids(service) == ["s-derm", "s-dr", "s-dr-room", "s-nurse", "s-other", "s-room"]
    assert await ids(service, schedule_ids=["Schedule/s-dr", "s-off", "s-room"]) == [
        "s-dr",
        "s-room",
    ]


async def test_schedules_practitioner_matches_its_roles_kinds_and(
    service: SchedulingService,
) -> None:
    assert await ids(service, actors=["Practitioner/doc"]) == ["s-dr", "s-dr-room"]
    both = await ids(service, actors=["PractitionerRole/dr", "Location/room"])
    assert both == ["s-dr-room"]
    either = await ids(service, actors=["PractitionerRole/dr", "PractitionerRole/nurse"])
    assert either == ["s-dr", "s-dr-room", "s-nurse"]


async def test_schedules_service_type_on_schedule_else_service_actors(
    service: SchedulingService,
) -> None:
    # s-room has it itself; s-derm through its HealthcareService actor; s-nurse through the
    # service its PractitionerRole offers; s-other names another type itself, so not.
    assert await ids(service, service_types=[SERVICE]) == ["s-derm", "s-nurse", "s-room"]
    assert await ids(service, specialties=[SPECIALTY]) == ["s-dr", "s-dr-room"]
    assert await ids(service, specialties=[SPECIALTY], actors=["Location/room"]) == ["s-dr-room"]


async def test_schedules_location_and_organization_through_actors(
    service: SchedulingService,
) -> None:
    assert await ids(service, location_refs=["Location/room"]) == ["s-dr-room", "s-room"]
    assert await ids(service, location_refs=["site"]) == ["s-dr", "s-dr-room"]
    assert await ids(service, organization_refs=["Organization/org"]) == [
        "s-derm",
        "s-nurse",
        "s-other",
    ]
    assert await ids(service, organization_refs=["Organization/none"]) == []


async def test_free_slots_rule_slots_by_start_then_schedule(service: SchedulingService) -> None:
    schedules = await service.matcher.schedules(actors=["PractitionerRole/dr"])
    start, end = parse_instant(f"{MONDAY}T00:00:00Z"), parse_instant(f"{MONDAY}T23:59:00Z")
    found = await service.free_slots(schedules, start, end)
    assert [(c.start, c.schedule_id) for c in found][:2] == [
        (parse_instant(f"{MONDAY}T14:00:00Z"), "s-dr"),
        (parse_instant(f"{MONDAY}T14:00:00Z"), "s-dr-room"),
    ]
    assert len(found) == 8 and all(isinstance(c, OfferedSlot) for c in found)
    longer = await service.free_slots(schedules[:1], start, end, duration_us=45 * 60_000_000)
    assert [c.end - c.start for c in longer] == [45 * 60_000_000] * 2


async def test_free_slots_shared_slot_booked_with_actor_counts_one_seat(
    service: SchedulingService, repository: Repository
) -> None:
    slot = {
        "resourceType": "Slot",
        "id": "class",
        "schedule": {"reference": "Schedule/s-dr"},
        "status": "free",
        "start": f"{MONDAY}T16:00:00Z",
        "end": f"{MONDAY}T17:00:00Z",
        "extension": [{"url": SLOT_CAPACITY_URL, "valueInteger": 3}],
    }
    await repository.update("Slot", "class", slot)
    appointment = {
        "resourceType": "Appointment",
        "status": "booked",
        "start": slot["start"],
        "end": slot["end"],
        "slot": [{"reference": "Slot/class"}],
        "participant": [
            {"actor": {"reference": "Patient/p"}, "status": "accepted"},
            {"actor": {"reference": "PractitionerRole/dr"}, "status": "accepted"},
        ],
    }
    await repository.create(appointment)
    (schedule,) = await service.matcher.schedules(schedule_ids=["s-dr"])
    start, end = parse_instant(f"{MONDAY}T00:00:00Z"), parse_instant(f"{MONDAY}T23:00:00Z")
    (offered,) = [
        c for c in await service.free_slots([schedule], start, end) if c.slot_id == "class"
    ]
    assert offered.capacity == 2  # its seat claim and its minute claims are one booking
    resource = service.slot_resource(offered)
    assert resource["extension"] == [{"url": SLOT_CAPACITY_URL, "valueInteger": 2}]
    assert resource["id"] == "class" and resource["start"] == slot["start"]


async def test_claimed_intervals_each_owner_merged_apart(
    service: SchedulingService, repository: Repository
) -> None:
    for start, end in (("14:00", "14:30"), ("14:30", "15:00")):
        await book_dr(repository, start, end)
    low = parse_instant(f"{MONDAY}T00:00:00Z")
    claimed = await claimed_intervals(service.lookup, "Schedule/s-dr", low, low + 86_400_000_000)
    assert [interval for _, interval in claimed] == [
        Interval(parse_instant(f"{MONDAY}T14:00:00Z"), parse_instant(f"{MONDAY}T14:30:00Z")),
        Interval(parse_instant(f"{MONDAY}T14:30:00Z"), parse_instant(f"{MONDAY}T15:00:00Z")),
    ]
    assert len({owner for owner, _ in claimed}) == 2


async def test_resolve_slot_stored_rule_and_unknown(service: SchedulingService) -> None:
    (schedule,) = await service.matcher.schedules(schedule_ids=["s-dr"])
    start = parse_instant(f"{MONDAY}T00:00:00Z")
    first = (await service.free_slots([schedule], start, start + 86_400_000_000))[0]
    resolved = await service.resolve_slot(first.slot_id)
    assert resolved == service.slot_resource(first)
    assert resolved is not None and resolved["start"] == f"{MONDAY}T14:00:00Z"
    off_grid = rule_slot_id("s-dr", first.start + 600_000_000, first.end + 600_000_000)
    assert await service.resolve_slot(off_grid) is None  # 10 minutes off the rules' grid
    assert await service.resolve_slot(first.slot_id.replace("s-dr", "s-none")) is None
    assert await service.resolve_slot("not-a-slot") is None


async def test_schedule_context_reads_actors_sites_and_bad_extension(
    service: SchedulingService,
) -> None:
    bad = {"url": extension_url("visit-duration"), "valueDuration": {"value": 20, "code": "h"}}
    schedule = sched("s-x", "PractitionerRole/dr", "Location/room", extension=[bad])
    context = await service.schedule_context(schedule)
    assert [a["id"] for a in context.actors] == ["dr", "room"]
    assert [site["id"] for site in context.locations] == ["site"]
    assert context.tz == "UTC" and context.params.visit_us == 30 * 60_000_000
    assert context.weekly is not None and context.weekly.source == "PractitionerRole"
    assert len(context.problems) == 1 and "visit-duration" in context.problems[0]


async def test_slot_resource_bare_candidate_has_no_schedule_codes(
    service: SchedulingService, repository: Repository
) -> None:
    bare = CandidateSlot("s", 0, 1_800_000_000, 1, "rs-0-u-s", "rule")
    assert service.slot_resource(bare) == {
        "resourceType": "Slot",
        "id": "rs-0-u-s",
        "meta": {"versionId": "1"},
        "schedule": {"reference": "Schedule/s"},
        "status": "free",
        "start": "1970-01-01T00:00:00Z",
        "end": "1970-01-01T00:30:00Z",
    }


def _minutes(ext_id: str, value: int) -> dict[str, Any]:
    duration = {"value": value, "unit": "min", "system": "http://unitsofmeasure.org", "code": "min"}
    return {"url": extension_url(ext_id, DEFAULT_BASE), "valueDuration": duration}


async def test_one_slot_window_sees_the_buffered_bookings_a_day_sees(
    service: SchedulingService, repository: Repository
) -> None:
    """Claims are read over the window widened by both buffers (`taken.taken_time`): each
    slot is free over its own window exactly when the whole day offers it, with bookings that
    touch its buffered time from just outside the window on either side."""
    buffered = sched(
        "s-buf",
        "PractitionerRole/dr",
        extension=[
            TZ,
            _minutes("visit-duration", 20),
            _minutes("buffer-before", 10),
            _minutes("buffer-after", 15),
        ],
    )
    await repository.update("Schedule", "s-buf", buffered)
    (schedule,) = await service.matcher.schedules(schedule_ids=["s-buf"])
    day, minute = parse_instant(f"{MONDAY}T00:00:00Z"), 60_000_000

    async def verdicts() -> list[bool]:
        whole = await service.free_slots([schedule], day, day + 1440 * minute)
        offered = {c.slot_id for c in whole}
        found = []
        for start in (day + 850 * minute, day + 895 * minute):  # 14:10 and 14:55 UTC
            slot_id = rule_slot_id("s-buf", start, start + 20 * minute)
            alone = await service.free_slots([schedule], start, start + 20 * minute)
            assert [c.slot_id for c in alone] == ([slot_id] if slot_id in offered else [])
            resolved = await service.resolve_slot(slot_id)
            assert (resolved is not None) == (slot_id in offered)
            found.append(slot_id in offered)
        return found

    # 09:00-11:00 New York: occupancies (visit - 10 min, + 15 min) [14:00, 14:45) and
    # [14:45, 15:30); a third would end past 16:00
    assert await verdicts() == [True, True]
    for start, end in (("13:45", "13:47"), ("15:35", "15:37")):
        await book_dr(repository, start, end)
    # [13:35, 14:02) touches the first 23 minutes before its window, [15:25, 15:52) the
    # second 20 minutes after its window: the buffers of both sides (25 minutes) reach them
    assert await verdicts() == [False, False]


def test_reference_parts_forms() -> None:
    assert reference_parts("Schedule/7") == ("Schedule", "7")
    assert reference_parts("7", "Schedule") == ("Schedule", "7")
    assert reference_parts("http://x/fhir/Location/1") is None  # canonical `Type/id` only
    assert reference_parts("7") is None
