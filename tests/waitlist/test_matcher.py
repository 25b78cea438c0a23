"""The waitlist on every engine, driven round by round: freed time goes to the best entry
(priority, then longest waiting) as a hold with a message carrying accept and decline links;
a decline or a lapsed offer passes the time to the next entry; an accept books it and closes
the entry; the third entry keeps waiting. Real SMTP server (aiosmtpd) on 127.0.0.1."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller

from operations.reminders.sender import ReminderSender, communication_id
from operations.scheduling.holds import sweep_expired_holds
from operations.waitlist.links import link_key, read_link
from operations.waitlist.matcher import WaitlistMatcher
from operations.waitlist.respond import accept, decline
from resources.fhir_dates import now_us
from tests.conftest import _free_port
from tests.reminders.helpers import Clock, notices
from tests.reminders.helpers import engine as engine  # noqa: PLC0414 (fixture)
from tests.subscriptions.receiver import Mailbox
from tests.waitlist.helpers import (
    REPLACES_URL,
    day,
    entry,
    ny,
    offered_to,
    offers,
    read,
    seed,
    visit,
)

DATE = day(5)


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, int]]:
    box, port = Mailbox(), _free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield box, port
    controller.stop()


class Clinic:
    """A started waitlist over a seeded clinic; Ann booked in the day's only slot."""

    def __init__(self, factory: Any, clock: Clock) -> None:
        self.repo = factory.for_job("test")
        self.job = factory.for_job("reminders")
        self.clock = clock
        self.matcher = WaitlistMatcher(self.job, clock)

    async def start(self) -> str:
        await seed(self.repo)
        await self.matcher.start()
        return (
            await self.repo.create(visit("ann", ny(DATE, "10:00"), ny(DATE, "10:30")))
        ).stored.id

    async def join(self, patient: str, priority: int | None = None, **more: Any) -> str:
        return (await self.repo.create(entry(patient, DATE, priority, **more))).stored.id

    async def cancel(self, appointment_id: str) -> None:
        body = await read(self.repo, "Appointment", appointment_id)
        body["status"] = "cancelled"
        await self.repo.update("Appointment", appointment_id, body)

    async def send(self) -> int:
        async with httpx.AsyncClient() as client:
            return await ReminderSender(self.job, client, self.clock).round()


async def make(engine: Any, port: int = 0) -> Clinic:
    smtp = {"smtp_url": f"smtp://127.0.0.1:{port}"} if port else {}
    factory = await engine(reminder_offsets="", **smtp)
    return Clinic(factory, Clock("2000-01-01T00:00:00Z"))


def links(message: Any) -> dict[str, str]:
    text = message.get_content()
    return {
        "accept": re.search(r"Confirm booking: (\S+)", text).group(1),  # type: ignore[union-attr]
        "decline": re.search(r"Decline: (\S+)", text).group(1),  # type: ignore[union-attr]
    }


async def test_cancel_decline_accept_with_three_entries(engine: Any, smtp: Any) -> None:
    box, port = smtp
    clinic = await make(engine, port)
    clinic.clock.now = now_us()
    ann = await clinic.start()
    bob = await clinic.join("bob")  # waiting longest, no priority
    cat = await clinic.join("cat", 2)
    dan = await clinic.join("dan", 1)  # priority 1 comes first
    assert await clinic.matcher.round() == 0  # nothing free: everybody waits
    assert await offers(clinic.repo) == []

    await clinic.cancel(ann)
    assert await clinic.matcher.round() == 1
    [first] = await offers(clinic.repo)
    assert (offered_to(first), first["status"]) == (dan, "pending")
    assert (first["start"], first["end"]) == (ny(DATE, "10:00"), ny(DATE, "10:30"))
    actors = {p["actor"]["reference"] for p in first["participant"]}
    assert actors == {"Patient/dan", "PractitionerRole/dr"}
    await clinic.send()
    [message] = [m for m in box.messages if m["To"] == "dan@example.org"]
    assert message["Subject"] == "A time has become free for you"
    assert "with Dr. Smith at Main Street Clinic" in message.get_content()
    urls = links(message)
    key = await link_key(clinic.job)
    token = urls["decline"].rsplit("/", 1)[1]
    assert read_link(key, token, now_us()).offer_id == first["id"]
    assert await clinic.matcher.round() == 0  # held for Dan: nobody else gets it

    view = await decline(clinic.job, first["id"], now_us())
    assert view.state == "declined"
    assert await clinic.matcher.round() == 1
    second = [o for o in await offers(clinic.repo) if o["status"] == "pending"]
    assert [offered_to(o) for o in second] == [cat]
    assert (second[0]["start"], second[0]["id"] != first["id"]) == (first["start"], True)

    view = await accept(clinic.job, second[0]["id"], now_us())
    assert view.state == "booked"
    assert (await read(clinic.repo, "Appointment", second[0]["id"]))["status"] == "booked"
    closed = await read(clinic.repo, "Appointment", cat)
    assert closed["status"] == "cancelled"
    assert closed["cancelationReason"]["coding"][0]["code"] == "waitlist-booked"
    assert second[0]["id"] in closed["cancelationReason"]["text"]
    assert (await read(clinic.repo, "Appointment", dan))["status"] == "waitlist"
    assert (await read(clinic.repo, "Appointment", bob))["status"] == "waitlist"
    assert await clinic.matcher.round() == 0  # the time is booked: Bob and Dan keep waiting
    assert len([o for o in await offers(clinic.repo) if o["status"] == "pending"]) == 0


