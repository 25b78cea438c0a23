"""`RateLimiter` counts API requests in shares of the limit (`smart_auth.rate_limits`): never
more than the limit admitted in a window, whatever the processes and their interleaving; at
most (share - 1) refused early per other process; one database write per share, not per
request; a new window starts with the whole allowance. Two limiters on two stores over one
SQLite file stand for two worker processes (each has its own connection, as a process does).
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fhir_server.storage.sqlite import SQLiteStore
from resources.errors import TooManyRequests
from resources.fhir_dates import now_us
from smart_auth import rate_limits
from smart_auth.rate_limits import Limit, RateLimiter, share_of

MINUTE_US = 60_000_000
PER_USER = Limit("rate-user", 100, 60, "requests a minute for this user")


class CountingStore(SQLiteStore):
    """A SQLiteStore that counts its `count_hit` writes and, once `interleave` is seeded,
    first yields to the event loop a random number of times (as a store waiting for its
    database does), so that concurrent requests interleave around the write."""

    writes = 0
    interleave: random.Random | None = None

    async def count_hit(self, kind: str, key: str, expires: int, by: int = 1) -> int:
        self.writes += 1
        for _ in range(self.interleave.randrange(1, 4) if self.interleave else 0):
            await asyncio.sleep(0)
        return await super().count_hit(kind, key, expires, by)


@pytest.fixture
async def two_processes(tmp_path: Path) -> AsyncIterator[tuple[CountingStore, CountingStore]]:
    stores = (CountingStore(str(tmp_path / "fhir.db")), CountingStore(str(tmp_path / "fhir.db")))
    for store in stores:
        await store.start()
        store.writes = 0  # what the limiters write, not the store's own start
    try:
        yield stores
    finally:
        for store in stores:
            await store.close()


async def _admitted(limiter: RateLimiter, limit: Limit, who: str, at: int) -> bool:
    refusal = None
    try:
        await limiter.hit(limit, who, at)
    except TooManyRequests as exc:
        refusal = exc
    if refusal is None:
        return True
    assert refusal.headers is not None and 1 <= int(refusal.headers["Retry-After"]) <= 60
    return False


def minute(n: int) -> int:
    """The start of the n-th UTC minute from now (µs): windows that do not end during a test
    (the store drops a counter whose window has ended by its own clock)."""
    return (now_us() // MINUTE_US + 1 + n) * MINUTE_US


def test_shares_are_a_twentieth_of_the_limit_within_1_and_100() -> None:
    sizes = [share_of(Limit("k", n, 60, "")) for n in (1, 5, 39, 40, 100, 6000, 10**9)]
    assert sizes == [1, 1, 1, 2, 5, 100, 100]


async def test_alternating_processes_admit_exactly_the_limit_with_a_write_per_share(
    two_processes: tuple[CountingStore, CountingStore],
) -> None:
    limiters = [RateLimiter(store) for store in two_processes]
    at = minute(0) + 1
    results = [await _admitted(limiters[n % 2], PER_USER, "ada", at + n) for n in range(110)]
    assert results == [True] * 100 + [False] * 10
    writes = sum(store.writes for store in two_processes)
    assert writes == 100 // share_of(PER_USER) + 10  # 20 shares; each refusal asks anew


async def test_never_past_the_limit_and_at_most_a_share_less_per_other_process(
    two_processes: tuple[CountingStore, CountingStore],
) -> None:
    seed = random.Random(12)
    for count in (100, 103, 57):
        limit = Limit("rate-user", count, 60, "requests a minute for this user")
        for window in range(10):  # windows each with its own uneven split of the requests
            limiters = [RateLimiter(store) for store in two_processes]
            at = minute(1 + window + 10 * count)
            weight = seed.random()
            admitted = 0
            for n in range(300):
                limiter = limiters[0 if seed.random() < weight else 1]
                admitted += await _admitted(limiter, limit, "bo", at + n)
            assert count - (share_of(limit) - 1) <= admitted <= count


async def test_concurrent_requests_never_pass_the_limit_and_lose_no_share(
    two_processes: tuple[CountingStore, CountingStore], tmp_path: Path
) -> None:
    limit = Limit("rate-user", 103, 60, "requests a minute for this user")  # 20 shares + 3
    for seed, store in enumerate(two_processes):
        store.interleave = random.Random(seed)
    limiters = [RateLimiter(store) for store in two_processes]
    for window in range(5):
        at = minute(30 + window)

        async def arriving(n: int, at: int = at) -> bool:  # arriving over a few loop turns
            for _ in range(n % 7):
                await asyncio.sleep(0)
            return await _admitted(limiters[n % 3 == 0], limit, "cy", at)

        outcomes = await asyncio.gather(*(arriving(n) for n in range(250)))
        admitted = sum(outcomes)
        assert admitted <= limit.count
        with sqlite3.connect(tmp_path / "fhir.db") as db:  # what the processes took in all
            (taken,) = db.execute(
                "SELECT n FROM hits WHERE kind = 'rate-user' AND key LIKE 'cy|%' "
                "ORDER BY expires DESC LIMIT 1"
            ).fetchone()
        unused = sum(limiter.held(limit, "cy", at) for limiter in limiters)
        assert admitted + unused == min(taken, limit.count)  # every hit taken is used or held


async def test_a_new_window_starts_whole_and_small_limits_count_every_hit(
    two_processes: tuple[CountingStore, CountingStore],
) -> None:
    store, other = two_processes
    limiter, second = RateLimiter(store), RateLimiter(other)
    first_minute = minute(40)
    assert await _admitted(limiter, PER_USER, "di", first_minute)  # 4 left unused in it
    for n in range(100):  # the next minute: all 100 again, none from the old share
        assert await _admitted(limiter, PER_USER, "di", first_minute + MINUTE_US + n)
    assert not await _admitted(limiter, PER_USER, "di", first_minute + MINUTE_US + 100)
    small = Limit("rate-client", 5, 60, "requests a minute for this client")
    before = store.writes + other.writes
    results = [
        await _admitted((limiter, second)[n % 2], small, "app", first_minute) for n in range(7)
    ]
    assert results == [True] * 5 + [False] * 2
    assert store.writes + other.writes - before == 7  # shares of one hit: exact, as `hit`


async def test_unused_shares_of_ended_windows_are_dropped_first(
    two_processes: tuple[CountingStore, CountingStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rate_limits, "REMEMBERED", 3)
    limiter = RateLimiter(two_processes[0])
    first = minute(50)
    for who in ("u1", "u2", "u3"):  # three unused shares of one window
        assert await _admitted(limiter, PER_USER, who, first)
    assert limiter.held(PER_USER, "u1", first) == share_of(PER_USER) - 1
    later = first + MINUTE_US
    assert await _admitted(limiter, PER_USER, "u4", later)  # the next window: a fourth share
    assert [limiter.held(PER_USER, who, first) for who in ("u1", "u2", "u3")] == [0, 0, 0]
    assert limiter.held(PER_USER, "u4", later) == share_of(PER_USER) - 1
    for _ in range(share_of(PER_USER) - 1):  # used up: nothing kept for it
        assert await _admitted(limiter, PER_USER, "u4", later)
    assert limiter.held(PER_USER, "u4", later) == 0
