"""`Subscription/[id]/$events` (Subscriptions R5 Backport IG STU 1.1, OperationDefinition
`backport-subscription-events`): the events a Subscription has notified, replayed by event
number as a notification Bundle of type `history` (status type `query-event`).

Parameters: `eventsSinceNumber` and `eventsUntilNumber` (inclusive; default: the last
MAX_EVENTS events), `content` (`empty`, `id-only`, `full-resource`; default the
Subscription's own). Events are kept `subscription_event_days` (older ones are left out);
at most MAX_EVENTS per call. Focus resources the caller may not read are left out of the
Bundle (their event numbers stay).

Raises (as OperationOutcomes): 400 for a non-numeric number or an unknown content code.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson

from fhir_server.messages import FhirResult, Operation, OperationCall
from operations.scheduling.parameters import OperationParams
from operations.subscriptions.dispatcher import EVENT, event_key, events_since_start
from operations.subscriptions.notifications import Item, plan_bundle
from operations.subscriptions.plan import CONTENTS, read_plan
from resources.errors import Invalid

__all__ = ["MAX_EVENTS", "OPERATION"]

MAX_EVENTS = 100
DEFINITION = (
    "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-events"
)


def _number(params: OperationParams, name: str) -> int | None:
    text = params.text(name)
    if text is None:
        return None
    if not text.strip().isdigit():
        raise Invalid(f"{name} must be an event number (1, 2, ...): {text!r}", expression=(name,))
    return int(text)


async def events(call: OperationCall) -> FhirResult:
    """The `$events` handler (module docstring)."""
    assert call.target is not None
    assert call.target.content is not None
    repo = call.repository
    params = OperationParams.of(call.request)
    sub = orjson.loads(call.target.content)
    plan = read_plan(sub, repo)
    content = params.text("content") or plan.content
    if content not in CONTENTS:
        raise Invalid(f"content must be one of {', '.join(CONTENTS)}", expression=("content",))
    plan = dataclasses.replace(plan, content=content)
    count = await events_since_start(repo, call.target.id)
    until = min(_number(params, "eventsUntilNumber") or count, count)
    since = max(_number(params, "eventsSinceNumber") or until - MAX_EVENTS + 1, 1)
    until = min(until, since + MAX_EVENTS - 1)
    items: list[Item] = []
    for number in range(since, until + 1):
        doc = await repo.records.get_record(EVENT, event_key(call.target.id, number))
        if doc is None:
            continue
        rtype, rid, version = doc["focus"]
        focus = await repo.lookup.vread(rtype, rid, int(version))
        if focus is None or not await repo.admit([focus]):
            continue
        items.append(Item(number, int(doc["at"]), focus, bool(doc.get("deleted"))))
    status = str(sub.get("status"))
    bundle: dict[str, Any] = plan_bundle(
        call.request.base_url, call.target.id, plan, status, "query-event", items, count
    )
    return FhirResult(200, bundle)


OPERATION = Operation(
    name="events",
    handler=events,
    instance=True,
    resource_types=frozenset({"Subscription"}),
    definition={"url": DEFINITION},
    requires=((None, "r"),),
)
