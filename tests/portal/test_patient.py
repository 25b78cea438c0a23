"""The patient portal in a real browser: a patient signs in through the SMART authorization
server (standalone launch with PKCE, by the fhirclient library) and sees their appointments."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import expect

from tests.conftest import LiveServer
from tests.portal.conftest import off_loop
from tests.smart.flows import appointment, bearer, run_cli

MUNOZ = "demo-patient-munoz"


def origin(server: LiveServer) -> str:
    return server.base_url.rsplit("/fhir", 1)[0]


def sign_in(page: Any, server: LiveServer, username: str, password: str) -> None:
    page.goto(f"{origin(server)}/portal/")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("button", name="Allow").click()


def test_patient_signs_in_and_sees_a_booked_appointment(
    page: Any, portal_server: LiveServer
) -> None:
    token = off_loop(run_cli, portal_server.settings, "token", "--scope", "system/*.cruds")
    admin = bearer(token.strip())
    visit = {**appointment(MUNOZ, 2, 10), "status": "booked"}
    made = httpx.post(f"{portal_server.base_url}/Appointment", json=visit, headers=admin)
    assert made.status_code == 201, made.text
    sign_in(page, portal_server, "munoz", "demo-munoz")
    expect(page.get_by_role("heading", name="My appointments")).to_be_visible()
    row = page.locator(f'li[data-id="{made.json()["id"]}"]')
    expect(row).to_contain_text("Booked")
    expect(row).to_contain_text("10:00")
    expect(row).to_contain_text("Smith")


def next_week(day_offset: int) -> str:
    """A date next week (Monday + `day_offset`), Boston calendar, as YYYY-MM-DD."""
    return str(appointment(MUNOZ, day_offset, 12)["start"])[:10]


def find_times(page: Any, date: str, role: str = "demo-role-smith") -> None:
    page.get_by_label("Practitioner").select_option(role)
    page.get_by_label("Date").fill(date)
    page.get_by_role("button", name="Find times").click()


def test_patient_books_reschedules_and_cancels(
    page: Any, portal_server: LiveServer, shots: Path
) -> None:
    sign_in(page, portal_server, "munoz", "demo-munoz")
    page.get_by_role("link", name="Book an appointment").click()
    find_times(page, next_week(3))  # Thursday
    page.get_by_role("button", name="09:30").click()
    page.screenshot(path=str(shots / "patient-book.png"), full_page=True)
    page.get_by_role("button", name="Confirm booking").click()
    expect(page.get_by_role("heading", name="My appointments")).to_be_visible()
    first = page.locator("#upcoming li", has_text="09:30").filter(has_text="Booked")
    expect(first).to_have_count(1)
    page.screenshot(path=str(shots / "patient-home.png"), full_page=True)
    first_id = first.get_attribute("data-id")

    first.get_by_role("button", name="Reschedule").click()
    expect(page.get_by_role("heading", name="Reschedule")).to_be_visible()
    find_times(page, next_week(3))
    page.get_by_role("button", name="11:00").click()
    page.get_by_role("button", name="Confirm booking").click()
    expect(page.get_by_role("heading", name="My appointments")).to_be_visible()
    moved = page.locator("#upcoming li", has_text="11:00").filter(has_text="Booked")
    expect(moved).to_have_count(1)
    expect(page.locator(f'li[data-id="{first_id}"]')).to_contain_text("Cancelled")

    moved.get_by_role("button", name="Cancel").click()
    expect(page.get_by_role("status")).to_have_text("Your appointment is cancelled.")
    expect(moved).to_have_count(0)
    expect(page.locator("#upcoming li", has_text="11:00")).to_contain_text("Cancelled")


def test_two_patients_take_the_same_time_at_once_one_is_told_in_words(
    chromium: Any, portal_server: LiveServer, shots: Path
) -> None:
    second = {
        "given": "Ada",
        "family": "Quinn",
        "birthDate": "1980-01-01",
        "email": "ada.quinn@example.org",
        "username": "adaquinn",
        "password": "another long passphrase",
    }
    made = httpx.post(f"{origin(portal_server)}/auth/register", json=second)
    assert made.status_code == 201, made.text
    pages = []
    for username, password in (("munoz", "demo-munoz"), ("adaquinn", second["password"])):
        context = chromium.new_context(viewport={"width": 390, "height": 844})  # a phone
        page = context.new_page()
        sign_in(page, portal_server, username, password)
        page.get_by_role("link", name="Book an appointment").click()
        find_times(page, next_week(4))  # Friday
        page.get_by_role("button", name="14:00").click()
        pages.append(page)
    pages[0].screenshot(path=str(shots / "patient-phone.png"))
    for page in pages:  # both confirm the same held-by-nobody time
        page.get_by_role("button", name="Confirm booking").click()
    alerts = [p.get_by_role("alert") for p in pages]
    headings = [p.get_by_role("heading", name="My appointments") for p in pages]
    winners = 0
    for page, alert, heading in zip(pages, alerts, headings, strict=True):
        expect(heading.or_(alert.filter(has_text="could not be booked"))).to_be_visible()
        if heading.is_visible():
            winners += 1
        else:
            expect(alert).to_contain_text("That time could not be booked")
            assert "OperationOutcome" not in alert.inner_text()
            expect(alert).to_contain_text("someone else has just taken this time")
        page.context.close()
    assert winners == 1


def test_a_new_patient_creates_an_account_and_signs_in(
    page: Any, portal_server: LiveServer, shots: Path
) -> None:
    page.goto(f"{origin(portal_server)}/portal/")
    page.get_by_role("link", name="Create account").click()
    page.get_by_label("Given name").fill("Lena")
    page.get_by_label("Family name").fill("Park")
    page.get_by_label("Birth date").fill("1990-04-02")
    page.get_by_label("Email").fill("lena.park@example.org")
    page.get_by_label("Username").fill("lenapark")
    page.get_by_label("Password").fill("short")
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("alert")).to_contain_text("at least 10 characters")
    page.get_by_label("Password").fill("a long passphrase")
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()  # the server's page
    page.get_by_label("Username").fill("lenapark")
    page.get_by_label("Password").fill("a long passphrase")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Allow Clinic portal to connect?")).to_be_visible()
    expect(page.get_by_text("It will open the record of Lena Park.")).to_be_visible()
    expect(page.get_by_label("See, book, change and delete your appointments")).to_be_checked()
    page.screenshot(path=str(shots / "consent.png"), full_page=True)
    page.get_by_role("button", name="Allow").click()
    expect(page.get_by_role("heading", name="My appointments")).to_be_visible()
    expect(page.locator("#who")).to_have_text("Lena Park")
    expect(page.locator("#upcoming")).to_contain_text("No upcoming appointments.")


def tab_to(page: Any, text: str, most: int = 60) -> None:
    """Press Tab until the focused element's text (or accessible label) contains `text`."""
    for _ in range(most):
        page.keyboard.press("Tab")
        focused = page.evaluate(
            "(document.activeElement.getAttribute('aria-label') || '') + ' ' + "
            "(document.activeElement.textContent || '')"
        )
        if text in focused:
            return
    raise AssertionError(f"{text!r} is not reachable with Tab")


