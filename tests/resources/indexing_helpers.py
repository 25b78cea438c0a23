"""Helpers shared by the index extraction suites (tests/resources/test_indexing*.py): the
example data, microsecond instants of wall-clock times, and the entries and sort keys of one
search parameter."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from resources.index_values import IndexEntry, ReferenceEntry, ResourceIndex, SortKey

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
SECOND = 1_000_000
DAY = 86_400 * SECOND


def shared_data() -> Path:
    """`../shared/data` beside the repo, or skip the test when it is absent."""
    path = Path(__file__).resolve().parents[2].parent / "shared" / "data"
    if not path.is_dir():
        pytest.skip("needs ../shared/data (the shared data folder beside the repo)")
    return path


def example(name: str) -> dict[str, Any]:
    resource: dict[str, Any] = json.loads(
        (shared_data() / "hl7-r4" / "examples" / f"{name}.json").read_text()
    )
    return resource


def us(
    year: int,
    month: int,
    day: int,
    hour: int = 0,
    minute: int = 0,
    second: int = 0,
    micro: int = 0,
    tz: str = "UTC",
) -> int:
    """µs since the epoch of a wall-clock time in `tz`, computed with the stdlib alone."""
    moment = dt.datetime(year, month, day, hour, minute, second, micro, tzinfo=ZoneInfo(tz))
    return (moment - EPOCH) // dt.timedelta(microseconds=1)


def of(index: ResourceIndex, param: str) -> list[IndexEntry]:
    return [entry for entry in index.entries if entry.param == param]


def sort_key(index: ResourceIndex, param: str) -> SortKey | None:
    return next((key for key in index.sort_keys if key.param == param), None)


def ref(
    param: str, ref_type: str | None, ref_id: str | None, url: str | None = None
) -> ReferenceEntry:
    return ReferenceEntry(param=param, ref_type=ref_type, ref_id=ref_id, url=url)
