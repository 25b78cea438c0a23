"""Rate limits: how many requests a user, a client, or an address may make in a window,
counted in the database (`RecordStore.count_hit`), so every worker process and machine
sharing the store counts together.

Limits (settings, `FHIR_SERVER_` prefix; 0 turns one off):

- `RATE_LIMIT_PER_USER` (100 a minute): per signed-in user of a token (`sub`), on every
  request with a bearer token (`AuthServer.policy`);
- `RATE_LIMIT_PER_CLIENT` (6000 a minute): per client (all its users together), the same;
- `LOGINS_PER_MINUTE` (20): sign-in attempts per client address (`POST /auth/authorize`);
- `REGISTRATIONS_PER_HOUR` (10): per client address (`POST /auth/register`).

The administrator's own tokens (`fhir-server token`, client `fhir-server-cli`) are not
limited: they are for the people who run the server. Windows are fixed (minute or hour
boundaries in UTC); past a limit the caller gets 429 `throttled` with `Retry-After` (s until
the window ends) and an OperationOutcome (the sign-in page says it in words).

Sign-ins and registrations count every hit in the database (`hit`). The per-user and
per-client limits of API requests are counted by `RateLimiter`, in shares: a process takes
a share of a window's allowance (1/20 of the limit, 1 to 100 hits) with one database write and
admits that many requests before it writes again, instead of writing on every request
(measured on a cached read: two counter writes per request cost a third of its throughput,
`bench/rest.py`). Since every share is counted before any of it is used, no window ever
admits more than the limit, across all processes and machines; a process can hold at most
one unused share per caller (more only while several of its requests take shares at the
same instant), so a caller may be refused up to (share - 1) hits early per other process
(the default 100 a minute per user: shares of 5, 96 admitted at worst with two processes
splitting the requests unevenly). Limits of up to 39 have shares of one hit: exact.
"""

from __future__ import annotations

from dataclasses import dataclass

from fhir_server.model import RecordStore
from resources.errors import TooManyRequests
from resources.fhir_dates import US, now_us

__all__ = ["Limit", "RateLimiter", "hit", "share_of"]


@dataclass(frozen=True, slots=True)
class Limit:
    """At most `count` hits per `seconds`-long window for one caller.

    Attributes:
        kind: the counters' kind (`RecordStore.count_hit`), e.g. `rate-user`.
        count: hits allowed per window (0: no limit).
        seconds: the window's length (s).
        what: how the message names the hits, e.g. `requests a minute for this user`.
    """

    kind: str
    count: int
    seconds: int
    what: str


SHARE_PARTS = 20
"""A share is this fraction of the limit (`share_of`)."""
SHARE_MAX = 100
"""The largest share (hits)."""
REMEMBERED = 10_000
"""Unused shares a `RateLimiter` keeps; past it, it drops those of ended windows, and all of
them if that is not enough (a caller then loses its unused share: refused earlier, never
admitted past the limit)."""


def share_of(limit: Limit) -> int:
    """The hits a `RateLimiter` takes from the database at once for `limit`: 1/20 of it,
    at least 1, at most 100."""
    return max(1, min(SHARE_MAX, limit.count // SHARE_PARTS))


async def hit(records: RecordStore, limit: Limit, who: str, now: int | None = None) -> None:
    """Count one hit of `who` (a user, a client id, an address) against `limit`, in the
    database (one write).

    Args:
        now: µs UTC (default: the clock).

    Raises:
        TooManyRequests: (429 `throttled`, `Retry-After`) `who` is past the limit in this
            window; the hit is counted all the same.
    """
    if limit.count > 0:
        await _take(records, limit, who, 1, now)


def _window(limit: Limit, at: int) -> tuple[int, int]:
    """`(window number, end of the window in µs UTC)` of the window holding `at` (the
    number is the counters' key suffix)."""
    length = limit.seconds * US
    window = at // length
    return window, (window + 1) * length


def _slot(limit: Limit, who: str, at: int) -> tuple[str, str, int]:
    """`(kind, who, window number)`: what a `RateLimiter` keeps an unused share under."""
    return limit.kind, who, _window(limit, at)[0]


async def _take(records: RecordStore, limit: Limit, who: str, size: int, now: int | None) -> int:
    """Count `size` hits of `who` in the current window; how many of them are within the
    limit (at least 1).

    Raises:
        TooManyRequests: none of them is.
    """
    at = now if now is not None else now_us()
    window, ends = _window(limit, at)
    n = await records.count_hit(limit.kind, f"{who}|{window}", ends, size)
    within = min(size, limit.count - (n - size))
    if within <= 0:
        wait = max(1, -(-(ends - at) // US))
        raise TooManyRequests(
            f"More than {limit.count} {limit.what}: try again in {wait} s",
            headers={"Retry-After": str(wait)},
        )
    return within


class RateLimiter:
    """Per-user and per-client limits of API requests, counted in shares (module docstring):
    one per process, shared by all its requests.

    Args:
        records: where the counters live (`RecordStore.count_hit`).
    """

    def __init__(self, records: RecordStore) -> None:
        self.records = records
        self._left: dict[tuple[str, str, int], tuple[int, int]] = {}  # -> (unused, ends)

    async def hit(self, limit: Limit, who: str, now: int | None = None) -> None:
        """Count one hit of `who` against `limit`: from this process's unused share of the
        current window if it has one, else by taking a new share from the database.

        Args:
            now: µs UTC (default: the clock).

        Raises:
            TooManyRequests: (429 `throttled`, `Retry-After`) no share of the limit is left
                in this window.
        """
        if limit.count <= 0:
            return
        at = now if now is not None else now_us()
        if self.take_held(limit, who, at):
            return
        slot = _slot(limit, who, at)
        within = await _take(self.records, limit, who, share_of(limit), at)
        if within > 1:
            if len(self._left) >= REMEMBERED:
                self._left = {k: v for k, v in self._left.items() if v[1] > at}
                if len(self._left) >= REMEMBERED:
                    self._left.clear()
            before = self._left.get(slot, (0, 0))[0]  # taken meanwhile by another request
            self._left[slot] = (before + within - 1, _window(limit, at)[1])

    def take_held(self, limit: Limit, who: str, at: int) -> bool:
        """Count one hit of `who` against `limit` from this process's unused share of the
        window holding `at` (µs UTC), without waiting: False when it holds none (then
        `hit` takes a share from the database). Every request with a token asks this, so
        it is kept to a few dictionary operations. A limit of 0 (none) always admits."""
        if limit.count <= 0:
            return True
        slot = _slot(limit, who, at)
        left, ends = self._left.get(slot, (0, 0))
        if left > 1:
            self._left[slot] = (left - 1, ends)
            return True
        if left == 1:
            del self._left[slot]
            return True
        return False

    def held(self, limit: Limit, who: str, now: int | None = None) -> int:
        """The hits of `who` this process took for the window holding `now` and has not
        used yet."""
        at = now if now is not None else now_us()
        return self._left.get(_slot(limit, who, at), (0, 0))[0]
