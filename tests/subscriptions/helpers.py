"""Shared pieces of the Subscription suites: the live server with fast dispatch settings,
the clinic, topic-based Subscription bodies and notification Bundle readers."""

from __future__ import annotations

import time
from typing import Any

import httpx

from tests.api.booking_helpers import clinic_resources
from tests.conftest import LiveServer

FAST = {"subscription_backoff_seconds": 0.05, "subscription_poll_seconds": 0.02}
ROOT = "https://fhir-scheduling.example.org"
APPOINTMENT_CHANGE = f"{ROOT}/SubscriptionTopic/appointment-change"
SCHEDULE_AVAILABILITY = f"{ROOT}/SubscriptionTopic/schedule-availability"
BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition"


def http_of(server: LiveServer, **headers: str) -> httpx.Client:
    return httpx.Client(base_url=server.base_url, timeout=10, headers=headers)


def seed_clinic(http: httpx.Client) -> None:
    for resource in clinic_resources():
        r = http.put(f"/{resource['resourceType']}/{resource['id']}", json=resource)
        assert r.status_code in (200, 201), r.text


def topic_subscription(
    topic: str,
    filters: list[str],
    *,
    channel_type: str = "rest-hook",
    endpoint: str = "",
    content: str = "id-only",
    payload: str = "application/fhir+json",
    heartbeat: int | None = None,
) -> dict[str, Any]:
    channel: dict[str, Any] = {
        "type": channel_type,
        "payload": payload,
        "_payload": {
            "extension": [{"url": f"{BACKPORT}/backport-payload-content", "valueCode": content}]
        },
    }
    if endpoint:
        channel["endpoint"] = endpoint
    if heartbeat is not None:
        channel["extension"] = [
            {"url": f"{BACKPORT}/backport-heartbeat-period", "valueUnsignedInt": heartbeat}
        ]
    sub: dict[str, Any] = {
        "resourceType": "Subscription",
        "meta": {"profile": [f"{BACKPORT}/backport-subscription"]},
        "status": "requested",
        "reason": "test",
        "criteria": topic,
        "channel": channel,
    }
    if filters:
        url = f"{BACKPORT}/backport-filter-criteria"
        sub["_criteria"] = {"extension": [{"url": url, "valueString": f} for f in filters]}
    return sub


def wait_status(
    http: httpx.Client, sub_id: str, status: str, timeout: float = 10.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = http.get(f"/Subscription/{sub_id}").json()
        if body.get("status") == status:
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"Subscription/{sub_id} is {body.get('status')}, not {status}")
        time.sleep(0.02)


def status_of(bundle: dict[str, Any]) -> dict[str, Any]:
    """The status Parameters of a notification Bundle, as {name: value or [parts...]}."""
    assert bundle["resourceType"] == "Bundle"
    assert bundle["type"] == "history"
    params = bundle["entry"][0]["resource"]
    assert params["resourceType"] == "Parameters"
    out: dict[str, Any] = {"notification-event": []}
    for p in params["parameter"]:
        if p["name"] == "notification-event":
            out["notification-event"].append(
                {
                    part["name"]: next(v for k, v in part.items() if k.startswith("value"))
                    for part in p["part"]
                }
            )
        else:
            out[p["name"]] = next(v for k, v in p.items() if k.startswith("value"))
    return out


def appointment(
    start: str, end: str, actor: str, patient: str, status: str = "booked"
) -> dict[str, Any]:
    return {
        "resourceType": "Appointment",
        "status": status,
        "start": start,
        "end": end,
        "participant": [
            {"actor": {"reference": actor}, "status": "accepted"},
            {"actor": {"reference": patient}, "status": "accepted"},
        ],
    }
