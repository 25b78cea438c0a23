"""Subscriptions under SMART authorization, end to end on a live server with the demo clinic
(patient user `munoz`): creating one needs `c` on Subscription and `s` on the criteria's
type; notifications carry only what the creator's grant reads at delivery time (a patient
token's Subscription to every Appointment hears only of its own); revoking the grant stops
delivery and turns the Subscription `error`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from fhir_server.cli import _load_demo
from fhir_server.cli_auth import opened
from fhir_server.config import Settings
from tests.conftest import LiveServer, make_settings
from tests.smart.flows import bearer, patient_token
from tests.subscriptions.helpers import FAST, appointment, wait_status
from tests.subscriptions.receiver import Receiver

DAY = "2027-02-03"
PATIENT = "demo-patient-munoz"
ROLE = "PractitionerRole/demo-role-smith"


def mint(settings: Settings, scope: str) -> dict[str, str]:
    async def run() -> str:
        async with opened(settings) as auth:
            return await auth.mint_admin_token(scope, 3600)

    return bearer(asyncio.run(run()))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    tmp: Path = tmp_path_factory.mktemp("subscriptions-smart")
    live = LiveServer(make_settings(tmp, auth=True, **FAST))
    assert asyncio.run(_load_demo(live.settings)) > 0
    with live:
        yield live


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


def client(server: LiveServer, headers: dict[str, str]) -> httpx.Client:
    return httpx.Client(base_url=server.base_url, headers=headers, timeout=30)


def subscription(endpoint: str, criteria: str) -> dict[str, object]:
    return {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "test",
        "criteria": criteria,
        "channel": {"type": "rest-hook", "endpoint": endpoint, "payload": "application/fhir+json"},
    }


def test_creating_needs_search_permission_on_the_criteria_type(server: LiveServer) -> None:
    only_subscriptions = mint(server.settings, "system/Subscription.cruds")
    with client(server, only_subscriptions) as http:
        answer = http.post(
            "/Subscription", json=subscription("http://127.0.0.1:9/h", "Appointment")
        )
        allowed = http.post(
            "/Subscription", json=subscription("http://127.0.0.1:9/h", "Subscription")
        )
    assert answer.status_code == 403, answer.text
    assert answer.json()["issue"][0]["code"] == "forbidden"
    assert allowed.status_code == 201
    no_create = mint(server.settings, "system/Appointment.rs")
    with client(server, no_create) as http:
        refused = http.post(
            "/Subscription", json=subscription("http://127.0.0.1:9/h", "Appointment")
        )
    assert refused.status_code == 403


def test_patient_token_hears_only_of_its_own_appointments_until_revoked(
    server: LiveServer, receiver: Receiver
) -> None:
    admin = mint(server.settings, "system/*.cruds")
    origin = server.base_url.rsplit("/fhir", 1)[0]
    with httpx.Client(base_url=origin, follow_redirects=False, timeout=30) as browser:
        token = patient_token(
            browser, server.base_url, "patient/*.cruds launch/patient openid fhirUser"
        )
    assert token["patient"] == PATIENT
    with client(server, bearer(token)) as mine, client(server, admin) as staff:
        created = mine.post("/Subscription", json=subscription(receiver.url, "Appointment"))
        assert created.status_code == 201, created.text
        sub_id = created.json()["id"]
        wait_status(staff, sub_id, "active")
        other = staff.post(
            "/Patient", json={"resourceType": "Patient", "name": [{"family": "Else"}]}
        ).json()["id"]
        theirs = appointment(f"{DAY}T14:00:00Z", f"{DAY}T14:30:00Z", ROLE, f"Patient/{other}")
        assert staff.post("/Appointment", json=theirs).status_code == 201
        own = appointment(f"{DAY}T15:00:00Z", f"{DAY}T15:30:00Z", ROLE, f"Patient/{PATIENT}")
        booked = staff.post("/Appointment", json=own)
        assert booked.status_code == 201, booked.text
        own_id = booked.json()["id"]
        [got] = receiver.wait_for(1)
        time.sleep(0.5)
        assert len(receiver.requests) == 1  # the other patient's booking never arrived
        assert got.path == f"/hook/Appointment/{own_id}"
        assert (
            orjson.loads(got.body)["participant"][1]["actor"]["reference"] == f"Patient/{PATIENT}"
        )
        revoked = httpx.post(
            f"{origin}/auth/revoke", data={"token": token["access_token"], "client_id": "demo-app"}
        )
        assert revoked.status_code == 200
        later = appointment(f"{DAY}T16:00:00Z", f"{DAY}T16:30:00Z", ROLE, f"Patient/{PATIENT}")
        assert staff.post("/Appointment", json=later).status_code == 201
        stopped = wait_status(staff, sub_id, "error")
        time.sleep(0.3)
    assert "revoked" in stopped["error"]
    assert len(receiver.requests) == 1


def test_a_patient_token_sees_and_changes_only_its_own_subscriptions(server: LiveServer) -> None:
    admin = mint(server.settings, "system/*.cruds")
    origin = server.base_url.rsplit("/fhir", 1)[0]
    with httpx.Client(base_url=origin, follow_redirects=False, timeout=30) as browser:
        token = patient_token(browser, server.base_url, "patient/*.cruds launch/patient")
    secret = subscription("http://127.0.0.1:9/staff", "Appointment")
    secret["channel"]["header"] = ["Authorization: Bearer staff-secret"]  # type: ignore[index]
    with client(server, admin) as staff, client(server, bearer(token)) as mine:
        theirs = staff.post("/Subscription", json=secret).json()["id"]
        own = mine.post("/Subscription", json=subscription("http://127.0.0.1:9/me", "Appointment"))
        assert own.status_code == 201, own.text
        found = mine.get("/Subscription").json()
        read = mine.get(f"/Subscription/{theirs}")
        changed = mine.put(
            f"/Subscription/{theirs}", json={**secret, "id": theirs, "status": "off"}
        )
        deleted = mine.delete(f"/Subscription/{theirs}")
        status = mine.get(f"/Subscription/{theirs}/$status")
        own_read = mine.get(f"/Subscription/{own.json()['id']}")
        staff_view = staff.get(f"/Subscription/{theirs}").json()
    ids = [
        e["resource"]["id"]
        for e in found.get("entry", [])
        if e.get("search", {}).get("mode") == "match"
    ]
    assert own.json()["id"] in ids
    assert theirs not in ids
    assert all(
        e["resource"]["channel"]["endpoint"] != "http://127.0.0.1:9/staff" for e in found["entry"]
    )
    assert "staff-secret" not in str(found)
    assert (read.status_code, changed.status_code, deleted.status_code, status.status_code) == (
        403,
        403,
        403,
        403,
    )
    assert own_read.status_code == 200
    assert staff_view["channel"]["endpoint"] == "http://127.0.0.1:9/staff"
    assert staff_view["status"] != "off"
