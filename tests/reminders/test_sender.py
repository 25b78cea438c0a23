"""Sending reminders, on every engine, to a real SMTP server (aiosmtpd) and an SMS sink (a
real HTTP server) on 127.0.0.1, with a clock the test moves: sent once when due (email with
the Communication's Message-ID; SMS as the Twilio form with basic auth and an idempotency
key), recorded as a `completed` Communication and a `completed` request; an SMTP server down
is retried until it is back; a permanent gateway refusal ends `not-done`, not retried; a
cancelled appointment gets nothing; a restart after a crash sends each reminder once."""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from aiosmtpd.controller import Controller

from operations.reminders.planner import ReminderPlanner
from operations.reminders.sender import ReminderSender, communication_id
from tests.conftest import _free_port
from tests.reminders.helpers import SMITH_WITH_EMAIL, Clock, booking, reminders, seed
from tests.reminders.helpers import engine as engine  # noqa: PLC0414 (fixture)
from tests.subscriptions.receiver import Mailbox, Receiver

START, END = "2026-11-01T14:00:00Z", "2026-11-01T14:30:00Z"


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, int, Controller]]:
    box, port = Mailbox(), _free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield box, port, controller
    controller.stop()


async def setup(
    engine: Any, smtp_port: int, sms_url: str = "", **patient: Any
) -> tuple[Any, Any, Any, Clock, str]:
    factory = await engine(
        reminder_offsets="PT2H",
        smtp_url=f"smtp://127.0.0.1:{smtp_port}",
        mail_from="clinic@example.org",
        sms_url=sms_url,
        sms_account="AC123",
        sms_token="secret",
        sms_from="+15559990000",
    )
    repo = factory.for_job("test")
    await seed(repo, **patient)
    clock = Clock("2026-10-30T12:00:00Z")
    job = factory.for_job("reminders")
    planner = ReminderPlanner(job, clock)
    await planner.round()
    appt = (await repo.create(booking(START, END))).stored.id
    await planner.round()
    async with httpx.AsyncClient() as client:  # the booking's confirmation goes out first
        await ReminderSender(job, client, clock).round()
    return repo, job, planner, clock, appt


async def communication(repo: Any, request: dict[str, Any]) -> dict[str, Any]:
    stored = await repo.lookup.read("Communication", communication_id(request))
    assert stored is not None and stored.content is not None
    body: dict[str, Any] = orjson.loads(stored.content)
    return body


async def test_due_email_is_sent_once_and_recorded(engine: Any, smtp: Any) -> None:
    box, port, _ = smtp
    repo, job, _, clock, appt = await setup(engine, port)
    [confirmation] = box.messages
    assert confirmation["Subject"] == "Appointment notice"
    assert "is confirmed" in confirmation.get_content()
    box.messages.clear()
    async with httpx.AsyncClient() as client:
        sender = ReminderSender(job, client, clock)
        assert await sender.round() == 0  # not due yet
        clock.set("2026-11-01T12:00:30Z")
        assert await sender.round() == 1
        assert await sender.round() == 0
    [message] = box.messages
    request = (await reminders(repo, appt))["PT2H"]
    comm = await communication(repo, request)
    assert message["To"] == "ann@example.org" and message["From"] == "clinic@example.org"
    assert message["Message-ID"] == f"<{comm['id']}@fhir-server>"
    assert "09:00 EST" in message.get_content()
    assert (request["status"], comm["status"]) == ("completed", "completed")
    assert comm["basedOn"] == [{"reference": f"CommunicationRequest/{request['id']}"}]
    assert comm["sent"].startswith("2026-11-01T12:00:30")


async def test_sms_goes_to_the_gateway_and_a_permanent_refusal_is_not_retried(
    engine: Any, smtp: Any
) -> None:
    sink = Receiver().start()
    try:
        mobile_only = [{"system": "sms", "value": "+15550001111"}]
        repo, job, _, clock, appt = await setup(engine, smtp[1], sink.url, telecom=mobile_only)
        sink.wait_for(1)
        sink.requests.clear()  # the booking's confirmation
        clock.set("2026-11-01T12:01:00Z")
        async with httpx.AsyncClient() as client:
            assert await ReminderSender(job, client, clock).round() == 1
        [got] = sink.wait_for(1)
        form = dict(urllib.parse.parse_qsl(got.body.decode()))
        assert form["To"] == "+15550001111" and form["From"] == "+15559990000"
        assert "Reminder: your appointment" in form["Body"]
        assert got.headers["Authorization"].startswith("Basic ")
        request = (await reminders(repo, appt))["PT2H"]
        assert got.headers["I-Twilio-Idempotency-Token"] == communication_id(request)
    finally:
        sink.stop()