def test_keyboard_only_booking_and_page_weight(page: Any, portal_server: LiveServer) -> None:
    loaded: list[int] = []
    page.on("response", lambda r: loaded.append(len(r.body())) if r.ok else None)
    page.goto(f"{origin(portal_server)}/portal/")
    page.wait_for_load_state("networkidle")
    first_load = sum(loaded)
    assert first_load < 300_000, first_load
    keys = page.keyboard
    keys.press("Tab")  # the header's link
    keys.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Sign in"
    keys.press("Enter")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    keys.press("Tab")
    keys.type("munoz")
    keys.press("Tab")
    keys.type("demo-munoz")
    started = time.monotonic()
    keys.press("Enter")
    expect(page.get_by_role("button", name="Allow")).to_be_visible()
    tab_to(page, "Allow")
    keys.press("Enter")
    expect(page.get_by_role("heading", name="My appointments")).to_be_visible()
    tab_to(page, "Book an appointment")
    keys.press("Enter")
    expect(page.get_by_label("Date")).to_be_focused()
    month, day, year = next_week(1)[5:7], next_week(1)[8:10], next_week(1)[:4]  # Tuesday
    keys.type(f"{month}{day}{year}")
    keys.press("Enter")  # submits the form: Find times
    expect(page.get_by_role("button", name="13:30").first).to_be_visible()
    tab_to(page, "13:30")
    keys.press("Enter")
    expect(page.get_by_role("button", name="Confirm booking")).to_be_focused()
    keys.press("Enter")
    expect(page.locator("#upcoming li", has_text="13:30").filter(has_text="Booked")).to_have_count(
        1
    )
    took = time.monotonic() - started
    print(f"first load of /portal/: {first_load} bytes; sign in to booked: {took:.2f} s")
    assert took < 5, took


