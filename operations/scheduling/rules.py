"""Weekly availability rules turned into UTC windows, limited as the Schedule says.

SCHEDULING.md "Resources and where availability comes from". The rules come from
`operations.scheduling.sources` (`rules_for`, `WeeklyRules`, one extractor per source).
`rule_windows` applies them local day by local day in the Schedule's zone
(`timezones.wall_to_utc_us`), SCHEDULING.md "Time zone":

- A spring-forward gap opens no time: 02:00-04:00 on 2026-03-08 in New York is 03:00-04:00 EDT,
  07:00Z-08:00Z (the window starts at the first instant that exists).
- A fall-back hour is not doubled: each wall time takes its first occurrence (`fold=0`), and
  the second occurrence of a repeated wall time (the instants whose local time has `fold=1`,
  `timezones.repeated_spans`) is never opened by a rule. On 2026-11-01 in New York (02:00 EDT
  -> 01:00 EST at 06:00Z, so 06:00Z-07:00Z repeats 01:00-02:00): 00:00-03:00 is
  04:00Z-06:00Z and 07:00Z-08:00Z (three wall-clock hours); 01:00-01:30 is 05:00Z-05:30Z only;
  01:30-02:30 is 05:30Z-06:00Z and 07:00Z-07:30Z; an all-day rule is 24 hours, not 25. Any
  zone and shift size: on 2026-04-05 on Lord Howe Island (02:00 +11 -> 01:30 +10:30 at
  15:00Z), 01:00-03:00 is 14:00Z-15:00Z and 15:30Z-16:30Z (04-04).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from operations.scheduling.intervals import FOREVER, NEVER, Interval, clip, subtract
from operations.scheduling.sources import NotAvailable, WeeklyRule, WeeklyRules
from operations.scheduling.timezones import local_date, repeated_spans, wall_to_utc_us, zone
from resources.fhir_dates import date_range

__all__ = ["period_interval", "rule_windows", "schedule_windows"]


def period_interval(start: str | None, end: str | None, tz: str) -> Interval:
    """The instants of a FHIR Period, as a half-open interval (µs UTC).

    A missing start or end leaves that side open (`NEVER`/`FOREVER`). Values without an
    offset are read in `tz`. A start covers its whole precision from its first instant; an end
    written as a date (or month, year) includes that whole local day (FHIR Period ends are
    inclusive), an end with a time is the instant itself, exclusive (`...T00:00:00-05:00`
    ends at midnight, as Slot and Appointment ends do).

    Raises:
        ValueError: a value is no FHIR dateTime, `tz` is unknown, or the end is before the start.
    """
    low = NEVER if start is None else date_range(start, tz)[0]
    if end is None:
        high = FOREVER
    else:
        end_low, end_high = date_range(end, tz)
        high = end_low if "T" in end else end_high
    return Interval(low, high)


def rule_windows(
    rules: Sequence[WeeklyRule],
    not_available: Sequence[NotAvailable],
    window: Interval,
    tz: str,
) -> list[Interval]:
    """The UTC windows that weekly `rules` open within `window`, minus `not_available`.

    Each rule is applied to every local date whose hours can reach into `window` (the day
    before included, for overnight rules), its wall-clock ends converted with
    `timezones.wall_to_utc_us`; the repeated instants of fall-back days
    (`timezones.repeated_spans`) are then removed (DST handling in the module docstring).
    Overlapping or touching windows merge. Cost is O(days x rules) plus one cached zone
    lookup per day; callers bound `window` (31 days per search).

    Args:
        rules: weekly rules, e.g. `WeeklyRules.rules`.
        not_available: periods removed from the result (`period_interval` semantics).
        window: the UTC span wanted (µs, half-open).
        tz: the IANA zone the rules are written in.

    Returns:
        A normalized list of intervals inside `window`.

    Raises:
        ValueError: `tz` is unknown or a `not_available` period is malformed.
    """
    if window.start >= window.end or not rules:
        return []
    zone_info = zone(tz)
    first = local_date(window.start, zone_info).toordinal() - 1
    last = local_date(window.end - 1, zone_info).toordinal()
    opened: list[Interval] = []
    for ordinal in range(first, last + 1):
        weekday = (ordinal - 1) % 7  # date.fromordinal(1) is a Monday
        for rule in rules:
            if weekday not in rule.days:
                continue
            start = wall_to_utc_us(zone_info, ordinal, rule.start_us)
            end_day = ordinal if rule.end_us > rule.start_us else ordinal + 1
            end = wall_to_utc_us(zone_info, end_day, rule.end_us)
            if start < end:
                opened.append(Interval(start, end))
    closed = [period_interval(p.start, p.end, tz) for p in not_available]
    closed += repeated_spans(zone_info, first, last)
    return clip(subtract(opened, closed), window)


def schedule_windows(
    schedule: Mapping[str, Any], weekly: WeeklyRules | None, window: Interval, tz: str
) -> list[Interval]:
    """The rule-based windows of a Schedule within `window`, as SCHEDULING.md limits them.

    Nothing when `Schedule.active` is false or there are no rules; otherwise `rule_windows`
    clipped to `Schedule.planningHorizon` (`period_interval` semantics, in `tz`).

    Args:
        schedule: the Schedule as FHIR JSON.
        weekly: its rules (`rules_for`), or None.
        window: the UTC span wanted (µs, half-open).
        tz: the Schedule's zone (`timezones.schedule_timezone`).

    Returns:
        A normalized list of intervals.

    Raises:
        ValueError: `tz` is unknown, or a malformed planningHorizon / notAvailable period.
    """
    if schedule.get("active") is False or weekly is None:
        return []
    horizon = schedule.get("planningHorizon")
    if isinstance(horizon, Mapping):
        bounds = period_interval(horizon.get("start"), horizon.get("end"), tz)
        start, end = max(window.start, bounds.start), min(window.end, bounds.end)
        if start >= end:
            return []
        window = Interval(start, end)
    return rule_windows(weekly.rules, weekly.not_available, window, tz)
