"""The provider schedule in a real browser: Dr. Smith signs in at /portal/provider/, sees her
day (free, booked), adds time off, and a patient no longer finds those times; a booked
patient's copay is due, then recorded paid; the patient is marked arrived, then fulfilled;
staff book for a patient; weekly hours added open a day to patients."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import expect

from tests.conftest import LiveServer
from tests.portal.conftest import off_loop
from tests.portal.test_patient import MUNOZ, find_times, next_week, origin, sign_in
from tests.smart.flows import appointment, bearer, run_cli

DASH = "\u2013"  # the day view writes times as 09:00, DASH, 09:30


def provider_sign_in(page: Any, server: LiveServer) -> None:
    page.goto(f"{origin(server)}/portal/provider/")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_label("Username").fill("smith")
    page.get_by_label("Password").fill("demo-smith")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("button", name="Allow").click()
    expect(page.get_by_role("heading", name="Schedule")).to_be_visible()
    expect(page.locator("#day li").first).to_be_visible()  # today's schedule has loaded


def test_time_off_hides_times_from_patients_and_check_in(
    chromium: Any, portal_server: LiveServer, shots: Path
) -> None:
    token = off_loop(run_cli, portal_server.settings, "token", "--scope", "system/*.cruds")
    visit = {**appointment(MUNOZ, 2, 9), "status": "booked"}  # Wednesday 09:00
    made = httpx.post(
        f"{portal_server.base_url}/Appointment", json=visit, headers=bearer(token.strip())
    )
    assert made.status_code == 201, made.text
    context = chromium.new_context(viewport={"width": 1024, "height": 900})
    page = context.new_page()
    provider_sign_in(page, portal_server)
    expect(page.get_by_label("Practitioner")).to_have_value("demo-role-smith")  # her own
    page.get_by_label("Date", exact=True).fill(next_week(2))
    page.get_by_role("button", name="Show the day").click()
    booked = page.locator("#day li", has_text="José Muñoz")
    expect(booked).to_contain_text("Booked")
    expect(page.locator("#day li", has_text=f"13:00{DASH}13:30")).to_contain_text("Free")

    page.get_by_label("From").fill("13:00")
    page.get_by_label("To").fill("15:00")
    page.get_by_label("Reason").fill("Training")
    page.get_by_role("button", name="Add time off").click()
    expect(page.get_by_role("status")).to_have_text("Time off added.")
    expect(page.locator("#day li", has_text="Training")).to_contain_text(f"13:00{DASH}15:00")
    expect(page.locator("#day li", has_text=f"13:30{DASH}14:00")).to_have_count(0)
    starts = [t.split(DASH)[0] for t in page.locator("#day li .when").all_inner_texts()]
    assert starts == sorted(starts), starts  # the day in order

    expect(booked).to_contain_text("Copay $25.00: due")
    booked.get_by_role("button", name="Record copay paid").click()
    expect(page.get_by_role("status")).to_have_text("Copay of $25.00 recorded as paid.")
    expect(page.locator("#day li", has_text="José Muñoz")).to_contain_text("Copay $25.00: paid")
    booked.get_by_role("button", name="Arrived").click()
    expect(page.locator("#day li", has_text="José Muñoz")).to_contain_text("Arrived")
    page.locator("#day li", has_text="José Muñoz").get_by_role("button", name="Fulfilled").click()
    expect(page.locator("#day li", has_text="José Muñoz")).to_contain_text("Attended")
    page.screenshot(path=str(shots / "provider-day.png"), full_page=True)
    context.close()

    patient = chromium.new_context().new_page()
    sign_in(patient, portal_server, "munoz", "demo-munoz")
    patient.get_by_role("link", name="Book an appointment").click()
    find_times(patient, next_week(2))
    expect(patient.get_by_role("button", name="15:00")).to_be_visible()
    for hidden in ("13:00", "13:30", "14:00", "14:30"):
        expect(patient.get_by_role("button", name=hidden)).to_have_count(0)
    patient.context.close()


def test_staff_book_a_free_time_for_a_patient_found_by_name(
    page: Any, portal_server: LiveServer
) -> None:
    provider_sign_in(page, portal_server)
    page.get_by_label("Date", exact=True).fill(next_week(3))  # Thursday
    page.get_by_role("button", name="Show the day").click()
    page.locator("#day li", has_text=f"10:00{DASH}10:30").get_by_role(
        "button", name="Book for a patient"
    ).click()
    expect(page.get_by_role("heading", name=f"Book 10:00{DASH}10:30 for a patient")).to_be_visible()
    page.get_by_label("Family name").fill("muller")
    page.get_by_role("button", name="Find the patient").click()
    page.get_by_role("button", name="Book for Zoë Müller").click()
    expect(page.get_by_role("status")).to_have_text("Booked for Zoë Müller.")
    row = page.locator("#day li", has_text=f"10:00{DASH}10:30")
    expect(row).to_contain_text("Booked")
    expect(row).to_contain_text("Zoë Müller")


def test_weekly_hours_added_open_a_saturday_to_patients(
    chromium: Any, portal_server: LiveServer
) -> None:
    context = chromium.new_context(viewport={"width": 1024, "height": 900})
    page = context.new_page()
    provider_sign_in(page, portal_server)
    expect(page.locator("#hours")).to_contain_text("Monday, Tuesday, Wednesday, Thursday, Friday")
    page.get_by_label("Saturday").check()
    page.get_by_label("Opens").fill("09:00")
    page.get_by_label("Closes").fill("11:00")
    page.get_by_role("button", name="Add hours").click()
    expect(page.locator("#hours")).to_contain_text(f"Saturday: 09:00{DASH}11:00")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_have_text("Weekly hours saved.")
    context.close()
    patient = chromium.new_context().new_page()
    sign_in(patient, portal_server, "munoz", "demo-munoz")
    patient.get_by_role("link", name="Book an appointment").click()
    find_times(patient, next_week(5))  # Saturday
    expect(patient.get_by_role("button", name="10:30")).to_be_visible()
    expect(patient.get_by_role("button", name="11:00")).to_have_count(0)
    patient.context.close()


def test_the_week_shows_each_day_of_the_practitioner(page: Any, portal_server: LiveServer) -> None:
    token = off_loop(run_cli, portal_server.settings, "token", "--scope", "system/*.cruds")
    visit = {**appointment(MUNOZ, 1, 11), "status": "booked"}  # Tuesday 11:00
    made = httpx.post(
        f"{portal_server.base_url}/Appointment", json=visit, headers=bearer(token.strip())
    )
    assert made.status_code == 201, made.text
    provider_sign_in(page, portal_server)
    page.get_by_label("Date", exact=True).fill(next_week(3))  # any day of that week
    page.get_by_role("button", name="Show the week").click()
    days = page.locator("#week section")
    expect(days).to_have_count(7)
    tuesday = page.get_by_role("region", name=re.compile("^Tuesday"))
    expect(tuesday.locator("li", has_text=f"11:00{DASH}11:30")).to_contain_text("Booked José Muñoz")
    expect(tuesday.locator("li", has_text=f"09:00{DASH}09:30")).to_contain_text("Free")
    expect(page.get_by_role("region", name=re.compile("^Sunday"))).to_contain_text(
        "Nothing on this day."
    )
    expect(page.locator("#day")).to_be_hidden()


def test_several_practitioners_side_by_side(page: Any, portal_server: LiveServer) -> None:
    provider_sign_in(page, portal_server)
    page.get_by_label("Practitioner").select_option(["demo-role-smith", "demo-role-okafor"])
    page.get_by_label("Date", exact=True).fill(next_week(1))
    page.get_by_role("button", name="Show the day").click()
    smith = page.get_by_role("region", name="Dr. Emily Smith")
    okafor = page.get_by_role("region", name="Dr. Chinedu Okafor")
    expect(smith.locator("li", has_text=f"09:00{DASH}09:30")).to_contain_text("Free")
    expect(okafor.locator("li", has_text=f"17:30{DASH}18:00")).to_contain_text("Free")
    expect(okafor.locator("li", has_text=f"09:00{DASH}09:30")).to_have_count(0)  # opens at 10
    page.get_by_role("button", name="Show the week").click()
    expect(page.locator("#week section")).to_have_count(14)
    expect(
        page.get_by_role("region", name=re.compile("^Dr. Chinedu Okafor, Tuesday"))
    ).to_contain_text("Free")
