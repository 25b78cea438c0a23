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
"""

from __future__ import annotations

from dataclasses import dataclass

from fhir_server.model import RecordStore
from resources.errors import TooManyRequests
from resources.fhir_dates import now_us

__all__ = ["Limit", "hit"]

US = 1_000_000


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


async def hit(records: RecordStore, limit: Limit, who: str, now: int | None = None) -> None:
    """Count one hit of `who` (a user, a client id, an address) against `limit`.

    Args:
        now: µs UTC (default: the clock).

    Raises:
        TooManyRequests: (429 `throttled`, `Retry-After`) `who` is past the limit in this
            window; the hit is counted all the same.
    """
    if limit.count <= 0:
        return
    at = now if now is not None else now_us()
    length = limit.seconds * US
    window = at // length
    ends = (window + 1) * length
    n = await records.count_hit(limit.kind, f"{who}|{window}", ends)
    if n > limit.count:
        wait = max(1, -(-(ends - at) // US))
        raise TooManyRequests(
            f"More than {limit.count} {limit.what}: try again in {wait} s",
            headers={"Retry-After": str(wait)},
        )
