"""Canonical URLs of the standard extensions the server reads (not our own, which live under
the configurable base in `operations.scheduling.extensions`)."""

from __future__ import annotations

from typing import Final

TIMEZONE_URL: Final = "http://hl7.org/fhir/StructureDefinition/timezone"
"""The standard R4 extension carrying an IANA time zone code (`valueCode`)."""

SLOT_CAPACITY_URL: Final = (
    "http://fhir-registry.smarthealthit.org/StructureDefinition/slot-capacity"
)
"""SMART Scheduling Links: the number of seats of a Slot (`valueInteger`, default 1)."""
