"""The repository's writes without HTTP: one prepare/apply path, versions and `If-Match`,
references indexed by their canonical key, write rules consulted on every write, seats chosen
again after a lost race, and rules planned with the resources written beside."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from fhir_server.model import ClaimKey, ClaimSet
from fhir_server.repository import PlannedWrite, Repository, RepositoryFactory, RulesPlan
from resources.errors import Conflict, PreconditionFailed
from tests.conftest import TEST_BASE_URL as BASE


def patient(pid: str, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, **extra}


async def test_update_versions_unchanged_and_if_match(factory: RepositoryFactory) -> None:
    repo = factory.for_job("test", BASE)
    first = await repo.update("Patient", "p", patient("p"))
    assert (first.outcome, first.stored.version_id) == ("created", 1)
    same = await repo.update("Patient", "p", patient("p"))
    assert (same.outcome, same.stored.version_id) == ("unchanged", 1)
    second = await repo.update("Patient", "p", patient("p", gender="male"), if_match='W/"1"')
    assert (second.outcome, second.stored.version_id) == ("updated", 2)
    with pytest.raises(PreconditionFailed):
        await repo.update("Patient", "p", patient("p", gender="other"), if_match='W/"1"')
    patched = await repo.patch("Patient", "p", [{"op": "add", "path": "/active", "value": True}])
    assert patched.stored.version_id == 3


async def test_prepared_writes_apply_together_or_not_at_all(factory: RepositoryFactory) -> None:
    repo = factory.for_job("test", BASE)
    await repo.update("Patient", "keep", patient("keep"))
    new = await repo.prepare_create(patient("ignored"))
    stale = await repo.prepare_update("Patient", "keep", patient("keep", gender="male"))
    await repo.update("Patient", "keep", patient("keep", gender="female"))  # races ahead
    with pytest.raises(Conflict):
        await repo.apply([new, stale])
    assert new.op is not None
    assert await repo.lookup.read("Patient", new.op.version.id) is None


async def test_absolute_and_versioned_references_indexed_as_local(
    factory: RepositoryFactory,
) -> None:
    repo = factory.for_job("test", BASE)
    for n, ref in enumerate((f"{BASE}/Patient/p", "Patient/p/_history/4", "Patient/p")):
        obs = {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "x"},
            "subject": {"reference": ref},
        }
        await repo.update("Observation", f"o{n}", {**obs, "id": f"o{n}"})
    foreign = {
        "resourceType": "Observation",
        "id": "far",
        "status": "final",
        "code": {"text": "x"},
        "subject": {"reference": "https://other.example/fhir/Patient/p"},
    }
    await repo.update("Observation", "far", foreign)
    found = await repo.find("Observation", "subject=Patient/p", limit=10)
    assert sorted(r.id for r in found) == ["o0", "o1", "o2"]


class SeatRules:
    """Write rules that give each Basic a seat of `Slot/s` (capacity 3) chosen from the live
    claims, like the booking rules' shared Slots."""

    depends_on = frozenset({"Slot"})

    def __init__(self) -> None:
        self.plans = 0
        self.units: list[dict[tuple[str, str], Any]] = []

    async def plan(self, repository: Repository, write: PlannedWrite) -> RulesPlan:
        self.plans += 1
        self.units.append(dict(repository.unit))
        taken = {c.key.quantum for c in await repository.lookup.claims_in("Slot/s", 0, 3)}
        seat = min(set(range(3)) - taken)
        claims = ClaimSet(f"Basic/{write.id}", (ClaimKey("Slot/s", seat),))
        return RulesPlan(claims, seat_scopes=frozenset({"Slot/s"}))

    async def explain(self, repository: Repository, key: str, claims: ClaimSet) -> Conflict:
        return Conflict(f"seat {key} of {claims.owner} is taken", details_code="seat-taken")


def basic(bid: str) -> dict[str, Any]:
    return {"resourceType": "Basic", "id": bid, "code": {"text": "seat"}}


async def test_lost_seat_is_chosen_again_on_apply(factory: RepositoryFactory) -> None:
    rules = SeatRules()
    factory.rules["Basic"] = rules
    repo = factory.for_job("test", BASE)
    first = await repo.prepare_update("Basic", "one", basic("one"))
    second = await repo.prepare_update("Basic", "two", basic("two"))  # both planned seat 0
    await repo.apply([first])
    await repo.apply([second])  # seat 0 is lost: planned again, seat 1
    assert rules.plans == 3
    owners = {c.owner: c.key.quantum for c in await repo.lookup.claims_in("Slot/s", 0, 3)}
    assert owners == {"Basic/one": 0, "Basic/two": 1}
    rival = await repo.prepare_update("Basic", "three", basic("three"))
    assert rival.op is not None and rival.op.claims is not None
    held = ClaimSet("Basic/three", (ClaimKey("Slot/s", 0),))  # insists on a taken seat
    rival.op = replace(rival.op, claims=held)
    rival.seat_scopes = frozenset()
    with pytest.raises(Conflict) as raised:
        await repo.apply([rival])
    assert [i.details_code for i in raised.value.issues] == ["seat-taken"]  # the rules explain


async def test_rules_planned_again_with_resources_written_beside(
    factory: RepositoryFactory,
) -> None:
    rules = SeatRules()
    factory.rules["Basic"] = rules
    repo = factory.for_job("test", BASE)
    slot = {
        "resourceType": "Slot",
        "id": "s",
        "schedule": {"reference": "Schedule/x"},
        "status": "free",
        "start": "2026-12-07T09:00:00Z",
        "end": "2026-12-07T10:00:00Z",
    }
    writes = [
        await repo.prepare_update("Basic", "b", basic("b")),
        await repo.prepare_update("Slot", "s", slot),
    ]
    await repo.apply(writes)
    assert rules.units[0] == {}  # when prepared alone
    assert ("Slot", "s") in rules.units[-1] and ("Basic", "b") in rules.units[-1]
    assert repo.unit == {}  # only while planning
