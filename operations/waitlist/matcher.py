"""Offering freed time to the waitlist, from the event log (ARCHITECTURE.md "Events and
background work"): whatever path freed the time (a cancellation, a move, a hold expiring, a
declined or lapsed offer, hours added, a Slot freed), its event reaches `WaitlistMatcher.round`.

Each round:

1. reads the events since its cursor (record CURSOR; started at the end of the log when a
   server first runs it, like the reminder planner) and notes the Schedules whose free time
   changed (`scheduling.changes.schedules_changed`), the waitlist entries written and the
   offers (Appointments with `waitlist-offer`) written;
2. settles offers (`_settle`): an offer booked closes its entry (if the booking path has not
   already: `$book` does it in the same write); an offer cancelled (declined), deleted, or
   whose hold has ended is refused (its time never offered to that entry again) and its
   Schedule counts as freed; an entry that stopped waiting (cancelled, booked, deleted) has
   its held offer cancelled;
3. closes entries whose every requested period has passed (`cancelled`, code
   `waitlist-expired`);
4. offers, to each waiting entry without a held offer that was written or matches a freed
   Schedule, in order of `priority` (1 first, none last), then longest waiting (`since`), then
   id, the earliest suitable time (`offers.make_offer`). Entries are served one after the
   other, each offer a hold, so one freed time goes to the first entry it suits and is no
   longer free for the next.

It runs in the messaging job (`operations.messaging`: one process at a time, under its
lease); every step is idempotent, so a crash or a takeover resumes where it stopped. Times are
µs UTC.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Final

from fhir_server.model import StoredResource
from fhir_server.repository import Repository
from fhir_server.search.query import StoreQuery, TokenCondition, TokenValue
from operations.scheduling.changes import HOURS_SOURCES, content_of, schedules_changed
from operations.scheduling.waitlist import (
    EXPIRED_CODE,
    WaitlistEntry,
    closed_entry,
    offer_entry_id,
    parse_entry,
)
from operations.waitlist.offers import STATE, EntryState, make_offer, schedules_for
from operations.waitlist.respond import BOOKED, close_booked_entry, withdraw_offer
from resources.errors import FhirError
from resources.fhir_dates import now_us, parse_instant

__all__ = ["CURSOR", "WaitlistMatcher"]

log = logging.getLogger(__name__)

CURSOR: Final = ("waitlist", "cursor")
"""The record `(kind, key)` holding the matcher's place in the event log: `{cursor}`."""
BATCH: Final = 500
_WAITING = StoreQuery("Appointment", (TokenCondition("status", (TokenValue("*", "waitlist"),)),))


