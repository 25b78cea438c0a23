"""Every screen of the patient portal, and the authorization server's sign-in and consent
pages it goes through, checked in the page by axe-core (WCAG 2.0/2.1 A and AA rules): no
serious or critical violation."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.conftest import LiveServer
from tests.portal.test_patient import find_times, next_week, origin
from tests.portal.test_provider import provider_sign_in

RULES = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


@pytest.fixture
def checked(chromium: Any, axe_source: str) -> Iterator[Any]:
    """A page whose `check(name)` runs axe-core and collects serious or critical issues."""
    context = chromium.new_context(viewport={"width": 1024, "height": 800}, bypass_csp=True)
    page = context.new_page()
    found: dict[str, list[str]] = {}

    def check(screen: str) -> None:
        page.evaluate(axe_source)
        result = page.evaluate("(rules) => axe.run(document, {runOnly: rules})", RULES)
        assert len(result["passes"]) >= 10, screen  # axe ran its rules on this screen
        bad = [v for v in result["violations"] if v["impact"] in ("serious", "critical")]
        found[screen] = [
            f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']]}"
            for v in bad
        ]

    page.check_a11y = check
    page.a11y_found = found
    yield page
    context.close()


def test_every_screen_has_no_serious_accessibility_violation(
    checked: Any, portal_server: LiveServer
) -> None:
    page = checked
    page.goto(f"{origin(portal_server)}/portal/")
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    page.check_a11y("welcome")
    page.goto(f"{origin(portal_server)}/portal/register.html")
    page.get_by_role("button", name="Create account").click()  # empty: an error shown
    expect(page.get_by_role("alert")).to_be_visible()
    page.check_a11y("create account, with an error")
    page.goto(f"{origin(portal_server)}/portal/")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.check_a11y("sign in (authorization server)")
    page.get_by_label("Username").fill("munoz")
    page.get_by_label("Password").fill("demo-munoz")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Allow")).to_be_visible()
    page.check_a11y("consent (authorization server)")
    page.get_by_role("button", name="Allow").click()
    expect(page.get_by_role("heading", name="My appointments")).to_be_visible()
    page.check_a11y("my appointments")
    page.get_by_role("link", name="Book an appointment").click()
    find_times(page, next_week(2))
    page.get_by_role("button", name="10:30").click()
    expect(page.get_by_role("button", name="Confirm booking")).to_be_visible()
    page.check_a11y("booking with free times")
    assert {k: v for k, v in page.a11y_found.items() if v} == {}
    assert len(page.a11y_found) == 6


def test_the_provider_day_has_no_serious_accessibility_violation(
    checked: Any, portal_server: LiveServer
) -> None:
    page = checked
    page.goto(f"{origin(portal_server)}/portal/provider/")
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    page.check_a11y("provider welcome")
    provider_sign_in(page, portal_server)
    page.get_by_label("Date", exact=True).fill(next_week(1))
    page.get_by_role("button", name="Show the day").click()
    expect(page.locator("#day li").first).to_be_visible()
    page.check_a11y("provider day")
    page.get_by_role("button", name="Show the week").click()
    expect(page.locator("#week section")).to_have_count(7)
    page.check_a11y("provider week")
    assert {k: v for k, v in page.a11y_found.items() if v} == {}
    assert len(page.a11y_found) == 3
