"""The write rules of Subscription (R4 `subscription.html`): every write of a Subscription,
by REST, transaction or batch, is checked here before it is stored.

A Subscription needs `c`/`u` on Subscription (the repository checks that like any write) and
`s` on the type its criteria search (SMART scopes: who cannot search Appointments cannot
subscribe to them; a topic's focus type counts as its criteria's type). Its criteria or topic
and filters, and its channel, must be deliverable (`plan.py`). The caller's
credentials (`AccessPolicy.credentials`) are kept beside it as the record
`subscription-access/{id}`, put once the write has committed, so its deliveries are read
with that grant, never more (`dispatcher.py`); the dispatcher's own status writes keep the
creator's. The same record tells whose a Subscription is (`subscription_owner`): a
`patient/` token sees and changes only its own (`fhir_server.access.OWNED_TYPES`).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from fhir_server.access import owner_key
from fhir_server.model import ClaimSet
from fhir_server.repository.services import PlannedWrite, RulesPlan
from operations.subscriptions.criteria import allowed_hosts, check_endpoint
from operations.subscriptions.plan import read_plan
from resources.errors import Conflict

if TYPE_CHECKING:
    from fhir_server.repository import Repository

__all__ = ["ACCESS", "DISPATCHER", "STATE", "SubscriptionRules", "subscription_owner"]

ACCESS = "subscription-access"
"""Record kind of a Subscription's credentials, keyed by its id."""
STATE = "subscription-state"
"""Record kind of a Subscription's delivery state, by its id: `{cursor, count, attempts,
retry_at, failing_since, last_sent}` (event log number, events notified, consecutive
failures, µs, µs, µs). Started by the write that creates the Subscription, at the end of the
event log as it was just before that write, so no event after the creation is missed."""
DISPATCHER = "subscription dispatcher"
"""The job name of the dispatcher (its writes keep the creator's credentials)."""


class SubscriptionRules:
    """`WriteRules` of Subscription (module docstring)."""

    depends_on: frozenset[str] = frozenset()

    async def plan(self, repository: Repository, write: PlannedWrite) -> RulesPlan:
        """Check the criteria, the channel and `s` on the criteria's type; keep the caller's
        credentials.

        Raises:
            Invalid: (400) missing or undeliverable criteria, topic or channel (`plan.py`).
            Forbidden: (403) the caller may not search the criteria's type.
        """
        content = write.content
        if content is None:
            return RulesPlan()
        plan = read_plan(content, repository)
        repository.require(plan.resource_type, "s", "subscription criteria")
        if plan.channel.type == "rest-hook":  # the host's addresses, off the event loop
            hosts = allowed_hosts(repository.settings.subscription_allowed_hosts)
            await asyncio.to_thread(check_endpoint, plan.channel.endpoint, hosts)
        if repository.policy.requestor() == DISPATCHER:
            return RulesPlan()
        records = [(ACCESS, write.id, repository.policy.credentials())]
        if write.current is None or write.current.deleted:
            start = {"cursor": await repository.lookup.latest_event(), "count": 0}
            records.append((STATE, write.id, start))
        return RulesPlan(records=tuple(records))

    async def explain(self, repository: Repository, key: str, claims: ClaimSet) -> Conflict:
        """Subscriptions claim nothing: a plain 409 naming the key."""
        return Conflict(f"{key} is held by another owner")


async def subscription_owner(repository: Repository, sub_id: str) -> str | None:
    """The `access.owner_key` of the caller that wrote Subscription `sub_id` last (from its
    recorded credentials), or None (written by the server's own work, or unknown): the
    repository's `OwnerReader` of Subscription."""
    credentials = await repository.records.get_record(ACCESS, sub_id)
    if not credentials or "system" in credentials:
        return None
    return owner_key(str(credentials.get("client_id") or ""), credentials.get("patient"))
