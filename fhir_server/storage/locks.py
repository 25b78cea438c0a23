"""The cross-process lock of `ResourceStore.lock`, shared by the adapters: a lease per holder.

A holder takes the lock with a fresh owner token and a lease that ends LOCK_TTL_US after it
was taken, so a lock left by a crashed process is taken over once its lease has lapsed. The
adapter supplies two engine operations on its `locks` table or collection:

- `take(key, owner, now, expires) -> bool`: insert `key` for `owner` until `expires`, or take
  it over when its lease ended before `now` (`expires < now`); False while another holds it.
- `release(key, owner)`: delete `key` only while `owner` still holds it, so a holder whose
  lease lapsed and was taken over never frees the new holder's lock.

Instants are µs since the epoch, UTC (`resources.fhir_dates.now_us`).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

from resources.errors import StoreConflict
from resources.fhir_dates import now_us

__all__ = ["LOCK_TTL_US", "Release", "Take", "hold"]

LOCK_TTL_US = 30_000_000
"""How long a lease lasts (µs): a lock left by a crashed process may be taken over after it."""

Take = Callable[[str, str, int, int], Awaitable[bool]]
"""`take(key, owner, now, expires)`: True when `owner` now holds `key` (module docstring)."""
Release = Callable[[str, str], Awaitable[None]]
"""`release(key, owner)`: delete `key` if `owner` still holds it (module docstring)."""


@contextlib.asynccontextmanager
async def hold(
    key: str, timeout: float, take: Take, release: Release, *, poll_s: float
) -> AsyncIterator[None]:
    """Hold the lock `key` for the block under a new owner token, then release it.

    Tries `take` every `poll_s` seconds until it succeeds or `timeout` seconds have passed.
    The release runs however the block ends and frees only this holder's lock.

    Args:
        key: what is locked, e.g. conditional-create criteria `Patient?identifier=x`.
        timeout: seconds to wait for a held lock.
        take, release: the adapter's engine operations (module docstring).
        poll_s: seconds between attempts.

    Raises:
        StoreConflict: the lock is still held by another after `timeout` seconds.
    """
    owner = uuid.uuid4().hex
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        now = now_us()
        if await take(key, owner, now, now + LOCK_TTL_US):
            break
        if loop.time() >= deadline:
            raise StoreConflict(f"Timed out waiting for the lock on {key}", key=key)
        await asyncio.sleep(poll_s)
    try:
        yield
    finally:
        await release(key, owner)
