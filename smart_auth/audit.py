"""AuditEvents of the authorization server: logins, token grants, refreshes, revocations and
denials (SMART.md "Never log tokens ... AuditEvent for logins, grants and denials").

Shaped after the IHE Basic Audit Log Patterns: type DCM 110114 "User Authentication" for
logins and `rest`-free security events, with a subtype code of ours naming the event
(`login`, `login-failed`, `login-locked`, `token-granted`, `token-refreshed`, `token-revoked`,
`token-denied`, `consent-denied`, `launch-user-mismatch` (someone other than an EHR launch's
`user` signed in), `access-denied`, `registration` (a patient created their account)),
outcome `0` (success) or `4` (failure), the user or client as requestor agent, and the
patient in context as entity. No token, code, secret or assertion ever goes into an event:
only ids and reasons.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fhir_server.repository import Repository
from resources.fhir_dates import format_instant, now_us
from smart_auth.policy import ScopePolicy

DCM = "http://dicom.nema.org/resources/ontology/DCM"
FAILURES = frozenset(
    {
        "login-failed",
        "login-locked",
        "token-denied",
        "consent-denied",
        "launch-user-mismatch",
        "access-denied",
    }
)


def auth_audit_event(
    event: str, details: dict[str, Any], base_url: str, system: str
) -> dict[str, Any]:
    """The AuditEvent of one authorization event.

    Args:
        event: the event code (see the module docstring).
        details: `client_id`, `user` (FHIR reference), `username`, `patient`, `scope`,
            `grant`, `reason`, ... (only those present are recorded).
        base_url: this server's FHIR base (observer).
        system: the CodeSystem URL of our event codes.
    """
    who: dict[str, Any] = {
        "display": details.get("username") or details.get("client_id") or "anonymous"
    }
    if details.get("user"):
        who = {"reference": details["user"]}
    agent: dict[str, Any] = {
        "type": {"coding": [{"system": DCM, "code": "110153", "display": "Source Role ID"}]},
        "who": who,
        "requestor": True,
    }
    if details.get("client_id"):
        agent["altId"] = str(details["client_id"])
    event_doc: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "type": {"system": DCM, "code": "110114", "display": "User Authentication"},
        "subtype": [{"system": system, "code": event}],
        "action": "E",
        "recorded": format_instant(now_us()),
        "outcome": "4" if event in FAILURES else "0",
        "agent": [agent],
        "source": {"observer": {"display": base_url or "fhir-scheduling-server"}},
    }
    if details.get("reason"):
        event_doc["outcomeDesc"] = str(details["reason"])[:500]
    entities: list[dict[str, Any]] = []
    if details.get("patient"):
        entities.append({"what": {"reference": f"Patient/{details['patient']}"}})
    detail = [
        {"type": key, "valueString": str(details[key])}
        for key in ("scope", "grant", "grant_type")
        if details.get(key)
    ]
    if detail:
        entities.append({"name": "authorization", "detail": detail})
    if entities:
        event_doc["entity"] = entities
    return event_doc


class AuthAudit:
    """Writes authorization AuditEvents through the repository (validated like any write)."""

    def __init__(self, repository: Repository, base_url: str, extension_base: str) -> None:
        self.repository = repository
        self.base_url = base_url
        self.system = extension_base.rsplit("/StructureDefinition", 1)[0] + "/CodeSystem/auth-event"

    async def __call__(self, event: str, details: dict[str, Any]) -> None:
        """Record one event (an `AuditHook`)."""
        await self.repository.create(auth_audit_event(event, details, self.base_url, self.system))


def denial_recorder(audit: AuthAudit) -> Callable[[ScopePolicy, str, str], Awaitable[None]]:
    """A `Denied` hook for the FHIR endpoint: each 403 becomes an `access-denied` event."""

    async def record(policy: ScopePolicy, what: str, reason: str) -> None:
        await audit(
            "access-denied",
            {
                "client_id": policy.client_id,
                "user": policy.fhir_user,
                "patient": policy.patient,
                "scope": str(policy.scopes),
                "reason": f"{what}: {reason}",
            },
        )

    return record
