"""`Subscription/$status` and `Subscription/[id]/$status` (Subscriptions R5 Backport IG STU
1.1, OperationDefinition `backport-subscription-status`): a `searchset` Bundle of
`backport-subscription-status-r4` Parameters (type `query-status`), one per Subscription.

Instance level: that Subscription. Type level: the Subscriptions named by `id` parameters,
else every Subscription the caller may see, narrowed by `status` parameters (ORed).
`events-since-subscription-start` counts the events generated so far, delivered or not
(`dispatcher.events_since_start`); an `error` Subscription carries its reason as an `error`
parameter.
"""

from __future__ import annotations

from typing import Any

import orjson

from fhir_server.messages import FhirResult, Operation, OperationCall
from fhir_server.model import StoredResource
from fhir_server.search.query import StoreQuery, TokenCondition, TokenValue
from operations.scheduling.parameters import OperationParams
from operations.subscriptions.dispatcher import events_since_start
from operations.subscriptions.notifications import status_parameters
from operations.subscriptions.plan import read_plan
from resources.errors import FhirError

__all__ = ["OPERATION", "subscriptions_of"]

DEFINITION = (
    "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-status"
)


async def subscriptions_of(call: OperationCall, params: OperationParams) -> list[StoredResource]:
    """The Subscriptions a call is about, as the caller may see them: the instance, or the
    `id` parameters' (else all), narrowed by `status` parameters."""
    repo = call.repository
    if call.target is not None:
        return [call.target]
    conditions: list[Any] = list(repo.search_conditions("Subscription"))
    ids = params.texts("id")
    if ids:
        conditions.append(TokenCondition("_id", tuple(TokenValue("*", i) for i in ids)))
    statuses = params.texts("status")
    if statuses:
        conditions.append(TokenCondition("status", tuple(TokenValue("*", s) for s in statuses)))
    page = await repo.lookup.search(StoreQuery("Subscription", tuple(conditions), count=1000))
    return await repo.admit(page.resources)


async def status(call: OperationCall) -> FhirResult:
    """The `$status` handler (module docstring)."""
    params = OperationParams.of(call.request)
    repo = call.repository
    entries: list[dict[str, Any]] = []
    for stored in await subscriptions_of(call, params):
        assert stored.content is not None
        sub = orjson.loads(stored.content)
        try:
            plan = read_plan(sub, repo)
            topic_url, content = plan.topic_url, plan.content
        except FhirError:
            topic_url, content = None, "id-only"
        parameters = status_parameters(
            base_url=call.request.base_url,
            subscription_id=stored.id,
            topic_url=topic_url,
            status=str(sub.get("status")),
            kind="query-status",
            events_since_start=await events_since_start(repo, stored.id),
            content=content,
            error=sub.get("error"),
        )
        entries.append(
            {
                "fullUrl": f"urn:uuid:{parameters['id']}",
                "resource": parameters,
                "search": {"mode": "match"},
            }
        )
    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(entries),
        "entry": entries,
    }
    return FhirResult(200, bundle)


OPERATION = Operation(
    name="status",
    handler=status,
    type_level=True,
    instance=True,
    resource_types=frozenset({"Subscription"}),
    definition={"url": DEFINITION},
    requires=((None, "r"),),
)