async def test_a_lapsed_offer_goes_to_the_next_entry(engine: Any) -> None:
    clinic = await make(engine)
    clinic.clock.now = now_us()
    ann = await clinic.start()
    bob = await clinic.join("bob")
    cat = await clinic.join("cat")
    await clinic.matcher.round()
    await clinic.cancel(ann)
    assert await clinic.matcher.round() == 1
    [first] = await offers(clinic.repo)
    assert offered_to(first) == bob
    clinic.clock.now += 901 * 1_000_000  # the offer's 900 s pass unanswered
    assert await sweep_expired_holds(clinic.job, clinic.clock.now) == [first["id"]]
    assert await clinic.matcher.round() == 1
    pending = [o for o in await offers(clinic.repo) if o["status"] == "pending"]
    assert [offered_to(o) for o in pending] == [cat]
    assert (await read(clinic.repo, "Appointment", bob))["status"] == "waitlist"


async def test_two_cancellations_and_two_matchers_at_once_never_offer_one_time_twice(
    engine: Any,
) -> None:
    factory = await engine(reminder_offsets="")
    repo = factory.for_job("test")
    await seed(repo, hours=("10:00:00", "11:00:00"))  # two slots a day
    clock = Clock("2000-01-01T00:00:00Z")
    clock.now = now_us()
    one, two = (
        WaitlistMatcher(factory.for_job("a"), clock),
        WaitlistMatcher(factory.for_job("b"), clock),
    )
    await one.start()
    ann = (await repo.create(visit("ann", ny(DATE, "10:00"), ny(DATE, "10:30")))).stored.id
    bob = (await repo.create(visit("bob", ny(DATE, "10:30"), ny(DATE, "11:00")))).stored.id
    entries = [(await repo.create(entry(p, DATE))).stored.id for p in ("cat", "dan", "ann")]
    await one.round()

    async def cancel(appointment_id: str) -> None:
        body = await read(repo, "Appointment", appointment_id)
        await repo.update("Appointment", appointment_id, {**body, "status": "cancelled"})

    await asyncio.gather(cancel(ann), cancel(bob))
    made = await asyncio.gather(one.round(), two.round())
    held = [o for o in await offers(repo) if o["status"] == "pending"]
    assert sum(made) >= 2
    assert len(held) == 2, held
    assert len({o["start"] for o in held}) == 2  # each freed time held once
    assert {offered_to(o) for o in held} == set(entries[:2])  # one offer per entry, in order
    results = await asyncio.gather(
        *(accept(factory.for_job("link"), o["id"], now_us()) for o in held)
    )
    assert [r.state for r in results] == ["booked", "booked"]
    assert (await read(repo, "Appointment", entries[2]))["status"] == "waitlist"
    await one.round()
    assert len([o for o in await offers(repo) if o["status"] == "pending"]) == 0


