"""Committing prepared writes: the caller's compartment checked, the write rules planned again
with the resources written beside, one atomic store write, a lost seat chosen again, and a
taken claim answered as the type's write rules explain it (SCHEDULING.md "Never double-book",
"Errors")."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

from fhir_server.access import OWNED_TYPES, denied
from fhir_server.metrics import BOOKINGS, CANCELLATIONS, DOUBLE_BOOKING_REFUSALS
from fhir_server.repository.prepared import Prepared
from fhir_server.repository.reads import criteria_key, load_json
from fhir_server.repository.services import WriteRules
from fhir_server.repository.writes import PrepareWrites
from resources.errors import ClaimConflict, Conflict
from resources.search_parameters import in_patient_compartment

__all__ = ["MAX_RETRIES", "CommitWrites", "count_appointments"]

MAX_RETRIES = 5
"""How often a write is prepared again after losing a version race (or a seat)."""


def count_appointments(writes: Sequence[Prepared]) -> None:
    """Count the committed Appointment versions that became booked or cancelled (the
    version they replace was not) in `fhir_server.metrics`."""
    for p in writes:
        op = p.op
        if op is None or op.version.resource_type != "Appointment" or p.content is None:
            continue
        status = p.content.get("status")
        if status not in ("booked", "cancelled"):
            continue
        before = load_json(p.current.content) if p.current and not p.current.deleted else {}
        if before.get("status") != status:
            (BOOKINGS if status == "booked" else CANCELLATIONS).inc()


class CommitWrites(PrepareWrites):
    """`apply` and the criteria locks (see the module docstring)."""

    async def apply(self, prepared: Sequence[Prepared]) -> None:
        """Commit prepared writes atomically (one REST write, a transaction, an operation).

        Raises:
            Forbidden: (403) a write reaches outside the caller's patient compartment.
            Conflict: (409, detail `slot-unavailable` or `patient-conflict`) a time claim is
                held by another booking or hold (SCHEDULING.md "Never double-book").
            StoreConflict: a concurrent write changed a resource first (a version race).
        Nothing is written on any error.
        """
        writes = [p for p in prepared if p.op is not None]
        if not writes:
            return
        self.check_writes([p for p in writes if not p.internal])
        await self.check_owners([p for p in writes if not p.internal])
        self.unit = self._unit_of(writes)
        try:
            await self._plan_again(writes)
            for attempt in range(MAX_RETRIES):
                ops = [op for p in writes for op in (p.op, *p.extra) if op is not None]
                try:
                    await self._store.apply(ops)
                    await self._put_records(writes)
                    count_appointments(writes)
                    return
                except ClaimConflict as exc:
                    scope = exc.key.rpartition("#")[0]
                    lost = [p for p in writes if scope in p.seat_scopes]
                    if not lost or attempt == MAX_RETRIES - 1:
                        refusal = await self._explained(exc, writes)
                        detail = refusal.issues[0].details_code or "taken"
                        DOUBLE_BOOKING_REFUSALS.labels(detail).inc()
                        raise refusal from exc
                    for p in lost:  # a seat went to a concurrent booker: choose again
                        await self._planned(p)
        finally:
            self.unit = {}

    def check_writes(self, writes: Sequence[Prepared]) -> None:
        """Raise Forbidden unless every write stays inside what the caller is confined to:
        for a patient-confined write permission (`write_confinement`), the new version and the
        version it replaces (as prepared: `Prepared.current`) must both be in that patient's
        compartment (a patient cannot book, hold, move or cancel for another patient).
        Nothing is written on refusal."""
        if self.is_system:
            return
        for prepared in writes:
            op = prepared.op
            if op is None or not in_patient_compartment(op.version.resource_type):
                continue
            patient = self.write_confinement(op.version.resource_type, op.version.deleted)
            if patient is None:
                continue
            current = prepared.current
            versions = [current] if current is not None and not current.deleted else []
            if not op.version.deleted:
                versions.append(op.version)
            for version in versions:
                if not self.in_compartment(version, patient):
                    raise denied(
                        f"The access token is confined to Patient/{patient}: writing "
                        f"{version.resource_type}/{version.id} would reach outside that "
                        "patient's compartment; nothing was written"
                    )

    async def _put_records(self, writes: Sequence[Prepared]) -> None:
        """The records the write rules asked for, once the write has committed (not atomic
        with it: a crash in between leaves a committed write without them)."""
        for prepared in writes:
            for kind, key, doc in prepared.records:
                await self._store.put_record(kind, key, doc)

    async def check_owners(self, writes: Sequence[Prepared]) -> None:
        """Raise Forbidden unless a caller whose reach of an owned type is its own
        (`access.OWNED_TYPES`, a `patient/` token's Subscriptions) changes or deletes only
        what it owns. Nothing is written on refusal."""
        if self.is_system:
            return
        for prepared in writes:
            op, current = prepared.op, prepared.current
            if op is None or op.version.resource_type not in OWNED_TYPES:
                continue
            if current is None or current.deleted:
                continue  # a creation: the type's write rules record the owner
            rtype = op.version.resource_type
            reach = self.policy.reach(rtype, "d" if op.version.deleted else "u")
            if reach is None or reach.owner is None:
                continue
            if not await self.owned_by(current, reach.owner):
                raise denied(
                    f"{rtype}/{current.id} belongs to another app or patient: the access "
                    "token may change only its own; nothing was written"
                )

    def _unit_of(self, writes: Sequence[Prepared]) -> dict[tuple[str, str], dict[str, Any]]:
        """The resources of one atomic write by `(type, id)` (new content), when it writes
        more than one (`Repository.unit`)."""
        if len(writes) < 2:
            return {}
        return {
            (p.op.version.resource_type, p.op.version.id): p.content
            for p in writes
            if p.op is not None and p.content is not None
        }

    async def _plan_again(self, writes: Sequence[Prepared]) -> None:
        """Plan the ruled writes again, now that every resource of the atomic write is known
        (`unit`): an Appointment booked in the same transaction that creates its actor's
        Schedule or its Slot is guarded by them, whatever the entry order. Only the writes
        whose rules depend on a type written beside (`WriteRules.depends_on`)."""
        written = {rtype for rtype, _ in self.unit}
        for p in writes:
            rules = self._rules_of(p)
            if p.content is not None and rules is not None and rules.depends_on & written:
                await self._planned(p)

    def _rules_of(self, prepared: Prepared) -> WriteRules | None:
        op = prepared.op
        return None if op is None else self._services.rules.get(op.version.resource_type)

    async def _explained(self, exc: ClaimConflict, writes: Sequence[Prepared]) -> Conflict:
        """The 409 for a claim key another owner holds, as the write rules of the write that
        wanted it explain it (`WriteRules.explain`); a plain 409 naming the key otherwise."""
        for prepared in writes:
            op = prepared.op
            claims = op.claims if op is not None else None
            if claims is None or all(str(key) != exc.key for key in claims.keys):
                continue
            rules = self._rules_of(prepared)
            if rules is not None:
                return await rules.explain(self, exc.key, claims)  # type: ignore[arg-type]
        return Conflict(f"{exc.key} is held by another owner")

    @contextlib.asynccontextmanager
    async def criteria_locks(self, criteria: Iterable[tuple[str, str]]) -> AsyncIterator[None]:
        """Hold the cross-process locks of conditional criteria `(type, criteria)` for the
        block, in a fixed order (so two transactions cannot deadlock), so two conditional
        writes with the same criteria never both create."""
        keys = sorted({criteria_key(rtype, text) for rtype, text in criteria})
        async with contextlib.AsyncExitStack() as stack:
            for key in keys:
                await stack.enter_async_context(self._store.lock(key))
            yield
