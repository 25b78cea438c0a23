"""Holds that expire, on every engine with the app at hand (its repository and store): the
sweeper cancels lapsed holds and frees their time, even once taken over, and runs in the
background; and no double booking under 50 concurrent writers of every kind (`$hold`,
`$book`, REST, transaction) of one time (SCHEDULING.md "Never double-book")."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from operations.scheduling.holds import sweep_expired_holds
from resources.fhir_dates import now_us, parse_instant
from tests.api.booking_helpers import (
    LAPSED,
    Server,
    appointment,
    assert_taken,
    at,
    audits,
    book,
    count,
    first_proposal,
    hold,
    read,
    ref,
    running,
    the_appointment,
)
from tests.engines import ALL_ENGINES


@pytest.fixture(params=ALL_ENGINES)
async def server(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Server]:
    async with running(request.param, tmp_path) as served:
        yield served


async def test_hold_expiry_sweep_cancels_and_frees_time(server: Server) -> None:
    client = server.client
    held = the_appointment(await hold(client, ref((await first_proposal(client))["id"])))
    taker = appointment(held["start"], held["end"], "pending", patient="Patient/pat2")
    assert_taken(await book(client, ("appointment-resource", taker)))
    assert await sweep_expired_holds(server.repository, now_us()) == []
    later = now_us() + 301_000_000
    assert await sweep_expired_holds(server.repository, later) == [held["id"]]
    cancelled = await read(client, held["id"])
    assert cancelled["status"] == "cancelled" and "extension" not in cancelled
    assert cancelled["cancelationReason"] == {"text": "The hold expired"}
    assert await server.store.claims_of(f"Appointment/{held['id']}") == []
    assert await audits(client, held["id"]) == [("C", "ITI-116", "0"), ("U", "ITI-116", "0")]
    the_appointment(await book(client, ("appointment-resource", taker)))
    assert await sweep_expired_holds(server.repository, later) == []


async def test_hold_expired_and_taken_over_is_still_cancelled_by_sweep(server: Server) -> None:
    client = server.client
    held = the_appointment(await hold(client, ref((await first_proposal(client))["id"])))
    lapsed = {**held, "extension": [LAPSED]}
    assert (await client.put(f"/Appointment/{held['id']}", json=lapsed)).status_code == 200
    taker = appointment(held["start"], held["end"], "pending", patient="Patient/pat2")
    the_appointment(await book(client, ("appointment-resource", taker)))  # takes the claims over
    assert await sweep_expired_holds(server.repository) == [held["id"]]
    assert (await read(client, held["id"]))["status"] == "cancelled"


async def test_hold_background_sweeper_cancels_expired_hold(tmp_path: Path) -> None:
    async with running("sqlite", tmp_path, hold_seconds=1) as server:  # swept every 0.25 s
        client = server.client
        held = the_appointment(await hold(client, ref((await first_proposal(client))["id"])))
        for _ in range(50):
            if (await read(client, held["id"]))["status"] == "cancelled":
                break
            await asyncio.sleep(0.1)
        assert (await read(client, held["id"]))["status"] == "cancelled"
        taker = appointment(held["start"], held["end"], "pending", patient="Patient/pat2")
        the_appointment(await book(client, ("appointment-resource", taker)))


async def test_hold_book_rest_transaction_concurrent_same_time_exactly_one_wins(
    server: Server,
) -> None:
    """50 writers of one time (dr + room 09:00-09:30) by every path: exactly one wins, and no
    minute of any Schedule is claimed or booked twice (SCHEDULING.md "Never double-book")."""
    client = server.client
    actors = ("PractitionerRole/dr", "Location/room")

    def wanted(n: int, status: str) -> dict[str, Any]:
        patient = f"Patient/pat{'' if n % 4 == 0 else n % 4 + 1}"
        return appointment(
            at("09:00"), at("09:30"), status, actors=actors, patient=patient, comment=f"w{n}"
        )

    async def write(n: int) -> httpx.Response:
        kind = n % 4
        if kind == 0:
            return await hold(client, ("appointment-resource", wanted(n, "proposed")))
        if kind == 1:
            return await book(client, ("appointment-resource", wanted(n, "pending")))
        if kind == 2:
            return await client.post("/Appointment", json=wanted(n, "booked"))
        entry = {
            "resource": wanted(n, "booked"),
            "request": {"method": "POST", "url": "Appointment"},
        }
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [entry]}
        return await client.post("", json=bundle)

    responses = await asyncio.gather(*(write(n) for n in range(50)))
    statuses = Counter(r.status_code for r in responses)
    assert statuses[409] == 49 and sum(statuses.values()) == 50, statuses
    for response in responses:
        if response.status_code == 409:
            issue = response.json()["issue"][0]
            assert issue["details"]["coding"][0]["code"] == "slot-unavailable", issue
    assert await count(client, "Appointment", status="booked,pending") == 1
    await assert_never_double_booked(server)


async def assert_never_double_booked(server: Server) -> None:
    """Every live claim key has one owner (the store's guarantee) that is a holding Appointment
    claiming exactly its own minutes; and no Schedule minute is in two holding Appointments."""
    claims = [
        claim
        for schedule in ("s-dr", "s-dr2", "s-room", "s-room2")
        for claim in await server.store.claims_in(f"Schedule/{schedule}", 0, 2**40)
    ]
    assert len({c.key for c in claims}) == len(claims)
    minutes: Counter[tuple[str, int]] = Counter()
    r = await server.client.get(
        "/Appointment", params={"status": "booked,pending", "_count": "1000"}
    )
    by_actor = {
        "PractitionerRole/dr": "s-dr",
        "PractitionerRole/dr2": "s-dr2",
        "Location/room": "s-room",
        "Location/room2": "s-room2",
    }
    owners = set()
    for entry in r.json().get("entry", []):
        appt = entry["resource"]
        owners.add(f"Appointment/{appt['id']}")
        first = parse_instant(appt["start"]) // 60_000_000
        last = parse_instant(appt["end"]) // 60_000_000
        for p in appt["participant"]:
            schedule = by_actor.get(p["actor"]["reference"])
            for minute in range(first, last) if schedule else ():
                minutes[(schedule, minute)] += 1
    assert all(n == 1 for n in minutes.values()), minutes.most_common(3)
    assert {c.owner for c in claims} <= owners
    assert {(c.key.scope.split("/")[1], c.key.quantum) for c in claims} == set(minutes)
