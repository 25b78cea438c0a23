"""Where weekly availability rules come from: one extractor per source, and `rules_for`.

SCHEDULING.md "Resources and where availability comes from", item 2: rule-based availability
comes from the first source that has weekly rules, in this order:

1. our `schedule-availability` extension on the Schedule (`extensions.availability_entries`);
2. `PractitionerRole.availableTime` of the Schedule's PractitionerRole actors;
3. `HealthcareService.availableTime` of its HealthcareService actors;
4. `Location.hoursOfOperation` of its Location actors, then of the actors' sites.

Each extractor returns the common `WeeklyRules`, or None when its source has no rules.
`notAvailable` periods are taken from every PractitionerRole and HealthcareService actor,
whichever source gave the hours: leave is a fact about the actor, not about where its hours are
written (a deliberate reading of the spec, so that a vacation is never offered because the hours
sit in the Schedule extension). `operations.scheduling.rules` re-exports everything here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from operations.scheduling.extensions import DEFAULT_BASE, availability_entries

__all__ = [
    "DAY_CODES",
    "NotAvailable",
    "RuleSource",
    "WeeklyRule",
    "WeeklyRules",
    "from_healthcare_service",
    "from_location",
    "from_practitioner_role",
    "from_schedule_extension",
    "rules_for",
]

DAY_CODES: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
"""FHIR `days-of-week` codes; the index is `date.weekday()` (Monday = 0)."""
RuleSource = Literal["Schedule", "PractitionerRole", "HealthcareService", "Location"]

_TIME: Final = re.compile(r"([01]\d|2[0-3]):([0-5]\d):([0-5]\d)(?:\.(\d{1,9}))?", re.ASCII)


@dataclass(frozen=True, slots=True)
class WeeklyRule:
    """Local wall-clock hours repeated every week on some days.

    `days` holds `date.weekday()` numbers (Monday = 0). `start_us`/`end_us` are µs since local
    midnight; an end at or before the start runs into the next day (overnight; `(0, 0)` is a
    whole day, which is how `all_day` is stored).
    """

    days: frozenset[int]
    all_day: bool
    start_us: int
    end_us: int


@dataclass(frozen=True, slots=True)
class NotAvailable:
    """A `notAvailable.during` period as written (FHIR dateTimes, or None when open)."""

    description: str
    start: str | None
    end: str | None


@dataclass(frozen=True, slots=True)
class WeeklyRules:
    """The weekly rules of one source, and the periods its actors are not available.

    `source` is the resource type the rules were read from, `reference` that resource as
    `Type/id`.
    """

    source: RuleSource
    reference: str
    rules: tuple[WeeklyRule, ...]
    not_available: tuple[NotAvailable, ...] = ()


def _time_us(text: Any, where: str) -> int:
    match = _TIME.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"{where}: invalid FHIR time {text!r}")
    hours, minutes, seconds, fraction = match.groups()
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    return ((int(hours) * 60 + int(minutes)) * 60 + int(seconds)) * 1_000_000 + micro


def _rule(days: Any, all_day: Any, start: Any, end: Any, where: str) -> WeeklyRule:
    """One rule from FHIR values. No days means every day; a missing start is midnight and a
    missing end the end of the day; `allDay` wins over times."""
    codes = list(days or DAY_CODES)
    unknown = [code for code in codes if code not in DAY_CODES]
    if unknown:
        raise ValueError(f"{where}: unknown day codes {unknown}")
    day_set = frozenset(DAY_CODES.index(code) for code in codes)
    if all_day is True:
        return WeeklyRule(day_set, True, 0, 0)
    start_us = 0 if start is None else _time_us(start, where)
    end_us = 0 if end is None else _time_us(end, where)
    return WeeklyRule(day_set, False, start_us, end_us)


def _not_available(resource: Mapping[str, Any]) -> tuple[NotAvailable, ...]:
    periods = []
    for item in resource.get("notAvailable") or ():
        during = item.get("during") if isinstance(item, Mapping) else None
        if isinstance(during, Mapping):  # without `during` it states no time
            text = str(item.get("description", ""))
            periods.append(NotAvailable(text, during.get("start"), during.get("end")))
    return tuple(periods)


def _reference(resource: Mapping[str, Any]) -> str:
    return f"{resource.get('resourceType')}/{resource.get('id')}"


def from_schedule_extension(
    schedule: Mapping[str, Any], base: str = DEFAULT_BASE
) -> WeeklyRules | None:
    """Rules from our `schedule-availability` extensions on a Schedule, or None if it has none.

    Raises:
        ValueError: a malformed extension (`extensions.ExtensionError`), day code or time.
    """
    where = f"{_reference(schedule)} schedule-availability"
    rules = tuple(
        _rule(e.days, e.all_day, e.start, e.end, where)
        for e in availability_entries(schedule, base)
    )
    return WeeklyRules("Schedule", _reference(schedule), rules) if rules else None


def _available_time(resource: Mapping[str, Any], source: RuleSource) -> WeeklyRules | None:
    where = f"{_reference(resource)}.availableTime"
    rules = tuple(
        _rule(
            item.get("daysOfWeek"),
            item.get("allDay"),
            item.get("availableStartTime"),
            item.get("availableEndTime"),
            where,
        )
        for item in resource.get("availableTime") or ()
        if isinstance(item, Mapping)
    )
    if not rules:
        return None
    return WeeklyRules(source, _reference(resource), rules, _not_available(resource))


def from_practitioner_role(role: Mapping[str, Any]) -> WeeklyRules | None:
    """Rules from `PractitionerRole.availableTime` (+ its `notAvailable`), or None if none.

    Raises:
        ValueError: an unknown day code or a malformed time.
    """
    return _available_time(role, "PractitionerRole")


def from_healthcare_service(service: Mapping[str, Any]) -> WeeklyRules | None:
    """Rules from `HealthcareService.availableTime` (+ its `notAvailable`), or None if none.

    Raises:
        ValueError: an unknown day code or a malformed time.
    """
    return _available_time(service, "HealthcareService")


def from_location(location: Mapping[str, Any]) -> WeeklyRules | None:
    """Rules from `Location.hoursOfOperation` (opening/closing times), or None if none.

    Raises:
        ValueError: an unknown day code or a malformed time.
    """
    where = f"{_reference(location)}.hoursOfOperation"
    rules = tuple(
        _rule(
            item.get("daysOfWeek"),
            item.get("allDay"),
            item.get("openingTime"),
            item.get("closingTime"),
            where,
        )
        for item in location.get("hoursOfOperation") or ()
        if isinstance(item, Mapping)
    )
    return WeeklyRules("Location", _reference(location), rules) if rules else None


def rules_for(
    schedule: Mapping[str, Any],
    actors: Sequence[Mapping[str, Any]] = (),
    base: str = DEFAULT_BASE,
    locations: Sequence[Mapping[str, Any]] = (),
) -> WeeklyRules | None:
    """The weekly rules of a Schedule from the first source that has any (module docstring).

    Args:
        schedule: the Schedule as FHIR JSON.
        actors: the resources its `actor` references, in `Schedule.actor` order. Within one
            source kind the first actor with rules wins.
        base: the canonical base of our extensions.
        locations: the actors' sites (`timezones.location_references`), tried for
            `hoursOfOperation` after the Location actors.

    Returns:
        The rules, with the `notAvailable` periods of every PractitionerRole and
        HealthcareService actor; None when no source has rules (the Schedule then offers only
        stored Slots).

    Raises:
        ValueError: the winning source is malformed (unknown day code, bad time, bad extension).
    """

    def of_type(kind: str) -> list[Mapping[str, Any]]:
        return [actor for actor in actors if actor.get("resourceType") == kind]

    found = from_schedule_extension(schedule, base)
    candidates = (
        *((from_practitioner_role, role) for role in of_type("PractitionerRole")),
        *((from_healthcare_service, service) for service in of_type("HealthcareService")),
        *((from_location, site) for site in (*of_type("Location"), *locations)),
    )
    for extract, resource in candidates:
        if found is None:
            found = extract(resource)
    if found is None:
        return None
    leave = tuple(
        period
        for actor in actors
        if actor.get("resourceType") in ("PractitionerRole", "HealthcareService")
        for period in _not_available(actor)
    )
    return WeeklyRules(found.source, found.reference, found.rules, leave)