async def test_smtp_down_is_retried_until_it_is_back(engine: Any) -> None:
    box, port = Mailbox(), _free_port()  # nothing listens on the SMTP port yet
    repo, job, _, clock, appt = await setup(engine, port)
    async with httpx.AsyncClient() as client:
        sender = ReminderSender(job, client, clock)
        clock.set("2026-11-01T12:00:00Z")
        assert await sender.round() == 0  # SMTP down: retry later
        request = (await reminders(repo, appt))["PT2H"]
        assert request["status"] == "active"
        assert (await communication(repo, request))["status"] == "in-progress"
        clock.set("2026-11-01T12:10:00Z")  # ten minutes later it is back
        controller = Controller(box, hostname="127.0.0.1", port=port)
        controller.start()
        try:
            assert await sender.round() == 1  # the confirmation's day-long window has passed
        finally:
            controller.stop()
    assert [m["Subject"] for m in box.messages] == ["Appointment reminder"]
    assert (await reminders(repo, appt))["PT2H"]["status"] == "completed"


async def test_cancelled_appointment_gets_nothing(engine: Any, smtp: Any) -> None:
    box, port, _ = smtp
    repo, job, _, clock, appt = await setup(engine, port)
    box.messages.clear()  # the booking's confirmation
    current = await repo.read("Appointment", appt)
    cancelled = {**orjson.loads(current.content), "status": "cancelled"}
    await repo.update("Appointment", appt, cancelled)  # the planner has not run since
    clock.set("2026-11-01T12:05:00Z")
    async with httpx.AsyncClient() as client:
        assert await ReminderSender(job, client, clock).round() == 0
    request = (await reminders(repo, appt))["PT2H"]
    comm = await communication(repo, request)
    assert (request["status"], comm["status"]) == ("revoked", "not-done")
    assert "no longer booked" in comm["statusReason"]["text"]
    assert [m.get_content() for m in box.messages] == []


async def test_a_crash_before_recording_the_send_resends_the_same_message_once(
    engine: Any, smtp: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    box, port, _ = smtp
    _, job, _, clock, _ = await setup(engine, port)
    box.messages.clear()  # the booking's confirmation
    clock.set("2026-11-01T12:00:00Z")
    async with httpx.AsyncClient() as client:
        dying = ReminderSender(job, client, clock)

        async def crash(*args: Any) -> None:
            raise ConnectionError("the process died after the SMTP exchange")

        monkeypatch.setattr(dying, "_finish", crash)
        with pytest.raises(ConnectionError):
            await dying.round()
        restarted = ReminderSender(job, client, clock)
        assert await restarted.round() == 1
        assert await restarted.round() == 0
    ids = {m["Message-ID"] for m in box.messages}
    assert len(box.messages) == 2 and len(ids) == 1  # the one repeat carries the same id


async def test_a_crash_before_sending_sends_exactly_once_after_restart(
    engine: Any, smtp: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    box, port, _ = smtp
    repo, job, _, clock, appt = await setup(engine, port)
    box.messages.clear()  # the booking's confirmation
    clock.set("2026-11-01T12:00:00Z")
    async with httpx.AsyncClient() as client:
        dying = ReminderSender(job, client, clock)

        async def crash(*args: Any) -> None:
            raise ConnectionError("the process died before the SMTP exchange")

        monkeypatch.setattr(dying, "_deliver", crash)
        with pytest.raises(ConnectionError):
            await dying.round()
        request = (await reminders(repo, appt))["PT2H"]
        assert (await communication(repo, request))["status"] == "in-progress"
        restarted = ReminderSender(job, client, clock)
        assert await restarted.round() == 1
        assert await restarted.round() == 0
    assert len(box.messages) == 1


async def test_a_permanent_gateway_refusal_ends_not_done_and_is_not_retried(
    engine: Any, smtp: Any
) -> None:
    sink = Receiver(fail_first=100, fail_status=400).start()
    try:
        mobile_only = [{"system": "sms", "value": "+15550001111"}]
        repo, job, _, clock, appt = await setup(engine, smtp[1], sink.url, telecom=mobile_only)
        clock.set("2026-11-01T12:01:00Z")
        async with httpx.AsyncClient() as client:
            sender = ReminderSender(job, client, clock)
            assert await sender.round() == 0
            clock.set("2026-11-01T12:30:00Z")
            assert await sender.round() == 0
        assert sink.failed == 2  # the confirmation and the reminder, each once
        request = (await reminders(repo, appt))["PT2H"]
        comm = await communication(repo, request)
        assert (request["status"], comm["status"]) == ("revoked", "not-done")
        assert "HTTP 400" in comm["statusReason"]["text"]
    finally:
        sink.stop()


async def test_confirmations_reach_the_patient_and_the_practitioner(engine: Any, smtp: Any) -> None:
    box, port, _ = smtp
    factory = await engine(reminder_offsets="", smtp_url=f"smtp://127.0.0.1:{port}")
    repo = factory.for_job("test")
    await seed(repo)
    await repo.update("Practitioner", "smith", SMITH_WITH_EMAIL)
    clock = Clock("2026-10-30T12:00:00Z")
    job = factory.for_job("reminders")
    planner = ReminderPlanner(job, clock)
    await planner.start()
    await repo.create(booking(START, END))
    await planner.round()
    async with httpx.AsyncClient() as client:
        assert await ReminderSender(job, client, clock).round() == 2
    assert sorted(m["To"] for m in box.messages) == ["ann@example.org", "smith@example.org"]
