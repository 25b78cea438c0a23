"""The patient portal in a real browser: a patient signs in through the SMART authorization
server (standalone launch with PKCE, by the fhirclient library) and sees their appointments."""

from __future__ import annotations

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
