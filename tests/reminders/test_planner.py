"""Reminders follow their Appointment, on every engine, with a clock the test moves: booked ->
one CommunicationRequest per offset at the right time (a day before keeps the wall-clock
time across a daylight-saving change), with the patient's best channel and a text in the
appointment's zone; moved -> re-timed; cancelled -> revoked; booked later than an offset ->
that offset skipped, but one that came due while the planner was late is planned; opted out
of a channel -> the next one; no channel -> none. Planning again changes nothing."""

from __future__ import annotations

from typing import Any

from operations.reminders.planner import ReminderPlanner
from resources.fhir_dates import format_instant, now_us, parse_instant
from tests.reminders.helpers import SMITH_WITH_EMAIL, Clock, booking, reminders, seed
from tests.reminders.helpers import engine as engine  # noqa: PLC0414 (fixture)

# 2026-11-01 is the day New York leaves daylight-saving time (02:00 EDT -> 01:00 EST)
START = "2026-11-01T14:00:00Z"  # 09:00 EST
END = "2026-11-01T14:30:00Z"


async def setup(engine: Any, now: str, **settings: Any) -> tuple[Any, ReminderPlanner, Clock]:
    channels = {"smtp_url": "smtp://127.0.0.1:9", "sms_url": "http://127.0.0.1:9/sms"}
    factory = await engine(reminder_offsets="P1D,PT2H", **{**channels, **settings})
    repo = factory.for_job("test")
    await seed(repo)
    clock = Clock(now)
    planner = ReminderPlanner(factory.for_job("reminders"), clock)
    await planner.round()  # starts its cursor at the end of the log
    return repo, planner, clock


async def test_booked_creates_one_request_per_offset_at_wall_clock_times(engine: Any) -> None:
    repo, planner, _ = await setup(engine, "2026-10-20T12:00:00Z")
    appt = (await repo.create(booking(START, END))).stored.id
    assert await planner.round() == 1
    got = await reminders(repo, appt)
    assert sorted(got) == ["P1D", "PT2H"]
    assert got["P1D"]["occurrenceDateTime"] == "2026-10-31T13:00:00.000000Z"  # 09:00 EDT
    assert got["PT2H"]["occurrenceDateTime"] == "2026-11-01T12:00:00.000000Z"  # 07:00 EST
    request = got["P1D"]
    assert request["status"] == "active"
    assert request["basedOn"] == [{"reference": f"Appointment/{appt}"}]
    assert request["recipient"] == [{"reference": "Patient/ann"}]
    assert request["medium"][0]["coding"][0]["code"] == "EMAILWRIT"  # rank 1
    text = request["payload"][0]["contentString"]
    assert "Sunday 1 November 2026 at 09:00 EST (America/New_York)" in text
    assert "Dr. Smith" in text and "Main Street Clinic" in text
    assert await planner.round() == 0
    assert await reminders(repo, appt) == got


async def test_moved_retimes_cancelled_revokes(engine: Any) -> None:
    repo, planner, _ = await setup(engine, "2026-10-20T12:00:00Z")
    created = (await repo.create(booking(START, END))).stored
    await planner.round()
    moved = {**booking("2026-11-03T15:00:00Z", "2026-11-03T15:30:00Z"), "id": created.id}
    await repo.update("Appointment", created.id, moved)
    await planner.round()
    got = await reminders(repo, created.id)
    assert got["P1D"]["occurrenceDateTime"] == "2026-11-02T15:00:00.000000Z"
    assert got["PT2H"]["occurrenceDateTime"] == "2026-11-03T13:00:00.000000Z"
    assert {r["status"] for r in got.values()} == {"active"}
    await repo.update("Appointment", created.id, {**moved, "status": "cancelled"})
    await planner.round()
    assert {r["status"] for r in (await reminders(repo, created.id)).values()} == {"revoked"}


async def test_booked_later_than_an_offset_skips_it(engine: Any) -> None:
    repo, planner, _ = await setup(engine, "2026-11-01T08:00:00Z")  # 15 hours before
    appt = (await repo.create(booking(START, END))).stored.id
    await planner.round()
    assert sorted(await reminders(repo, appt)) == ["PT2H"]


