"""The waitlist end to end on the real server (uvicorn on 127.0.0.1, SQLite, its own
background job): a patient joins by `$book`, a cancellation frees the time, the offer email
arrives through a real SMTP server (aiosmtpd) within seconds; its links show a page on GET
(a mail scanner's prefetch changes nothing), book or decline on POST, once."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller

from tests.conftest import LiveServer, _free_port, make_settings
from tests.subscriptions.receiver import Mailbox
from tests.waitlist.helpers import clinic, day, entry, ny, visit

DATE = day(4)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[LiveServer, Mailbox]]:
    box, port = Mailbox(), _free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    settings = make_settings(
        tmp_path, reminder_offsets="", dispatch_seconds=0.2, smtp_url=f"smtp://127.0.0.1:{port}"
    )
    try:
        with LiveServer(settings, with_base=True) as server:
            yield server, box
    finally:
        controller.stop()


def _link(message: Any, label: str) -> str:
    found = re.search(rf"{label}: (\S+)", message.get_content())
    assert found is not None, message.get_content()
    return found.group(1)


def _offer_mail(box: Mailbox, to: str, count: int) -> Any:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        mails = [m for m in box.messages if m["To"] == to and "free" in str(m["Subject"])]
        if len(mails) >= count:
            return mails[count - 1]
        time.sleep(0.05)
    raise AssertionError(f"no offer mail {count} to {to}: {[m['Subject'] for m in box.messages]}")


def test_offer_mail_links_book_and_decline_once(served: tuple[LiveServer, Mailbox]) -> None:
    server, box = served
    http = httpx.Client(base_url=server.base_url, timeout=15)
    page = httpx.Client(timeout=15, headers={"Accept": "text/html"})
    for resource in clinic():
        assert http.put(f"/{resource['resourceType']}/{resource['id']}", json=resource).is_success
    ann = http.post("/Appointment", json=visit("ann", ny(DATE, "10:00"), ny(DATE, "10:30")))
    assert ann.status_code == 201, ann.text
    params = {"resourceType": "Parameters", "parameter": []}
    for patient in ("bob", "cat"):
        body = {
            **params,
            "parameter": [{"name": "appointment-resource", "resource": entry(patient, DATE)}],
        }
        joined = http.post("/Appointment/$book", json=body)
        assert joined.status_code == 200, joined.text
    started = time.monotonic()
    cancelled = http.put(
        f"/Appointment/{ann.json()['id']}", json={**ann.json(), "status": "cancelled"}
    )
    assert cancelled.status_code == 200
    first = _offer_mail(box, "bob@example.org", 1)
    offered_in = time.monotonic() - started
    print(f"offer mail {offered_in * 1000:.0f} ms after the cancellation")
    assert offered_in < 10, offered_in

    decline = _link(first, "Decline")
    shown = page.get(decline)
    assert shown.status_code == 200 and "Decline</button>" in shown.text
    assert shown.headers["referrer-policy"] == "no-referrer"
    assert shown.headers["cache-control"] == "no-store"
    assert page.get(decline).status_code == 200  # a GET changes nothing
    declined = page.post(decline)
    assert declined.status_code == 200 and "Declined" in declined.text
    assert page.post(decline).status_code == 200  # again: still declined, nothing more
    accept_after = page.post(_link(first, "Confirm booking"))
    assert accept_after.status_code == 409 and "declined" in accept_after.text

    second = _offer_mail(box, "cat@example.org", 1)
    accept = _link(second, "Confirm booking")
    assert "Confirm booking</button>" in page.get(accept).text
    booked = page.post(accept)
    assert booked.status_code == 200 and "Booked" in booked.text, booked.text
    assert page.post(accept).status_code == 200  # a second click: booked, once
    refused = page.post(_link(second, "Decline"))
    assert refused.status_code == 409 and "booked already" in refused.text
    mine = http.get("/Appointment", params={"patient": "Patient/cat"}).json()
    statuses = sorted(e["resource"]["status"] for e in mine["entry"])
    assert statuses == ["booked", "cancelled"]  # the booked offer; the entry, closed
    bob = http.get("/Appointment", params={"patient": "Patient/bob", "status": "waitlist"}).json()
    assert len(bob["entry"]) == 1  # Bob declined this time, still waits for another


def test_bad_links_are_refused_in_the_asked_format(served: tuple[LiveServer, Mailbox]) -> None:
    server, _ = served
    origin = server.base_url.rsplit("/fhir", 1)[0]
    with httpx.Client(base_url=origin, timeout=15) as http:
        html = http.get("/waitlist/offers/not-a-token", headers={"Accept": "text/html"})
        assert html.status_code == 404 and "This link is not valid" in html.text
        fhir = http.post("/waitlist/offers/a.b.c", headers={"Accept": "application/fhir+json"})
        assert fhir.status_code == 404
        issue = fhir.json()["issue"][0]
        assert (fhir.json()["resourceType"], issue["code"]) == ("OperationOutcome", "not-found")
