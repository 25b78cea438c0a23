"""The write rules of Subscription (R4 `subscription.html`): every write of a Subscription,
by REST, transaction or batch, is checked here before it is stored.

A Subscription needs `c`/`u` on Subscription (the repository checks that like any write) and
`s` on the type its criteria search (SMART scopes: who cannot search Appointments cannot
subscribe to them). Its criteria and channel must be deliverable (`criteria.py`). The caller's
credentials (`AccessPolicy.credentials`) are kept beside it as the record
`subscription-access/{id}`, so its deliveries are read with that grant, never more
(`dispatcher.py`); the dispatcher's own status writes keep the creator's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fhir_server.model import ClaimSet
from fhir_server.repository.services import PlannedWrite, RulesPlan
from operations.subscriptions.criteria import parse_criteria, read_channel
from resources.errors import Conflict, Invalid

if TYPE_CHECKING:
    from fhir_server.repository import Repository

__all__ = ["ACCESS", "DISPATCHER", "SubscriptionRules", "allowed_hosts"]

ACCESS = "subscription-access"
"""Record kind of a Subscription's credentials, keyed by its id."""
DISPATCHER = "subscription dispatcher"
"""The job name of the dispatcher (its writes keep the creator's credentials)."""


def allowed_hosts(hosts: str) -> frozenset[str]:
    """`subscription_allowed_hosts` as a set of lower-case host names."""
    return frozenset(h.strip().lower().strip("[]") for h in hosts.split(",") if h.strip())


class SubscriptionRules:
    """`WriteRules` of Subscription (module docstring)."""

    depends_on: frozenset[str] = frozenset()

    async def plan(self, repository: Repository, write: PlannedWrite) -> RulesPlan:
        """Check the criteria, the channel and `s` on the criteria's type; keep the caller's
        credentials.

        Raises:
            Invalid: (400) missing or undeliverable criteria or channel (`criteria.py`).
            Forbidden: (403) the caller may not search the criteria's type.
        """
        content = write.content
        if content is None:
            return RulesPlan()
        text = content.get("criteria")
        if not isinstance(text, str) or not text.strip():
            raise Invalid(
                "Subscription.criteria is required: a search URL such as Appointment?status=booked",
                expression=("Subscription.criteria",),
            )
        criteria = parse_criteria(text, repository.context)
        repository.require(criteria.resource_type, "s", "subscription criteria")
        read_channel(content, allowed_hosts(repository.settings.subscription_allowed_hosts))
        if repository.policy.requestor() != DISPATCHER:
            credentials = repository.policy.credentials()
            await repository.records.put_record(ACCESS, write.id, credentials)
        return RulesPlan()

    async def explain(self, repository: Repository, key: str, claims: ClaimSet) -> Conflict:
        """Subscriptions claim nothing: a plain 409 naming the key."""
        return Conflict(f"{key} is held by another owner")
