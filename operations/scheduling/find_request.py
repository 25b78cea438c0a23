"""The parameters of `Appointment/$find` (IHE ITI-115 §2:3.115.4.1), read and checked: the
window, actors per kind, Schedules, organizations, patients (a caller confined to one patient
finds times for that patient only), tokens, page size and visit length. References are read
against this server's bases; a logical `identifier` is looked up."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from fhir_server.access import denied
from fhir_server.repository import Repository
from fhir_server.search.query import TokenValue
from fhir_server.search.values import parse_token, split_or
from operations.scheduling.claims import SCHEDULED_ACTOR_TYPES
from operations.scheduling.parameters import (
    OperationParams,
    parse_time,
    reference_id,
    split_reference,
)
from resources.errors import Invalid

__all__ = ["MAX_PROPOSALS", "MAX_WINDOW_US", "FindRequest", "read_find_request"]

MAX_WINDOW_US = 31 * 86_400_000_000
"""The longest `end - start` window (31 days, SCHEDULING.md "Errors")."""
MAX_PROPOSALS = 100
"""The most proposals one `$find` keeps and returns (`_count` is capped here)."""
_ACTOR_KIND = {"PractitionerRole": "Practitioner"}


@dataclass(frozen=True, slots=True)
class FindRequest:
    """The parsed `$find` inputs: window (µs UTC), actor references (`Type/id`) per kind in
    the order given, tokens, page size and visit length (µs or None)."""

    start: int
    end: int
    kinds: dict[str, list[str]]
    schedule_ids: list[str]
    organizations: list[str]
    patients: list[str]
    service_types: list[TokenValue]
    specialties: list[TokenValue]
    reasons: list[TokenValue]
    count: int
    duration_us: int | None


async def read_find_request(params: OperationParams, repository: Repository) -> FindRequest:
    """The `$find` inputs of one call, checked (`appointment_find` module docstring).

    Raises:
        Invalid: (400) a missing or malformed parameter, a time without an offset,
            `end <= start`, or a window over 31 days.
        Forbidden: (403) a patient-confined caller names another patient.
    """
    start = parse_time(params.text("start"), "start")
    end = parse_time(params.text("end"), "end")
    if end <= start:
        raise Invalid("Parameter 'end' must be after 'start'", expression=["end"])
    if end - start > MAX_WINDOW_US:
        raise Invalid("The window from 'start' to 'end' may be at most 31 days", expression=["end"])
    kinds: dict[str, list[str]] = {}
    practitioners = await _refs(
        params, "practitioner", repository, ("Practitioner", "PractitionerRole")
    )
    actors = await _refs(params, "actor", repository, tuple(SCHEDULED_ACTOR_TYPES))
    locations = await _refs(params, "location-reference", repository, ("Location",))
    for ref in (*practitioners, *actors, *locations):
        rtype = ref.split("/", 1)[0]
        kind = kinds.setdefault(_ACTOR_KIND.get(rtype, rtype), [])
        if ref not in kind:
            kind.append(ref)
    return FindRequest(
        start=start,
        end=end,
        kinds=kinds,
        schedule_ids=[
            reference_id(r, "Schedule", repository.bases) for r in params.references("schedule")
        ],
        organizations=await _refs(params, "organization", repository, ("Organization",)),
        patients=_patients(
            repository, await _refs(params, "patient-reference", repository, ("Patient",))
        ),
        service_types=_tokens(params, "service-type") + _tokens(params, "visit-type"),
        specialties=_tokens(params, "specialty"),
        reasons=_tokens(params, "reason"),
        count=_positive(params, "_count", repository.context.default_count, MAX_PROPOSALS),
        duration_us=_duration(params),
    )


def _patients(repository: Repository, patients: list[str]) -> list[str]:
    """The patients to find times for: those given, or the caller's own when it is confined
    to one patient (SMART.md: a patient token reaches only its patient).

    Raises:
        Forbidden: (403) a patient-confined caller names another patient.
    """
    own = repository.patient_confined("Appointment", "s")
    if own is None:
        return patients
    others = [p for p in patients if p != f"Patient/{own}"]
    if others:
        raise denied(
            f"The access token is confined to Patient/{own}: $find cannot look for "
            f"{', '.join(others)}"
        )
    return [f"Patient/{own}"]


async def _refs(
    params: OperationParams,
    name: str,
    repository: Repository,
    types: tuple[str, ...],
) -> list[str]:
    """`Type/id` of each Reference value of `name` (an identifier is looked up)."""
    out: list[str] = []
    for reference in params.references(name):
        texts = split_or(reference["reference"]) if "reference" in reference else [None]
        for text in texts:
            if text is not None:
                found = split_reference(text, repository.bases)
                if found is None or found[0] not in types:
                    wanted = " or ".join(types) if len(types) < 3 else "scheduled actor"
                    raise Invalid(f"Parameter {name!r}: {text!r} is not a {wanted} reference")
                out.append("/".join(found))
                continue
            out.extend(await _by_identifier(reference, name, repository, types))
    return out


async def _by_identifier(
    reference: dict[str, Any], name: str, repository: Repository, types: tuple[str, ...]
) -> list[str]:
    identifier = reference.get("identifier")
    if not isinstance(identifier, dict) or not identifier.get("value"):
        raise Invalid(f"Parameter {name!r} needs a reference or an identifier", expression=[name])
    criteria = urlencode(
        {"identifier": f"{identifier.get('system', '')}|{identifier['value']}".lstrip("|")}
    )
    ids = []
    for rtype in types:
        ids += [f"{rtype}/{s.id}" for s in await repository.find(rtype, criteria, limit=50)]
    return ids


def _tokens(params: OperationParams, name: str) -> list[TokenValue]:
    out = []
    for text in params.texts(name):
        for part in split_or(text):
            try:
                out.append(parse_token(part))
            except ValueError as exc:
                raise Invalid(f"Parameter {name!r}: {exc}", expression=[name]) from exc
    return out


def _positive(params: OperationParams, name: str, default: int, ceiling: int) -> int:
    text = params.text(name)
    if text is None:
        return min(default, ceiling)
    if not text.isdigit() or int(text) < 1:
        raise Invalid(f"Parameter {name!r} must be a positive integer", expression=[name])
    return min(int(text), ceiling)


def _duration(params: OperationParams) -> int | None:
    if params.text("duration") is None:
        return None
    minutes = _positive(params, "duration", 0, 24 * 60)
    return minutes * 60_000_000