def test_patient_joins_the_waitlist_for_a_day(page: Any, portal_server: LiveServer) -> None:
    sign_in(page, portal_server, "munoz", "demo-munoz")
    page.get_by_role("link", name="Book an appointment").click()
    find_times(page, next_week(0))  # Monday
    page.get_by_role("button", name="Join waitlist").click()
    expect(page.get_by_role("status")).to_contain_text("You are on the waiting list")
    row = page.locator("#upcoming li", has_text="On the waiting list")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("Any time from")


def test_an_ehr_launches_the_portal_with_its_patient(page: Any, portal_server: LiveServer) -> None:
    printed = off_loop(
        run_cli,
        portal_server.settings,
        "launch",
        "--patient",
        MUNOZ,
        "--client",
        "portal",
        "--user",
        "Practitioner/demo-pract-smith",
    )
    url = next(word for word in printed.split() if word.startswith("http"))
    assert "/portal/?" in url and "launch=" in url, printed
    page.goto(url)
    page.get_by_label("Username").fill("smith")  # the EHR's user signs in
    page.get_by_label("Password").fill("demo-smith")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("It will open the record of José Muñoz.")).to_be_visible()
    page.get_by_role("button", name="Allow").click()
    expect(page.get_by_role("heading", name="My appointments")).to_be_visible()
    expect(page.locator("#who")).to_have_text("José Muñoz")


def test_a_video_visit_shows_its_join_link(page: Any, portal_server: LiveServer) -> None:
    token = off_loop(run_cli, portal_server.settings, "token", "--scope", "system/*.cruds")
    admin = bearer(token.strip())
    endpoint = {
        "resourceType": "Endpoint",
        "id": "video-1",
        "status": "active",
        "connectionType": {
            "system": "http://terminology.hl7.org/CodeSystem/endpoint-connection-type",
            "code": "hl7-fhir-rest",
        },
        "payloadType": [{"text": "video"}],
        "address": "https://video.example.org/room/1",
    }
    assert httpx.put(
        f"{portal_server.base_url}/Endpoint/video-1", json=endpoint, headers=admin
    ).is_success
    visit = {
        **appointment(MUNOZ, 4, 16),
        "status": "booked",
        "supportingInformation": [{"reference": "Endpoint/video-1"}],
    }
    made = httpx.post(f"{portal_server.base_url}/Appointment", json=visit, headers=admin)
    assert made.status_code == 201, made.text
    sign_in(page, portal_server, "munoz", "demo-munoz")
    row = page.locator(f'li[data-id="{made.json()["id"]}"]')
    link = row.get_by_role("link", name="Join the video visit")
    expect(link).to_have_attribute("href", "https://video.example.org/room/1")
