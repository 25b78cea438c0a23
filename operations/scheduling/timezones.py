"""Which IANA time zone a Schedule's wall-clock rules are read in, and wall time -> UTC.

SCHEDULING.md "Time zone": the standard `timezone` extension on the Schedule, else on its actor,
else on the actor's Location, else the server default. Conversions use `zoneinfo` (backed by the
`tzdata` package). Local wall-clock times that fall in a daylight-saving gap map to the first
instant after the gap; times repeated by a fall-back take their first occurrence (`fold=0`).
`repeated_spans` gives the instants of the second occurrence (`fold=1`: 06:00Z-07:00Z on
2026-11-01 in New York, 01:00-02:00 EST), which `rules.rule_windows` never opens.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from operations.scheduling.extensions import ExtensionError, timezone_code
from operations.scheduling.intervals import Interval
from resources.fhir_dates import US

__all__ = [
    "is_known_zone",
    "local_date",
    "location_references",
    "repeated_spans",
    "schedule_timezone",
    "wall_to_utc_us",
    "whole_local_days",
    "zone",
]

_US_PER_DAY: Final = 86_400 * US
_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_EPOCH_ORDINAL: Final = dt.date(1970, 1, 1).toordinal()
_UTC_NAMES: Final = frozenset({"UTC", "Etc/UTC"})


@functools.lru_cache(maxsize=512)
def _load(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def is_known_zone(name: str) -> bool:
    """True when `name` is an IANA zone `zoneinfo` can load (e.g. `Europe/Berlin`)."""
    return bool(name) and (name in _UTC_NAMES or _load(name) is not None)


def zone(name: str) -> ZoneInfo | None:
    """The `ZoneInfo` for `name`, or None for UTC (callers then skip all conversion).

    Raises:
        ValueError: `name` is no IANA zone.
    """
    if name in _UTC_NAMES:
        return None
    loaded = _load(name) if name else None
    if loaded is None:
        raise ValueError(f"unknown time zone {name!r}")
    return loaded


def location_references(actors: Iterable[Mapping[str, Any]]) -> list[str]:
    """The `Location/{id}` references of the actors' sites, in order, without duplicates.

    Reads `PractitionerRole.location` and `HealthcareService.location` (other actors have no
    site element); gives the caller the Locations to fetch for `schedule_timezone` and
    `rules.rules_for`.
    """
    found: list[str] = []
    for actor in actors:
        if actor.get("resourceType") not in ("PractitionerRole", "HealthcareService"):
            continue
        for reference in actor.get("location") or ():
            text = reference.get("reference") if isinstance(reference, Mapping) else None
            if isinstance(text, str) and text not in found:
                found.append(text)
    return found


def schedule_timezone(
    schedule: Mapping[str, Any],
    actors: Sequence[Mapping[str, Any]] = (),
    locations: Sequence[Mapping[str, Any]] = (),
    default: str = "UTC",
) -> str:
    """The IANA zone a Schedule's local wall-clock rules are read in.

    SCHEDULING.md "Time zone": the first `http://hl7.org/fhir/StructureDefinition/timezone`
    extension naming a known zone, looked for on the Schedule, then on each actor (in
    `Schedule.actor` order), then on each Location (the actors' sites, see
    `location_references`), else `default`. A source whose code is unknown to `zoneinfo` (or
    whose extension is malformed) is skipped, so a typo falls through to the next source.

    Args:
        schedule: the Schedule as FHIR JSON.
        actors: the resources `Schedule.actor` references (missing ones left out).
        locations: the Locations of those actors.
        default: the server default (`FHIR_SERVER_DEFAULT_TIMEZONE`).

    Returns:
        A name `zone()` accepts, e.g. `America/New_York`.

    Raises:
        ValueError: no source names a known zone and `default` is unknown too.
    """
    for resource in (schedule, *actors, *locations):
        try:
            code = timezone_code(resource)
        except ExtensionError:
            continue
        if code is not None and is_known_zone(code):
            return code
    if not is_known_zone(default):
        raise ValueError(f"unknown default time zone {default!r}")
    return default


def wall_to_utc_us(tz: ZoneInfo | None, ordinal: int, time_us: int) -> int:
    """The UTC instant of a local wall-clock time, in µs since the epoch.

    Args:
        tz: the zone (None for UTC).
        ordinal: the local date as `date.toordinal()`.
        time_us: µs since local midnight, `0 <= time_us < 86_400_000_000`.

    Returns:
        The instant whose local time is that wall time. A time in a spring-forward gap (e.g.
        02:30 on 2026-03-08 in America/New_York) does not exist: it maps to the first instant
        after the gap (03:00 EDT = 07:00Z). A time repeated by a fall-back (01:30 on 2026-11-01
        in New York) maps to its first occurrence (`fold=0`, 01:30 EDT = 05:30Z).
    """
    local_us = (ordinal - _EPOCH_ORDINAL) * _US_PER_DAY + time_us
    if tz is None:
        return local_us
    naive = dt.datetime.fromordinal(ordinal) + dt.timedelta(microseconds=time_us)
    before = _offset_us(tz.utcoffset(naive))
    after = _offset_us(tz.utcoffset(naive.replace(fold=1)))
    if after <= before:  # an ordinary time (equal) or a repeated one (fold=0 is the first)
        return local_us - before
    # A gap: the instant lies in (local - after, local - before]: the transition.
    return _transition_us(tz, local_us - after, local_us - before, after)


def repeated_spans(tz: ZoneInfo | None, first: int, last: int) -> list[Interval]:
    """The instants whose local time repeats an earlier one (`fold=1`), on local days
    `first`..`last` (ordinals as `date.toordinal()`), as a normalized list (µs UTC).

    A fall-back of `d` µs at the UTC instant `T` (offset `before` -> `after = before - d`)
    repeats the wall times of `[T - d, T)`; its span is `[T, T + d)`, e.g. 06:00Z-07:00Z on
    2026-11-01 in America/New_York (01:00-02:00 EST, after 01:00-02:00 EDT at 05:00Z-06:00Z),
    01:00Z-02:00Z on 2026-10-25 in Europe/Berlin, 15:00Z-15:30Z on 2026-04-04 in
    Australia/Lord_Howe (01:30-02:00 +10:30 on 04-05). Each day is looked up once from the
    zone table (offsets at its first and last instant, a binary search for the transition)
    and cached; it assumes at most one offset change per local day, true of every tzdata
    zone since 1970 (the closest two transitions are 6.9 days apart). SCHEDULING.md "Time
    zone": repeated hours are not doubled.

    Args:
        tz: the zone (None for UTC: nothing repeats).
        first, last: the local dates, inclusive.

    Returns:
        One interval per fall-back on those days, sorted; `[]` on most days.
    """
    if tz is None:
        return []
    found = (_repeated_span(tz, ordinal) for ordinal in range(first, last + 1))
    return [span for span in found if span is not None]


@functools.lru_cache(maxsize=8192)
def _repeated_span(tz: ZoneInfo, ordinal: int) -> Interval | None:
    start = wall_to_utc_us(tz, ordinal, 0)
    end = wall_to_utc_us(tz, ordinal + 1, 0)
    before, after = _offset_at(tz, start), _offset_at(tz, end - 1)
    if after >= before:  # no change, or a spring-forward gap (no instant repeats)
        return None
    transition = _transition_us(tz, start, end - 1, after)
    return Interval(transition, transition + before - after)


def _transition_us(tz: ZoneInfo, low_us: int, high_us: int, after: int) -> int:
    """The first whole second in `[low_us, high_us]` whose offset is `after`, in µs, given
    one transition there to `after` (TZif stores transitions in whole seconds)."""
    low, high = low_us // US, high_us // US
    while low < high:
        middle = (low + high) // 2
        if _offset_at(tz, middle * US) == after:
            high = middle
        else:
            low = middle + 1
    return low * US


def _offset_at(tz: ZoneInfo, us: int) -> int:
    """The UTC offset in force at the instant `us`, in µs."""
    return _offset_us((_EPOCH + dt.timedelta(microseconds=us)).astimezone(tz).utcoffset())


def _offset_us(offset: dt.timedelta | None) -> int:
    return 0 if offset is None else (offset.days * 86_400 + offset.seconds) * US


def local_date(us: int, tz: ZoneInfo | None) -> dt.date:
    """The local calendar date of the instant `us` (µs since the epoch, UTC) in `tz`."""
    moment = _EPOCH + dt.timedelta(microseconds=us)
    return (moment if tz is None else moment.astimezone(tz)).date()


def whole_local_days(window: Interval, tz: ZoneInfo | None) -> Interval:
    """`window` widened to local midnights: from the start of its first local day to the end
    of its last (the day holding `window.end - 1`).

    Rule windows computed over whole days give slots that do not depend on where a search
    window starts (`slots.lay_slots` lays them from each window's start).
    """
    first = local_date(window.start, tz).toordinal()
    last = local_date(max(window.start, window.end - 1), tz).toordinal()
    return Interval(wall_to_utc_us(tz, first, 0), wall_to_utc_us(tz, last + 1, 0))
