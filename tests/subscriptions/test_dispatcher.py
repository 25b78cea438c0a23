"""The dispatcher on every engine (SQLite, MongoDB on mongomock; a real MongoDB when
FHIR_SERVER_TEST_MONGODB_URL is set), rounds driven by hand over the repository, deliveries
captured by an httpx MockTransport: events in order with event numbers 1, 2, ...; a crash
between a delivery and its state write redelivers the same event with the same number, and
nothing else twice; an event whose apply failed is never delivered.
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from fhir_server.access import AccessPolicy, SystemPolicy
from fhir_server.repository import Repository, RepositoryFactory
from operations.subscriptions.dispatcher import STATE, Dispatcher
from operations.subscriptions.rules import DISPATCHER
from resources.errors import FhirError
from tests.subscriptions.helpers import APPOINTMENT_CHANGE, topic_subscription

ENDPOINT = "http://127.0.0.1:9/hook"


async def restore(credentials: dict[str, Any]) -> AccessPolicy | None:
    return SystemPolicy(str(credentials.get("system")))


class Capture:
    """The MockTransport handler: keeps every request body, answers 200."""

    def __init__(self) -> None:
        self.bundles: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.bundles.append(orjson.loads(request.content))
        return httpx.Response(200)

    def numbers(self) -> list[list[str]]:
        out = []
        for bundle in self.bundles:
            params = bundle["entry"][0]["resource"]["parameter"]
            events = [p for p in params if p["name"] == "notification-event"]
            out.append([e["part"][0]["valueString"] for e in events])
        return out


def appointment(patient: str) -> dict[str, Any]:
    return {
        "resourceType": "Appointment",
        "status": "proposed",
        "participant": [{"actor": {"reference": f"Patient/{patient}"}, "status": "accepted"}],
    }


async def setup(factory: RepositoryFactory) -> tuple[Repository, Dispatcher, Capture, str]:
    writer = factory.for_job("test")
    sub = topic_subscription(APPOINTMENT_CHANGE, [], endpoint=ENDPOINT, content="id-only")
    sub_id = (await writer.create(sub)).stored.id
    capture = Capture()
    client = httpx.AsyncClient(transport=httpx.MockTransport(capture))
    dispatcher = Dispatcher(factory.for_job(DISPATCHER, "http://test/fhir"), restore, client)
    await dispatcher.tick()  # handshake, active
    return writer, dispatcher, capture, sub_id


async def test_rounds_deliver_every_event_in_order_numbered(factory: RepositoryFactory) -> None:
    writer, dispatcher, capture, sub_id = await setup(factory)
    ids = [(await writer.create(appointment(f"p{i}"))).stored.id for i in range(3)]
    await dispatcher.tick()
    await writer.delete("Appointment", ids[0])
    await dispatcher.tick()
    assert capture.numbers() == [[], ["1"], ["2"], ["3"], ["4"]]
    focus = [b["entry"][1]["request"] for b in capture.bundles[1:]]
    assert [f["url"] for f in focus] == [
        "Appointment",
        "Appointment",
        "Appointment",
        f"Appointment/{ids[0]}",
    ]
    assert focus[-1]["method"] == "DELETE"
    state = await writer.records.get_record(STATE, sub_id)
    assert state is not None and state["count"] == 4


async def test_crash_between_delivery_and_state_write_redelivers_that_event_only(
    factory: RepositoryFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer, dispatcher, capture, _ = await setup(factory)
    for i in range(2):
        await writer.create(appointment(f"c{i}"))
    records = dispatcher.repository.records
    real_put = records.put_record

    async def crash_on_state(
        kind: str, key: str, doc: dict[str, Any], expires: int | None = None
    ) -> None:
        if kind == STATE and doc.get("count") == 1:
            raise ConnectionError("the process died after sending event 1")
        await real_put(kind, key, doc, expires)

    monkeypatch.setattr(records, "put_record", crash_on_state)
    await dispatcher.tick()  # sends event 1, dies before recording it
    monkeypatch.setattr(records, "put_record", real_put)
    await dispatcher.tick()  # a restarted dispatcher: event 1 again, then 2
    assert capture.numbers() == [[], ["1"], ["1"], ["2"]]


async def test_a_failed_write_is_never_delivered(factory: RepositoryFactory) -> None:
    writer, dispatcher, capture, _ = await setup(factory)
    created = (await writer.create(appointment("x"))).stored
    with pytest.raises(FhirError):  # a stale version: nothing is written, no event
        await writer.update(
            "Appointment", created.id, {**appointment("y"), "id": created.id}, if_match='W/"7"'
        )
    await dispatcher.tick()
    assert capture.numbers() == [[], ["1"]]


async def test_an_event_right_after_creation_before_the_first_round_is_delivered(
    factory: RepositoryFactory,
) -> None:
    writer = factory.for_job("test")
    sub = topic_subscription(APPOINTMENT_CHANGE, [], endpoint=ENDPOINT, content="id-only")
    await writer.create(sub)
    await writer.create(appointment("early"))  # before the dispatcher ever looked
    capture = Capture()
    client = httpx.AsyncClient(transport=httpx.MockTransport(capture))
    dispatcher = Dispatcher(factory.for_job(DISPATCHER, "http://test/fhir"), restore, client)
    await dispatcher.tick()
    assert capture.numbers() == [[], ["1"]]