async def test_an_entry_replacing_a_booking_is_offered_only_earlier_time_and_moves(
    engine: Any,
) -> None:
    factory = await engine(reminder_offsets="")
    repo = factory.for_job("test")
    await seed(repo, hours=("10:00:00", "11:00:00"))
    clock = Clock("2000-01-01T00:00:00Z")
    clock.now = now_us()
    matcher = WaitlistMatcher(factory.for_job("job"), clock)
    await matcher.start()
    later = day(7)
    first = (await repo.create(visit("ann", ny(DATE, "10:00"), ny(DATE, "10:30")))).stored.id
    await repo.create(visit("bob", ny(DATE, "10:30"), ny(DATE, "11:00")))
    own = (await repo.create(visit("cat", ny(later, "10:00"), ny(later, "10:30")))).stored.id
    replaces = {"url": REPLACES_URL, "valueReference": {"reference": f"Appointment/{own}"}}
    window = [
        {"start": ny(DATE, "00:00"), "end": ny(DATE, "23:59")},
        {"start": ny(later, "00:00"), "end": ny(later, "23:59")},
    ]
    cat = (
        await repo.create(entry("cat", DATE, extension=[replaces], requestedPeriod=window))
    ).stored.id
    await matcher.round()
    assert await offers(repo) == []  # her own day's 10:30 is free, but later
    body = await read(repo, "Appointment", first)
    await repo.update("Appointment", first, {**body, "status": "cancelled"})
    assert await matcher.round() == 1
    [offer] = await offers(repo)
    assert (offered_to(offer), offer["start"]) == (cat, ny(DATE, "10:00"))
    assert (await accept(factory.for_job("link"), offer["id"], now_us())).state == "booked"
    moved_from = await read(repo, "Appointment", own)
    assert moved_from["status"] == "cancelled"  # the booking it replaced, in the same write
    assert (await read(repo, "Appointment", cat))["status"] == "cancelled"


async def test_leaving_the_waitlist_withdraws_the_held_offer_and_passed_entries_close(
    engine: Any,
) -> None:
    clinic = await make(engine)
    clinic.clock.now = now_us()
    ann = await clinic.start()
    bob = await clinic.join("bob")
    cat = await clinic.join("cat")
    await clinic.matcher.round()
    await clinic.cancel(ann)
    await clinic.matcher.round()
    [offer] = await offers(clinic.repo)
    assert offered_to(offer) == bob
    await clinic.cancel(bob)  # Bob leaves the waitlist while the offer is held for him
    await clinic.matcher.round()
    withdrawn = await read(clinic.repo, "Appointment", offer["id"])
    assert withdrawn["status"] == "cancelled"
    await clinic.matcher.round()  # the withdrawal freed the time: Cat's turn
    held = [o for o in await offers(clinic.repo) if o["status"] == "pending"]
    assert [offered_to(o) for o in held] == [cat]
    clinic.clock.now += 10 * 86_400 * 1_000_000  # Cat's day has passed
    await clinic.repo.create(entry("dan", DATE))
    await clinic.matcher.round()
    for passed in (cat,):
        closed = await read(clinic.repo, "Appointment", passed)
        assert closed["status"] == "cancelled"
        assert closed["cancelationReason"]["coding"][0]["code"] == "waitlist-expired"


async def test_hours_added_and_a_booking_moved_away_free_time_for_the_waitlist(
    engine: Any,
) -> None:
    clinic = await make(engine)
    clinic.clock.now = now_us()
    ann = await clinic.start()
    bob = await clinic.join("bob")
    await clinic.matcher.round()
    role = await read(clinic.repo, "PractitionerRole", "dr")
    role["availableTime"][0]["availableEndTime"] = "11:00:00"  # half an hour more each day
    await clinic.repo.update("PractitionerRole", "dr", role)
    assert await clinic.matcher.round() == 1
    [offer] = await offers(clinic.repo)
    assert (offered_to(offer), offer["start"]) == (bob, ny(DATE, "10:30"))

    cat = await clinic.join("cat")
    await clinic.matcher.round()
    booked = await read(clinic.repo, "Appointment", ann)
    later = day(6)
    moved = {**booked, "start": ny(later, "10:00"), "end": ny(later, "10:30")}
    await clinic.repo.update("Appointment", ann, moved)  # Ann moves to the next day
    assert await clinic.matcher.round() == 1
    held = [o for o in await offers(clinic.repo) if offered_to(o) == cat]
    assert [o["start"] for o in held] == [ny(DATE, "10:00")]


async def test_an_offer_message_is_not_sent_once_the_offer_ended(engine: Any, smtp: Any) -> None:
    box, port = smtp
    clinic = await make(engine, port)
    clinic.clock.now = now_us()
    ann = await clinic.start()
    await clinic.join("bob")
    await clinic.matcher.round()
    await clinic.send()
    box.messages.clear()
    await clinic.cancel(ann)
    await clinic.matcher.round()
    [offer] = await offers(clinic.repo)
    await decline(clinic.job, offer["id"], now_us())  # declined in the app before any mail
    await clinic.send()
    assert [m for m in box.messages if "free" in str(m["Subject"])] == []
    [message] = [n for n in await notices(clinic.repo, offer["id"]) if len(n["category"]) == 2]
    assert message["status"] == "revoked"
    sent = await read(clinic.repo, "Communication", communication_id(message))
    assert sent["status"] == "not-done"
    assert sent["statusReason"]["text"] == "The offer ended before it could be sent"
