"""The availability engine: pure computation of bookable time for Schedules (no I/O).

SCHEDULING.md "Resources and where availability comes from". Every instant is an `int` of
microseconds since 1970-01-01T00:00:00Z; every interval is half-open `[start, end)`.

- `intervals`: the `Interval` value and set algebra on sorted interval lists.
- `extensions`: readers for our extensions, SMART `slot-capacity` and the standard `timezone`
  extension; `definitions`: the StructureDefinitions of our extensions.
- `timezones`: which IANA zone a Schedule's wall-clock rules are read in; wall time -> UTC.
- `sources`: weekly rules from the first existing source (Schedule extension, PractitionerRole,
  HealthcareService, Location); `rules`: those rules turned into UTC availability windows.
- `slots`: slots laid on windows, deterministic rule-slot ids, and the free candidates.

A `$find-slots` for one Schedule composes them (all pure; the caller fetches the resources):
`schedule_timezone` -> `rules_for` -> `schedule_windows` over `whole_local_days(search)` ->
`free_slots(..., search=search)` with the stored Slots, busy and blocked times it read.
"""