class WaitlistMatcher:
    """Offers freed time to waiting entries (module docstring).

    Args:
        repository: a job repository (its base URL goes into the offers' links).
        clock: the current time, µs UTC.
    """

    def __init__(self, repository: Repository, clock: Callable[[], int] = now_us) -> None:
        self.repository = repository
        self.clock = clock
        self._schedules: dict[tuple[str, str], list[dict[str, Any]]] = {}
        """Matching Schedules by entry id and version, until a Schedule or hours change."""

    async def start(self) -> None:
        """The cursor, started at the end of the event log if there is none yet."""
        lookup, records = self.repository.lookup, self.repository.records
        if await records.get_record(*CURSOR) is None:
            await lookup.seal_events()
            await records.put_record(*CURSOR, {"cursor": await lookup.latest_event()})

    async def round(self) -> int:
        """One round (module docstring); return how many offers were made."""
        repo = self.repository
        await self.start()
        await repo.lookup.seal_events()
        cursor = await repo.records.get_record(*CURSOR)
        assert cursor is not None
        events = await repo.lookup.events_after(int(cursor["cursor"]), BATCH)
        freed: set[str] = set()
        written: set[str] = set()
        waiting: set[str] = set()
        for event in events:
            await self._note(event.version, freed, written, waiting)
        states = {k: EntryState.of(d) for k, d in await repo.records.list_records(STATE)}
        now = self.clock()
        for entry_id, state in list(states.items()):
            lapsed = state.offer is not None and (state.expires or 0) <= now
            if lapsed or entry_id in written:
                gave_back, kept = await self._settle(entry_id, state, now)
                freed |= gave_back
                if not kept:
                    del states[entry_id]
        # Only time given back, or an entry written, can make an offer possible: a round of
        # bookings alone never loads the waitlist.
        made = await self._offer(freed, waiting, states, now) if freed or waiting else 0
        if events:
            await repo.records.put_record(*CURSOR, {"cursor": events[-1].number})
        return made

    async def _note(
        self, version: StoredResource, freed: set[str], written: set[str], waiting: set[str]
    ) -> None:
        """What one event means for the waitlist: the Schedules it gave time back to, the
        Appointments it wrote (an entry, or an offer naming its entry: their state is settled)
        and the entries written waiting (matched again)."""
        if version.resource_type in ("Schedule", *HOURS_SOURCES):
            self._schedules.clear()  # which Schedules match an entry may have changed
        if version.resource_type == "Appointment":
            content = content_of(version)
            written.add(version.id)
            if content.get("status") == "waitlist":
                waiting.add(version.id)
            entry_id = offer_entry_id(self.repository, content)
            if entry_id is not None:
                written.add(entry_id)
        changed = await schedules_changed(self.repository, version, freed_only=True)
        freed.update(s.id for s in changed)

    async def _settle(self, entry_id: str, state: EntryState, now: int) -> tuple[set[str], bool]:
        """Settle the entry's offer and its state (module docstring, step 2): the ids of the
        Schedules an ended offer gave time back to, and whether the entry is still waiting
        (its state kept)."""
        repo = self.repository
        entry = (await repo.lookup.read_json([("Appointment", entry_id)])).get(
            ("Appointment", entry_id)
        )
        waiting = entry is not None and entry.get("status") == "waitlist"
        freed: set[str] = set()
        if state.offer is not None:
            offer_id = state.offer
            stored = await repo.lookup.read("Appointment", offer_id)
            status = content_of(stored).get("status")
            if status in BOOKED:
                if waiting:
                    await close_booked_entry(repo, entry_id, offer_id)
                await repo.records.delete_record(STATE, entry_id)
                return freed, False
            live = status == "pending" and (state.expires or 0) > now
            if live and not waiting:
                await withdraw_offer(repo, offer_id, "The patient left the waitlist")
                live = False
            if not live:
                state.refuse()
                if stored is not None:
                    freed |= {s.id for s in await schedules_changed(repo, stored)}
        if waiting:
            await repo.records.put_record(STATE, entry_id, state.doc())
        else:
            await repo.records.delete_record(STATE, entry_id)
        return freed, waiting

    async def _offer(
        self, freed: set[str], waiting: set[str], states: dict[str, EntryState], now: int
    ) -> int:
        """Steps 3 and 4 of the module docstring; how many offers were made."""
        repo = self.repository
        entries: list[tuple[WaitlistEntry, dict[str, Any]]] = []
        for content in await repo.lookup.search_all(_WAITING):
            entry_id = str(content.get("id"))
            try:
                entry = parse_entry(repo, entry_id, content)
            except FhirError:
                continue  # stored before a rule it breaks: it waits for a correction
            if all(end <= now for _, end in entry.windows):
                await self._expire(content)
                states.pop(entry_id, None)
                continue
            if entry_id not in states:
                updated = (content.get("meta") or {}).get("lastUpdated")
                since = parse_instant(updated) if entry_id in waiting and updated else now
                states[entry_id] = EntryState(since=since)
                await repo.records.put_record(STATE, entry_id, states[entry_id].doc())
            entries.append((entry, content))
        entries.sort(key=lambda e: (e[0].rank, states[e[0].id].since, e[0].id))
        made = 0
        for entry, content in entries:
            state = states[entry.id]
            if state.offer is not None:
                continue
            version = str((content.get("meta") or {}).get("versionId"))
            schedules = await self._schedules_of(entry, version)
            if entry.id not in waiting and not freed & {str(s.get("id")) for s in schedules}:
                continue
            try:
                offered = await make_offer(repo, entry, content, state, schedules, now)
            except Exception:  # one entry's failure must not keep the others waiting
                log.exception("Offering time to waitlist entry Appointment/%s failed", entry.id)
                continue
            if offered:
                made += 1
                await repo.records.put_record(STATE, entry.id, state.doc())
        return made

    async def _schedules_of(self, entry: WaitlistEntry, version: str) -> list[dict[str, Any]]:
        key = (entry.id, version)
        if key not in self._schedules:
            self._schedules[key] = await schedules_for(self.repository, entry)
        return self._schedules[key]

    async def _expire(self, content: dict[str, Any]) -> None:
        """Close an entry whose every requested period has passed (step 3)."""
        entry_id = str(content.get("id"))
        closed = closed_entry(content, EXPIRED_CODE, "Every requested period has passed")
        version = str((content.get("meta") or {}).get("versionId"))
        try:
            prepared = await self.repository.prepare_update(
                "Appointment", entry_id, closed, if_match=version
            )
            if prepared.op is not None:
                await self.repository.apply([prepared])
        except FhirError:
            return  # changed meanwhile: judged again at its event
        await self.repository.records.delete_record(STATE, entry_id)
