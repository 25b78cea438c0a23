"""Readers for the extensions availability depends on: ours, SMART `slot-capacity`, `timezone`.

Our extensions live under one configurable canonical base (`DEFAULT_BASE` unless the server is
configured otherwise); the URL of each is `{base}/{id}` (SCHEDULING.md "Our own extensions live
under one configurable canonical base"). Their StructureDefinitions are built by
`operations.scheduling.definitions.structure_definitions(base)`.

- `schedule-availability` on Schedule, repeated once per weekly rule: sub-extensions
  `daysOfWeek` (valueCode mon..sun, repeating), `allDay` (valueBoolean),
  `availableStartTime` / `availableEndTime` (valueTime);
- `visit-duration`, `buffer-before`, `buffer-after` on Schedule or HealthcareService:
  valueDuration in UCUM minutes (system `http://unitsofmeasure.org`, code `min`);
- `max-bookings-per-day` on Schedule or HealthcareService: valuePositiveInt.

Readers take resources as FHIR JSON dicts, return typed values or None when the extension is
absent, and raise `ExtensionError` when it is present but malformed (wrong `value[x]`, wrong unit,
out of range). A single-valued extension written twice is read from its first occurrence.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

from resources.extension_urls import SLOT_CAPACITY_URL, TIMEZONE_URL

__all__ = [
    "AVAILABILITY",
    "BUFFER_AFTER",
    "BUFFER_BEFORE",
    "DEFAULT_BASE",
    "DEFAULT_VISIT_US",
    "HOLD_EXPIRES",
    "MAX_BOOKINGS_PER_DAY",
    "PROPOSAL_EXPIRES",
    "SLOT_CAPACITY_URL",
    "TIMEZONE_URL",
    "UCUM",
    "VISIT_DURATION",
    "WAITLIST_OFFER",
    "WAITLIST_REPLACES",
    "AvailabilityEntry",
    "BookingParameters",
    "ExtensionError",
    "availability_entries",
    "booking_parameters",
    "buffer_after_us",
    "buffer_before_us",
    "extension_url",
    "max_bookings_per_day",
    "slot_capacity",
    "timezone_code",
    "visit_duration_us",
]

DEFAULT_BASE: Final = "https://fhir-scheduling.example.org/StructureDefinition"
"""The canonical base of our extensions when the server is not configured with another."""
UCUM: Final = "http://unitsofmeasure.org"

AVAILABILITY: Final = "schedule-availability"
VISIT_DURATION: Final = "visit-duration"
BUFFER_BEFORE: Final = "buffer-before"
BUFFER_AFTER: Final = "buffer-after"
MAX_BOOKINGS_PER_DAY: Final = "max-bookings-per-day"
HOLD_EXPIRES: Final = "hold-expires"
PROPOSAL_EXPIRES: Final = "proposal-expires"
REMINDER_OPT_OUT: Final = "reminder-opt-out"
WAITLIST_REPLACES: Final = "waitlist-replaces"
WAITLIST_OFFER: Final = "waitlist-offer"

DEFAULT_VISIT_US: Final = 30 * 60 * 1_000_000
"""The visit length when neither the Schedule nor a HealthcareService says (30 minutes, µs)."""
_US_PER_MINUTE: Final = 60 * 1_000_000


class ExtensionError(ValueError):
    """An extension is present but its value is malformed; the message names its URL."""


class AvailabilityEntry(NamedTuple):
    """One weekly rule of the `schedule-availability` extension, as written.

    `days` are FHIR day codes (`mon`..`sun`) in document order, `all_day` is False when absent,
    `start`/`end` are FHIR `time` strings (`hh:mm:ss`) or None when absent.
    """

    days: tuple[str, ...]
    all_day: bool
    start: str | None
    end: str | None


@dataclass(frozen=True, slots=True)
class BookingParameters:
    """How rule-derived slots are laid for one Schedule (all durations in µs).

    `max_per_day` is the most bookings one local day may hold, or None for no limit.
    """

    visit_us: int = DEFAULT_VISIT_US
    buffer_before_us: int = 0
    buffer_after_us: int = 0
    max_per_day: int | None = None


def extension_url(extension_id: str, base: str = DEFAULT_BASE) -> str:
    """The canonical URL `{base}/{extension_id}` of one of our extensions.

    Args:
        extension_id: e.g. `VISIT_DURATION` (`"visit-duration"`).
        base: the canonical base, with or without a trailing slash.
    """
    return f"{base.rstrip('/')}/{extension_id}"


def _first(resource: Mapping[str, Any], url: str) -> Mapping[str, Any] | None:
    for extension in resource.get("extension") or ():
        if isinstance(extension, Mapping) and extension.get("url") == url:
            return extension
    return None


def _value(extension: Mapping[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    value = extension.get(key)
    if isinstance(value, bool) and kind is not bool:
        value = None  # JSON true/false is no number
    if not isinstance(value, kind):
        raise ExtensionError(f"extension {extension.get('url')!r} needs a {key}")
    return value


def timezone_code(resource: Mapping[str, Any]) -> str | None:
    """The `valueCode` of the standard `timezone` extension on `resource`, or None.

    The code is returned as written; whether it names a known IANA zone is for
    `operations.scheduling.timezones` to decide.

    Raises:
        ExtensionError: the extension is present without a string `valueCode`.
    """
    extension = _first(resource, TIMEZONE_URL)
    return None if extension is None else str(_value(extension, "valueCode", str))


def slot_capacity(slot: Mapping[str, Any]) -> int:
    """The seats of a Slot: its SMART `slot-capacity` `valueInteger`, 1 when absent.

    Raises:
        ExtensionError: the extension has no integer `valueInteger`, or a negative one.
    """
    extension = _first(slot, SLOT_CAPACITY_URL)
    if extension is None:
        return 1
    capacity: int = _value(extension, "valueInteger", int)
    if capacity < 0:
        raise ExtensionError(f"extension {SLOT_CAPACITY_URL!r} is negative: {capacity}")
    return capacity


def _minutes_us(resource: Mapping[str, Any], url: str, *, positive: bool) -> int | None:
    extension = _first(resource, url)
    if extension is None:
        return None
    duration = _value(extension, "valueDuration", Mapping)
    value = duration.get("value")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ExtensionError(f"extension {url!r} needs a numeric valueDuration.value")
    if duration.get("code") != "min" or duration.get("system", UCUM) != UCUM:
        raise ExtensionError(f"extension {url!r} must be in UCUM minutes (code 'min')")
    us = round(value * _US_PER_MINUTE)
    if us < 0 or (positive and us == 0):
        raise ExtensionError(f"extension {url!r} is out of range: {value} min")
    return us


def visit_duration_us(resource: Mapping[str, Any], base: str = DEFAULT_BASE) -> int | None:
    """The `visit-duration` of a Schedule or HealthcareService in µs, or None when absent.

    Raises:
        ExtensionError: not a Duration in UCUM `min`, or not > 0.
    """
    return _minutes_us(resource, extension_url(VISIT_DURATION, base), positive=True)


def buffer_before_us(resource: Mapping[str, Any], base: str = DEFAULT_BASE) -> int | None:
    """The `buffer-before` (preparation time before each visit) in µs, or None when absent.

    Raises:
        ExtensionError: not a Duration in UCUM `min`, or negative.
    """
    return _minutes_us(resource, extension_url(BUFFER_BEFORE, base), positive=False)


def buffer_after_us(resource: Mapping[str, Any], base: str = DEFAULT_BASE) -> int | None:
    """The `buffer-after` (clean-up time after each visit) in µs, or None when absent.

    Raises:
        ExtensionError: not a Duration in UCUM `min`, or negative.
    """
    return _minutes_us(resource, extension_url(BUFFER_AFTER, base), positive=False)


def max_bookings_per_day(resource: Mapping[str, Any], base: str = DEFAULT_BASE) -> int | None:
    """The `max-bookings-per-day` of a Schedule or HealthcareService, or None when absent.

    Raises:
        ExtensionError: no integer `valuePositiveInt`, or one below 1.
    """
    url = extension_url(MAX_BOOKINGS_PER_DAY, base)
    extension = _first(resource, url)
    if extension is None:
        return None
    limit: int = _value(extension, "valuePositiveInt", int)
    if limit < 1:
        raise ExtensionError(f"extension {url!r} must be a positiveInt, not {limit}")
    return limit


def availability_entries(
    schedule: Mapping[str, Any], base: str = DEFAULT_BASE
) -> list[AvailabilityEntry]:
    """Every `schedule-availability` weekly rule on a Schedule, in document order.

    Args:
        schedule: a Schedule as FHIR JSON.
        base: the canonical base of our extensions.

    Returns:
        One entry per occurrence of the extension; empty when there is none. Unknown
        sub-extensions are ignored.

    Raises:
        ExtensionError: a known sub-extension has the wrong `value[x]`, or `allDay`,
            `availableStartTime` or `availableEndTime` is repeated.
    """
    url = extension_url(AVAILABILITY, base)
    entries: list[AvailabilityEntry] = []
    for extension in schedule.get("extension") or ():
        if not isinstance(extension, Mapping) or extension.get("url") != url:
            continue
        days: list[str] = []
        single: dict[str, Any] = {}
        for part in extension.get("extension") or ():
            name = part.get("url") if isinstance(part, Mapping) else None
            if name == "daysOfWeek":
                days.append(_value(part, "valueCode", str))
            elif name in _SINGLE_PARTS:
                if name in single:
                    raise ExtensionError(f"extension {url!r} repeats {name!r}")
                single[name] = _value(part, *_SINGLE_PARTS[name])
        entries.append(
            AvailabilityEntry(
                tuple(days),
                bool(single.get("allDay", False)),
                single.get("availableStartTime"),
                single.get("availableEndTime"),
            )
        )
    return entries


_SINGLE_PARTS: Final[dict[str, tuple[str, type]]] = {
    "allDay": ("valueBoolean", bool),
    "availableStartTime": ("valueTime", str),
    "availableEndTime": ("valueTime", str),
}


def booking_parameters(
    schedule: Mapping[str, Any],
    services: Sequence[Mapping[str, Any]] = (),
    base: str = DEFAULT_BASE,
) -> BookingParameters:
    """Visit length, buffers and daily limit for a Schedule (SCHEDULING.md "Visit length").

    Each parameter is read on its own from the Schedule, else from the first of `services`
    (the Schedule's HealthcareService actors, in `Schedule.actor` order) that has it, else
    the default: 30-minute visits, no buffers, no daily limit.

    Raises:
        ExtensionError: one of the extensions found is malformed.
    """
    sources = (schedule, *services)

    def pick(read: Callable[[Mapping[str, Any], str], int | None]) -> int | None:
        for resource in sources:
            value = read(resource, base)
            if value is not None:
                return value
        return None

    return BookingParameters(
        visit_us=pick(visit_duration_us) or DEFAULT_VISIT_US,
        buffer_before_us=pick(buffer_before_us) or 0,
        buffer_after_us=pick(buffer_after_us) or 0,
        max_per_day=pick(max_bookings_per_day),
    )