async def test_a_reminder_due_while_the_planner_was_down_is_planned_not_skipped(
    engine: Any,
) -> None:
    repo, planner, clock = await setup(engine, "2000-01-01T00:00:00Z")
    clock.now = now_us()
    start = clock.now + 7200 * 1_000_000 + 2_000_000  # PT2H comes due 2 s after booking
    appt = (
        await repo.create(booking(format_instant(start), format_instant(start + 1800 * 1_000_000)))
    ).stored.id
    clock.now += 60 * 1_000_000  # the planner gets to it a minute late
    await planner.round()
    got = await reminders(repo, appt)
    assert sorted(got) == ["PT2H"]  # P1D had passed when it was booked: skipped
    assert got["PT2H"]["status"] == "active"
    assert parse_instant(got["PT2H"]["occurrenceDateTime"]) == start - 7200 * 1_000_000


async def test_opt_out_and_no_channel(engine: Any) -> None:
    factory = await engine(
        reminder_offsets="PT2H", smtp_url="smtp://127.0.0.1:9", sms_url="http://127.0.0.1:9/sms"
    )
    repo = factory.for_job("test")
    opt_out = {
        "url": "https://fhir-scheduling.example.org/StructureDefinition/reminder-opt-out",
        "valueCode": "email",
    }
    await seed(repo, extension=[opt_out])
    clock = Clock("2026-10-20T12:00:00Z")
    planner = ReminderPlanner(factory.for_job("reminders"), clock)
    await planner.round()
    appt = (await repo.create(booking(START, END))).stored.id
    await planner.round()
    assert (await reminders(repo, appt))["PT2H"]["medium"][0]["coding"][0]["code"] == "SMSWRIT"
    await seed(repo, telecom=[{"system": "phone", "use": "home", "value": "+1555"}])
    other = (await repo.create(booking("2026-11-02T14:00:00Z", "2026-11-02T14:30:00Z"))).stored.id
    await planner.round()
    assert await reminders(repo, other) == {}


async def test_confirmations_and_change_notices_go_to_both_parties(engine: Any) -> None:
    from tests.reminders.helpers import notices

    repo, planner, _ = await setup(engine, "2026-10-20T12:00:00Z")
    await repo.update("Practitioner", "smith", SMITH_WITH_EMAIL)
    created = (await repo.create(booking(START, END))).stored
    await planner.round()
    noted = {**booking(START, END), "id": created.id, "comment": "bring forms"}
    await repo.update("Appointment", created.id, noted)  # no change worth telling
    moved = {**noted, "start": "2026-11-03T15:00:00Z", "end": "2026-11-03T15:30:00Z"}
    await repo.update("Appointment", created.id, moved)
    await repo.update("Appointment", created.id, {**moved, "status": "cancelled"})
    await planner.round()
    got = await notices(repo, created.id)
    told = sorted(
        (n["recipient"][0]["reference"], n["payload"][0]["contentString"].rsplit(" ", 1)[-1])
        for n in got
    )
    assert told == sorted(
        [
            ("Patient/ann", "confirmed."),
            ("Practitioner/smith", "confirmed."),
            ("Patient/ann", "time."),
            ("Practitioner/smith", "time."),
            ("Patient/ann", "cancelled."),
            ("Practitioner/smith", "cancelled."),
        ]
    )
    assert {n["category"][0]["coding"][0]["code"] for n in got} == {"notification"}
    await planner.round()
    assert len(await notices(repo, created.id)) == 6


async def test_no_channel_configured_plans_nothing(engine: Any) -> None:
    repo, planner, _ = await setup(engine, "2026-10-20T12:00:00Z", smtp_url="", sms_url="")
    appt = (await repo.create(booking(START, END))).stored.id
    await planner.round()
    assert await reminders(repo, appt) == {}


async def test_only_the_channels_the_server_sends_on(engine: Any) -> None:
    repo, planner, _ = await setup(engine, "2026-10-20T12:00:00Z", smtp_url="")
    appt = (await repo.create(booking(START, END))).stored.id
    await planner.round()
    got = await reminders(repo, appt)
    assert {r["medium"][0]["coding"][0]["code"] for r in got.values()} == {"SMSWRIT"}
