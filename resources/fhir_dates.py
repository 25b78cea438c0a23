"""FHIR date, dateTime and instant values as UTC microsecond ranges sized by their precision.

Instants are integers: microseconds since 1970-01-01T00:00:00Z. A value stands for the whole
span its precision covers (R4 `search.html#date`: "the range of the value"), so `2026` is the
half-open range `[2026-01-01, 2027-01-01)` and `2026-11-22T10:30` is one minute long. Values
without an offset (dates, and dateTimes written without one) are read in a default IANA zone.
Only the standard library is used (`zoneinfo`, backed by the `tzdata` package).
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import time
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# Year, month, day, hour, minute, second, fraction, offset (R4 `datatypes.html#dateTime`,
# loosened to accept a time without seconds or offset, as search values may be written).
_DATE_TIME = re.compile(
    r"(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?"
    r"(Z|[+-]\d{2}:\d{2})?)?)?)?",
    re.ASCII,
)
US: Final = 1_000_000
"""Microseconds per second: instants throughout the server are µs since the epoch, UTC."""
_US_PER_DAY = 86_400 * US
_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()
_MAX_ORDINAL = dt.date.max.toordinal()
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_UTC_NAMES = frozenset({"UTC", "Etc/UTC", "Z"})


@functools.cache
def _zone(name: str) -> ZoneInfo | None:
    """The zone named `name`, or None for UTC (the fast path). Raises ValueError if unknown."""
    if name in _UTC_NAMES:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ValueError(f"unknown time zone {name!r}") from error


def check_zone(name: str) -> None:
    """Check that `name` is an IANA zone `date_range` accepts as `default_tz`.

    Raises:
        ValueError: the zone is unknown (e.g. `"Mars/Olympus"`).
    """
    _zone(name)


def _local_to_utc_us(local_us: int, ordinal: int, seconds_of_day: int, zone: ZoneInfo) -> int:
    """Convert wall-clock µs in `zone` to UTC µs (a skipped or repeated time takes fold=0)."""
    naive = dt.datetime.fromordinal(min(ordinal, _MAX_ORDINAL)) + dt.timedelta(
        seconds=seconds_of_day
    )
    offset = zone.utcoffset(naive)
    if offset is None:  # pragma: no cover - ZoneInfo always answers for a naive datetime
        return local_us
    return local_us - (offset.days * 86_400 + offset.seconds) * US


def _midnight_us(ordinal: int, zone: ZoneInfo | None) -> int:
    """UTC µs of local midnight starting the day `ordinal` (proleptic Gregorian)."""
    local = (ordinal - _EPOCH_ORDINAL) * _US_PER_DAY
    return local if zone is None else _local_to_utc_us(local, ordinal, 0, zone)


def date_range(text: str, default_tz: str = "UTC") -> tuple[int, int]:
    """The half-open UTC range `[low, high)`, in µs since the epoch, that a FHIR value covers.

    Accepts `date` (`YYYY`, `YYYY-MM`, `YYYY-MM-DD`), `dateTime` (`YYYY-MM-DDThh:mm`, with
    optional `:ss`, `.fraction` and `Z`/`±hh:mm` offset) and `instant`. The range spans the
    precision written: a year, a month, a day (in local time, so a DST day is 23 or 25 hours),
    a minute, a second, or the unit of the fraction's last digit (`.1` -> 100 ms; beyond six
    digits, 1 µs). R4 `search.html#date`, `datatypes.html#dateTime`.

    Args:
        text: the value as written in a resource or a search.
        default_tz: IANA zone for values without an offset (dates and offset-less times).

    Returns:
        `(low, high)` with `low < high`, both µs UTC.

    Raises:
        ValueError: the text is not a FHIR date/dateTime/instant (bad syntax, month 13,
            2023-02-30, hour 24, offset beyond ±23:59), or `default_tz` is unknown.
    """
    match = _DATE_TIME.fullmatch(text)
    if match is None:
        raise ValueError(f"invalid FHIR date/dateTime {text!r}")
    year_s, month_s, day_s, hour_s, minute_s, second_s, fraction, offset_s = match.groups()
    year = int(year_s)
    month = int(month_s) if month_s else 1
    day = int(day_s) if day_s else 1
    try:
        ordinal = dt.date(year, month, day).toordinal()
    except ValueError as error:
        raise ValueError(f"invalid FHIR date {text!r}: {error}") from error
    if hour_s is None:
        zone = _zone(default_tz)
        if month_s is None:
            next_ordinal = ordinal + (366 if _is_leap(year) else 365)
        elif day_s is None:
            next_ordinal = ordinal + _days_in_month(year, month)
        else:
            next_ordinal = ordinal + 1
        return _midnight_us(ordinal, zone), _midnight_us(next_ordinal, zone)
    hour, minute = int(hour_s), int(minute_s)
    second = int(second_s) if second_s else 0
    if hour > 23 or minute > 59 or second > 60:  # 60: a leap second, as the FHIR regex allows
        raise ValueError(f"invalid FHIR time in {text!r}")
    seconds_of_day = hour * 3600 + minute * 60 + second
    if fraction:
        digits = min(len(fraction), 6)
        width = 10 ** (6 - digits)
        sub_us = int(fraction[:digits]) * width
    else:
        width = US if second_s else 60 * US
        sub_us = 0
    local = (ordinal - _EPOCH_ORDINAL) * _US_PER_DAY + seconds_of_day * US + sub_us
    if offset_s is None:
        zone = _zone(default_tz)
        low = local if zone is None else _local_to_utc_us(local, ordinal, seconds_of_day, zone)
    elif offset_s == "Z":
        low = local
    else:
        offset_hours, offset_minutes = int(offset_s[1:3]), int(offset_s[4:6])
        if offset_hours > 23 or offset_minutes > 59:
            raise ValueError(f"invalid FHIR time zone offset in {text!r}")
        offset_us = (offset_hours * 3600 + offset_minutes * 60) * US
        low = local - offset_us if offset_s[0] == "+" else local + offset_us
    return low, low + width


def parse_instant(text: str) -> int:
    """The UTC µs of a FHIR `instant` (e.g. a `_since` value): seconds and offset required.

    Args:
        text: e.g. `2026-11-22T04:33:41.123Z` or `2026-11-22T05:33:41+01:00`.

    Returns:
        µs since the epoch, UTC (a fraction beyond six digits is truncated).

    Raises:
        ValueError: not an instant: no time, no seconds, no offset, or any invalid part.
        R4 `datatypes.html#instant`.
    """
    match = _DATE_TIME.fullmatch(text)
    if match is None or match.group(6) is None or match.group(8) is None:
        raise ValueError(f"invalid FHIR instant {text!r}: needs seconds and a Z or ±hh:mm offset")
    return date_range(text)[0]


def now_us() -> int:
    """The current time as µs since the epoch, UTC."""
    return time.time_ns() // 1000


def format_instant(us: int) -> str:
    """Format µs since the epoch as a FHIR instant in UTC with microseconds.

    Args:
        us: µs since 1970-01-01T00:00:00Z.

    Returns:
        e.g. `2026-11-22T04:33:41.123456Z` (always six fraction digits, so text order is time
        order; R4 `datatypes.html#instant`).

    Raises:
        ValueError: `us` falls outside years 1-9999.
    """
    try:
        moment = _EPOCH + dt.timedelta(microseconds=us)
    except OverflowError as error:
        raise ValueError(f"instant out of range: {us} µs") from error
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T{moment.hour:02d}:"
        f"{moment.minute:02d}:{moment.second:02d}.{moment.microsecond:06d}Z"
    )


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def _days_in_month(year: int, month: int) -> int:
    if month == 2:
        return 29 if _is_leap(year) else 28
    return 30 if month in (4, 6, 9, 11) else 31
