"""The claims part of the ResourceStore contract (SCHEDULING.md "Never double-book"): taking,
keeping, changing and releasing claims, holds and their expiry; with the claim builders the
other claims suites import. The all-or-nothing and race tests: `test_claims_all_or_nothing.py`.

Runs on every engine of the `store` fixture (sqlite, mongomock, and a real MongoDB when
FHIR_SERVER_TEST_MONGODB_URL is set). Keys are minutes of `Schedule/s1` unless a test says
otherwise; owners are Appointments; instants are µs UTC.

mongomock-motor never suspends inside a call, so `asyncio.gather` runs mongomock applies one
after the other. The race tests therefore also run on `interleaved_store`: a MongoStore over
mongomock whose every database call first yields to the event loop a (seeded) random number
of times, so concurrent applies interleave between any two calls as they do on a real server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import pytest

from fhir_server.storage.base import Claim, ClaimKey, ClaimSet, ResourceStore, WriteOp
from resources.errors import ClaimConflict, StoreConflict
from resources.fhir_dates import now_us
from tests.storage.contract import index, snapshot, version

SCOPE = "Schedule/s1"
HOUR = 3_600_000_000  # µs


def keys(quanta: Iterable[int], scope: str = SCOPE) -> tuple[ClaimKey, ...]:
    """ClaimKeys of `scope` for the given quanta."""
    return tuple(ClaimKey(scope, q) for q in quanta)


def held(owner: str, quanta: Iterable[int], expires: int | None = None) -> list[Claim]:
    """The claims `owner` should hold on SCOPE, in `claims_of` / `claims_in` order."""
    return [Claim(k, owner, expires) for k in keys(sorted(quanta))]


def book(
    id: str,
    quanta: Iterable[int],
    *,
    v: int = 1,
    expected: int | None = None,
    expires: int | None = None,
    deleted: bool = False,
    scope: str = SCOPE,
) -> WriteOp:
    """A write of `Appointment/id` version `v` whose owner then holds exactly `quanta`."""
    claims = ClaimSet(f"Appointment/{id}", keys(quanta, scope), expires)
    ver = version("Appointment", id, v, deleted=deleted)
    return WriteOp(ver, v - 1 if expected is None else expected, index(), claims)


async def nothing_of(store: ResourceStore, id: str) -> bool:
    """True when `Appointment/id` has no resource, no history and no claims."""
    _, total = await store.history("instance", "Appointment", id)
    return (
        await store.read("Appointment", id) is None
        and total == 0
        and await store.claims_of(f"Appointment/{id}") == []
    )


# -- take, keep, change, release ------------------------------------------------------------


async def test_apply_claims_on_free_keys_takes_them(store: ResourceStore) -> None:
    op = book("a", range(10, 13))
    await store.apply([op])
    assert await store.read("Appointment", "a") == op.version
    assert await store.claims_of("Appointment/a") == held("Appointment/a", range(10, 13))
    assert await store.claims_in(SCOPE, 0, 100) == held("Appointment/a", range(10, 13))
    assert await store.claims_in(SCOPE, 11, 12) == held("Appointment/a", [11])
    assert await store.claims_in("Schedule/other", 0, 100) == []


async def test_apply_claim_held_by_another_owner_conflicts_and_writes_nothing(
    store: ResourceStore,
) -> None:
    await store.apply([book("a", range(10, 13))])
    before = await snapshot(store, "Appointment")
    with pytest.raises(ClaimConflict) as caught:
        await store.apply([book("b", range(12, 15))])
    assert caught.value.key == f"{SCOPE}#12"
    assert caught.value.status == 409
    assert await nothing_of(store, "b")
    assert await snapshot(store, "Appointment") == before
    assert await store.claims_in(SCOPE, 0, 100) == held("Appointment/a", range(10, 13))


async def test_apply_claim_held_by_live_hold_conflicts(store: ResourceStore) -> None:
    expires = now_us() + HOUR
    await store.apply([book("a", [5], expires=expires)])
    with pytest.raises(ClaimConflict) as caught:
        await store.apply([book("b", [4, 5])])
    assert caught.value.key == f"{SCOPE}#5"
    assert await nothing_of(store, "b")
    assert await store.claims_of("Appointment/a") == held("Appointment/a", [5], expires)


async def test_apply_same_claim_set_again_is_idempotent(store: ResourceStore) -> None:
    await store.apply([book("a", range(10, 13))])
    await store.apply([book("a", [12, 10, 11, 11], v=2)])
    assert await store.claims_of("Appointment/a") == held("Appointment/a", range(10, 13))
    assert await store.claims_in(SCOPE, 0, 100) == held("Appointment/a", range(10, 13))


async def test_apply_changed_claim_set_shrinks_and_grows(store: ResourceStore) -> None:
    await store.apply([book("a", range(10, 15))])
    await store.apply([book("a", range(12, 18), v=2)])
    assert await store.claims_of("Appointment/a") == held("Appointment/a", range(12, 18))
    await store.apply([book("b", [10, 11])])
    assert await store.claims_in(SCOPE, 0, 100) == [
        *held("Appointment/b", [10, 11]),
        *held("Appointment/a", range(12, 18)),
    ]


async def test_apply_claims_on_several_scopes_ordered_by_scope_then_quantum(
    store: ResourceStore,
) -> None:
    cs = ClaimSet("Appointment/a", (ClaimKey("Slot/z", 1), *keys([7, 3]), ClaimKey("Slot/z", 0)))
    await store.apply([WriteOp(version("Appointment", "a"), 0, index(), cs)])
    assert [c.key for c in await store.claims_of("Appointment/a")] == [
        *keys([3, 7]),
        ClaimKey("Slot/z", 0),
        ClaimKey("Slot/z", 1),
    ]
    assert await store.claims_in("Slot/z", 0, 2) == [
        Claim(ClaimKey("Slot/z", 0), "Appointment/a", None),
        Claim(ClaimKey("Slot/z", 1), "Appointment/a", None),
    ]


async def test_apply_hold_then_booking_clears_expiry(store: ResourceStore) -> None:
    expires = now_us() + HOUR
    await store.apply([book("a", range(3), expires=expires)])
    assert await store.claims_of("Appointment/a") == held("Appointment/a", range(3), expires)
    await store.apply([book("a", range(3), v=2)])
    assert await store.claims_of("Appointment/a") == held("Appointment/a", range(3))


async def test_apply_empty_claim_set_releases_everything(store: ResourceStore) -> None:
    await store.apply([book("a", range(10, 13))])
    await store.apply([book("a", [], v=2)])
    assert await store.claims_of("Appointment/a") == []
    assert await store.claims_in(SCOPE, 0, 100) == []
    await store.apply([book("b", range(10, 13))])
    assert await store.claims_in(SCOPE, 0, 100) == held("Appointment/b", range(10, 13))


async def test_apply_without_claim_set_leaves_claims(store: ResourceStore) -> None:
    await store.apply([book("a", range(3))])
    await store.apply([WriteOp(version("Appointment", "a", 2), 1, index())])
    gone = version("Appointment", "a", 3, deleted=True)
    await store.apply([WriteOp(gone, 2, None)])
    assert await store.claims_of("Appointment/a") == held("Appointment/a", range(3))


async def test_apply_deletion_with_empty_claim_set_releases(store: ResourceStore) -> None:
    await store.apply([book("a", range(3))])
    await store.apply([book("a", [], v=2, deleted=True)])
    current = await store.read("Appointment", "a")
    assert current is not None
    assert current.deleted
    assert await store.claims_of("Appointment/a") == []


async def test_apply_key_released_and_taken_in_one_call_moves_it(store: ResourceStore) -> None:
    await store.apply([book("a", range(3))])
    await store.apply([book("a", [], v=2), book("b", range(1, 4))])
    assert await store.claims_of("Appointment/a") == []
    assert await store.claims_in(SCOPE, 0, 100) == held("Appointment/b", range(1, 4))


async def test_apply_owner_with_two_claim_sets_keeps_the_last(store: ResourceStore) -> None:
    await store.apply([book("a", range(3)), book("a", [7, 8], v=2, expected=1)])
    assert await store.claims_of("Appointment/a") == held("Appointment/a", [7, 8])


# -- holds and expiry --------------------------------------------------------------------------


async def test_apply_claim_on_expired_hold_takes_it_over(store: ResourceStore) -> None:
    past = now_us() - 1_000_000
    await store.apply([book("a", range(3), expires=past)])
    await store.apply([book("b", [2, 3])])
    assert await store.claims_of("Appointment/a") == held("Appointment/a", [0, 1], past)
    assert await store.claims_of("Appointment/b") == held("Appointment/b", [2, 3])
    assert await store.claims_in(SCOPE, 0, 100) == held("Appointment/b", [2, 3])


async def test_claims_in_expired_hold_is_invisible(store: ResourceStore) -> None:
    past = now_us() - 1_000_000
    await store.apply([book("a", range(3), expires=past)])
    await store.apply([book("b", [5], expires=now_us() + HOUR)])
    assert [c.owner for c in await store.claims_in(SCOPE, 0, 100)] == ["Appointment/b"]
    assert await store.claims_of("Appointment/a") == held("Appointment/a", range(3), past)


async def test_release_expired_deletes_them_and_returns_their_owners(
    store: ResourceStore,
) -> None:
    now = now_us()
    live = now + HOUR
    await store.apply(
        [
            book("a", range(3), expires=now - 5),
            book("b", [5], expires=now - 1),
            book("c", [6], expires=live),
            book("d", [7]),
            book("e", [8], expires=now),
        ]
    )
    assert await store.release_expired(now) == ["Appointment/a", "Appointment/b"]
    assert await store.claims_of("Appointment/a") == []
    assert await store.claims_of("Appointment/b") == []
    assert await store.claims_of("Appointment/c") == held("Appointment/c", [6], live)
    assert await store.claims_of("Appointment/d") == held("Appointment/d", [7])
    assert await store.claims_of("Appointment/e") == held("Appointment/e", [8], now)
    assert await store.release_expired(now) == []


async def race_takeover_of_expired_hold(store: ResourceStore) -> None:
    """10 applies race to take over one expired hold: exactly one wins."""
    await store.apply([book("old", range(4), expires=now_us() - 1_000_000)])
    takers = [f"t{i}" for i in range(10)]
    results = await asyncio.gather(
        *(store.apply([book(t, range(4))]) for t in takers), return_exceptions=True
    )
    assert all(r is None or isinstance(r, StoreConflict) for r in results)
    winners = [t for t, r in zip(takers, results, strict=True) if r is None]
    assert len(winners) == 1
    assert await store.claims_in(SCOPE, 0, 100) == held(f"Appointment/{winners[0]}", range(4))
    for t in takers:
        if t not in winners:
            assert await nothing_of(store, t)


async def test_apply_concurrent_takeover_of_expired_hold_one_wins(store: ResourceStore) -> None:
    await race_takeover_of_expired_hold(store)


async def test_apply_interleaved_takeover_of_expired_hold_one_wins(
    interleaved_store: ResourceStore,
) -> None:
    await race_takeover_of_expired_hold(interleaved_store)


async def test_claim_runs_merge_each_owners_consecutive_quanta(store: ResourceStore) -> None:
    await store.apply([book("a", [1, 2, 3, 7, 8]), book("b", [4, 5]), book("c", [10, 11])])
    await store.apply([book("d", [20, 21], scope="Schedule/other")])
    await store.apply([book("e", [12, 13], expires=now_us() - 1_000_000)])  # a lapsed hold
    runs = await store.claim_runs(SCOPE, 0, 100)
    assert runs == [
        ("Appointment/a", 1, 4),
        ("Appointment/b", 4, 6),
        ("Appointment/a", 7, 9),
        ("Appointment/c", 10, 12),
    ]
    # the window cuts runs at its edges, exactly as claims_in does
    assert await store.claim_runs(SCOPE, 2, 8) == [
        ("Appointment/a", 2, 4),
        ("Appointment/b", 4, 6),
        ("Appointment/a", 7, 8),
    ]
    assert await store.claim_runs("Schedule/none", 0, 100) == []
