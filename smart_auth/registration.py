"""Patient self-registration: `POST /auth/register` creates a Patient and the login that acts
as it (a `User` whose `fhirUser` is that Patient), so a new patient can sign in to any SMART
app of this server (the portal's `Create account`).

Request: a JSON object (or a form) with `given`, `family`, `birthDate` (YYYY-MM-DD, not in
the future), `email`, `username` (3-64 of `A-Z a-z 0-9 . _ -`) and `password` (at least
MIN_PASSWORD characters). Response 201 `{"patient": "Patient/{id}", "username": ...}`.

Rules:
- **Duplicate-safe by email**: one account per email address (case-insensitive). The address
  is claimed first, atomically (record EMAIL_KIND, inserted once), so two registrations racing
  with one email make one account; an email that an existing Patient already carries is
  refused too. A taken username is refused the same way (the user record is inserted, never
  overwritten).
- **Rate-limited** per client address: at most `FHIR_SERVER_REGISTRATIONS_PER_HOUR` (10)
  registrations an hour (`rate_limits`, counters of kind RATE_KIND, counted atomically in
  the database by every server process together), then 429 with `Retry-After`.
- A failed registration leaves nothing behind (the claims it made are given back).

Errors are OperationOutcomes: 400 `invalid` (which field and why), 409 `duplicate` (email or
username taken), 429 `throttled`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Mapping
from typing import Any, Final

from fhir_server.repository import Repository
from fhir_server.search.query import StoreQuery, TokenCondition, TokenValue
from resources.errors import Conflict, Invalid, StoreConflict
from smart_auth.rate_limits import Limit, hit
from smart_auth.registry import Registry, User, hash_secret

__all__ = ["MIN_PASSWORD", "RATE_SECONDS", "register_patient"]

MIN_PASSWORD: Final = 10
RATE_SECONDS: Final = 3600
EMAIL_KIND: Final = "registered-email"
RATE_KIND: Final = "registration-rate"
_USERNAME = re.compile(r"[A-Za-z0-9._-]{3,64}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_FIELDS: Final = ("given", "family", "birthDate", "email", "username", "password")


def _text(body: Mapping[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value.strip():
        raise Invalid(f"'{name}' is required", expression=[name])
    return value.strip() if name != "password" else value


def _checked(body: Mapping[str, Any]) -> dict[str, str]:
    """The fields, checked (module docstring). Raises Invalid (400)."""
    fields = {name: _text(body, name) for name in _FIELDS}
    try:
        born = dt.date.fromisoformat(fields["birthDate"])
    except ValueError:
        raise Invalid("'birthDate' must be a date YYYY-MM-DD", expression=["birthDate"]) from None
    if born > dt.datetime.now(dt.UTC).date():
        raise Invalid("'birthDate' is in the future", expression=["birthDate"])
    if not _EMAIL.fullmatch(fields["email"]):
        raise Invalid("'email' is not an email address", expression=["email"])
    if not _USERNAME.fullmatch(fields["username"]):
        raise Invalid(
            "'username' is 3 to 64 letters, digits, '.', '_' or '-'", expression=["username"]
        )
    if len(fields["password"]) < MIN_PASSWORD:
        raise Invalid(
            f"'password' needs at least {MIN_PASSWORD} characters", expression=["password"]
        )
    return fields


def registration_limit(per_hour: int) -> Limit:
    """At most `per_hour` registrations an hour from one address (`rate_limits`)."""
    return Limit(RATE_KIND, per_hour, RATE_SECONDS, "accounts an hour from this address")


async def register_patient(
    registry: Registry, repository: Repository, body: Mapping[str, Any], address: str
) -> dict[str, str]:
    """Register a patient (module docstring); `{"patient", "username"}`.

    Args:
        registry: the authorization server's users.
        repository: a job repository of the server (the Patient is written through it).
        body: the request's fields.
        address: the client's network address (the rate limit's key).

    Raises:
        Invalid (400), Conflict (409 `duplicate`), TooManyRequests (429).
    """
    fields = _checked(body)
    await hit(
        repository.records, registration_limit(repository.settings.registrations_per_hour), address
    )
    email = fields["email"].lower()
    email_key = hashlib.sha256(email.encode()).hexdigest()
    records = repository.records
    try:
        await records.insert_record(EMAIL_KIND, email_key, {"username": fields["username"]})
    except StoreConflict:
        raise _duplicate("An account with this email address exists already") from None
    try:
        query = StoreQuery("Patient", (TokenCondition("email", (TokenValue("*", email),)),))
        if (await repository.lookup.search(query)).resources:
            raise _duplicate("A patient with this email address is registered already")
        if await registry.user(fields["username"]) is not None:
            raise _duplicate("This username is taken")
        patient_id = repository.new_id()
        user = User(
            fields["username"],
            hash_secret(fields["password"]),
            f"Patient/{patient_id}",
            f"{fields['given']} {fields['family']}",
        )
        try:
            await records.insert_record("user", user.username, user.to_dict())
        except StoreConflict:
            raise _duplicate("This username is taken") from None
        patient = {
            "resourceType": "Patient",
            "id": patient_id,
            "active": True,
            "name": [{"given": [fields["given"]], "family": fields["family"]}],
            "birthDate": fields["birthDate"],
            "telecom": [{"system": "email", "value": fields["email"], "rank": 1}],
        }
        try:
            await repository.update("Patient", patient_id, patient)
        except Exception:
            await records.delete_record("user", user.username)
            raise
    except Exception:
        await records.delete_record(EMAIL_KIND, email_key)
        raise
    return {"patient": f"Patient/{patient_id}", "username": user.username}


def _duplicate(message: str) -> Conflict:
    return Conflict(message, code="duplicate")
