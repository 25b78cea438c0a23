"""The demo clinic `fhir-server serve --demo` (`make run`) loads into an empty store.

Riverside Family Health: one Organization with two sites in two time zones (Boston,
America/New_York; Berlin, Europe/Berlin), four Practitioners, two HealthcareServices (primary
care, dermatology), four PractitionerRoles with weekly hours (one with a lunch break) and two with
a week of leave, one Schedule per role, six Patients, stored Slots on one schedule and two
Appointments (one booked, one cancelled). Every resource has a fixed, readable id; only the dates
move with `today`. The date-free resources live in `fhir_server.demo_data`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Final
from zoneinfo import ZoneInfo

import orjson

from fhir_server.demo_coverage import COVERAGES
from fhir_server.demo_data import (
    BOSTON_ID,
    HEALTHCARE_SERVICES,
    LOCATIONS,
    ORG_ID,
    ORGANIZATION,
    PATIENTS,
    PRACTITIONERS,
    ROLES,
    ZONES,
    StaffRole,
    concept,
    ref,
    timezone_extension,
)

__all__ = ["DEMO_PATIENT_ID", "DEMO_PRACTITIONER_ROLE_ID", "DEMO_SCHEDULE_ID", "demo_clinic"]

DEMO_PATIENT_ID: Final = "demo-patient-munoz"
"""José Muñoz, a Boston patient with a booked appointment three days after `today`."""
DEMO_PRACTITIONER_ROLE_ID: Final = "demo-role-smith"
"""Dr. Emily Smith, family medicine in Boston (lunch break 12:00-13:00, a week of leave)."""
DEMO_SCHEDULE_ID: Final = "demo-schedule-smith"
"""Dr. Smith's Schedule, the one with stored Slots."""

LEAVE_STARTS_AFTER: Final = dt.timedelta(days=14)
"""The week of leave starts this long after `today`, at local midnight."""
PLANNING_HORIZON: Final = dt.timedelta(days=90)
"""Schedules plan from `today` to `today + 90 days`, local midnight to local midnight."""

_APPOINTMENT_TYPE: Final = "http://terminology.hl7.org/CodeSystem/v2-0276"
_ROUTINE: Final = concept(_APPOINTMENT_TYPE, "ROUTINE", "Routine appointment")
_FOLLOWUP: Final = concept(_APPOINTMENT_TYPE, "FOLLOWUP", "A follow up visit")
_SLOT_DAYS: Final = (
    # (days after today, local start, local end, status, comment)
    (1, "09:00", "09:30", "free", None),
    (1, "09:30", "10:00", "free", None),
    (1, "10:00", "10:30", "free", None),
    (1, "14:00", "15:00", "busy-unavailable", "Team meeting"),
    (2, "09:00", "09:30", "free", None),
    (2, "09:30", "10:00", "free", None),
    (2, "14:00", "14:30", "free", "Released by a cancelled appointment"),
)
_RELEASED_SLOT_ID: Final = "demo-slot-smith-2-1400"


def demo_clinic(today: dt.date) -> list[dict[str, Any]]:
    """Build the demo clinic as FHIR R4 JSON resources for a store that starts empty.

    Args:
        today: the local calendar day the demo is built around. Leave starts `today + 14 days`,
            schedules plan `today .. today + 90 days`, slots fall on `today + 1` and `today + 2`,
            the booked appointment is `today + 3` at 10:00 (the cancelled one `today + 2` 14:00).

    Returns:
        A fresh list (the caller may mutate it) of resource dicts, each with a fixed `id`, in
        dependency order: Organization, Location x2, Practitioner x4, HealthcareService x2,
        PractitionerRole x4, Patient x6, Coverage x6 (`demo_coverage`), Schedule x4, Slot x7,
        Appointment x2. The Boston site
        and its roles and schedules are in America/New_York, the Berlin ones in Europe/Berlin
        (the `http://hl7.org/fhir/StructureDefinition/timezone` extension on each Location and
        Schedule). Local wall-clock times are written as ISO 8601 dateTimes with the UTC offset
        that zone has on that date (daylight saving included), never without an offset.
        The same `today` always gives the same resources.
    """
    resources = [
        ORGANIZATION,
        *LOCATIONS,
        *PRACTITIONERS,
        *HEALTHCARE_SERVICES,
        *(_practitioner_role(role, today) for role in ROLES),
        *PATIENTS,
        *COVERAGES,
        *(_schedule(role, today) for role in ROLES),
        *_slots(_demo_role(), today),
        *_appointments(_demo_role(), today),
    ]
    fresh: list[dict[str, Any]] = orjson.loads(orjson.dumps(resources))  # no shared sub-objects
    return fresh


def _local(day: dt.date, clock: str, zone: str) -> str:
    """`day` at wall-clock `clock` (HH:MM) in `zone`, as a dateTime with that day's offset."""
    wall = dt.datetime.combine(day, dt.time.fromisoformat(clock), tzinfo=ZoneInfo(zone))
    return wall.isoformat()


def _demo_role() -> StaffRole:
    return next(role for role in ROLES if role.id == DEMO_PRACTITIONER_ROLE_ID)


def _practitioner_role(role: StaffRole, today: dt.date) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "PractitionerRole",
        "id": role.id,
        "active": True,
        "practitioner": ref("Practitioner", role.practitioner_id, role.practitioner_name),
        "organization": ref("Organization", ORG_ID, "Riverside Family Health"),
        "code": [
            concept("http://terminology.hl7.org/CodeSystem/practitioner-role", "doctor", "Doctor")
        ],
        "specialty": [role.service.specialty_concept()],
        "location": [ref("Location", role.location_id)],
        "healthcareService": [ref("HealthcareService", role.service.id, role.service.name)],
        "availableTime": [
            {"daysOfWeek": list(days), "availableStartTime": start, "availableEndTime": end}
            for days, start, end in role.hours
        ],
    }
    if role.leave is not None:
        zone = ZONES[role.location_id]
        first = today + LEAVE_STARTS_AFTER
        during = {
            "start": _local(first, "00:00", zone),
            "end": _local(first + dt.timedelta(days=7), "00:00", zone),
        }
        resource["notAvailable"] = [{"description": role.leave, "during": during}]
    return resource


def _schedule(role: StaffRole, today: dt.date) -> dict[str, Any]:
    zone = ZONES[role.location_id]
    site = "Boston" if role.location_id == BOSTON_ID else "Berlin"
    return {
        "resourceType": "Schedule",
        "id": role.schedule_id,
        "extension": [timezone_extension(zone)],
        "active": True,
        "serviceCategory": [role.service.category_concept()],
        "serviceType": [role.service.type_concept()],
        "specialty": [role.service.specialty_concept()],
        # Only the role: its Location is reached through PractitionerRole.location. Naming the
        # shared site as a second actor would make every booking at the site claim time on
        # every Schedule that names it (a Location actor is booked like a room).
        "actor": [ref("PractitionerRole", role.id, role.practitioner_name)],
        "planningHorizon": {
            "start": _local(today, "00:00", zone),
            "end": _local(today + PLANNING_HORIZON, "00:00", zone),
        },
        "comment": f"{role.practitioner_name}, {role.service.name.lower()} in {site}; "
        f"bookable hours follow PractitionerRole/{role.id}.availableTime ({zone}).",
    }


def _slots(role: StaffRole, today: dt.date) -> list[dict[str, Any]]:
    zone = ZONES[role.location_id]
    slots: list[dict[str, Any]] = []
    for days, start, end, status, comment in _SLOT_DAYS:
        day = today + dt.timedelta(days=days)
        slot: dict[str, Any] = {
            "resourceType": "Slot",
            "id": f"demo-slot-{role.id.removeprefix('demo-role-')}-{days}-{start.replace(':', '')}",
            "serviceCategory": [role.service.category_concept()],
            "serviceType": [role.service.type_concept()],
            "specialty": [role.service.specialty_concept()],
            "appointmentType": _ROUTINE,
            "schedule": ref("Schedule", role.schedule_id),
            "status": status,
            "start": _local(day, start, zone),
            "end": _local(day, end, zone),
        }
        if comment is not None:
            slot["comment"] = comment
        slots.append(slot)
    return slots


def _appointments(role: StaffRole, today: dt.date) -> list[dict[str, Any]]:
    zone = ZONES[role.location_id]
    doctor = {
        "type": [
            concept(
                "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "ATND", "attender"
            )
        ],
        "actor": ref("PractitionerRole", role.id, role.practitioner_name),
        "required": "required",
        "status": "accepted",
    }
    common = {
        "resourceType": "Appointment",
        "serviceCategory": [role.service.category_concept()],
        "serviceType": [role.service.type_concept()],
        "specialty": [role.service.specialty_concept()],
        "minutesDuration": 30,
    }
    booked_day = today + dt.timedelta(days=3)
    booked = {
        **common,
        "id": "demo-appt-booked",
        "status": "booked",
        "appointmentType": _ROUTINE,
        "reasonCode": [concept("http://snomed.info/sct", "185349003", "Encounter for check up")],
        "description": "Annual check-up",
        "start": _local(booked_day, "10:00", zone),
        "end": _local(booked_day, "10:30", zone),
        "created": _local(today, "08:15", zone),
        "comment": "Please arrive 10 minutes early and bring your insurance card.",
        "participant": [
            {
                "actor": ref("Patient", DEMO_PATIENT_ID, "José Muñoz"),
                "required": "required",
                "status": "accepted",
            },
            doctor,
        ],
    }
    cancelled_day = today + dt.timedelta(days=2)
    cancelled = {
        **common,
        "id": "demo-appt-cancelled",
        "status": "cancelled",
        "cancelationReason": concept(
            "http://terminology.hl7.org/CodeSystem/appointment-cancellation-reason",
            "pat",
            "Patient",
        ),
        "appointmentType": _FOLLOWUP,
        "description": "Blood pressure follow-up",
        "slot": [ref("Slot", _RELEASED_SLOT_ID)],
        "start": _local(cancelled_day, "14:00", zone),
        "end": _local(cancelled_day, "14:30", zone),
        "created": _local(today - dt.timedelta(days=7), "11:40", zone),
        "comment": "Cancelled by the patient by phone; the slot is free again.",
        "participant": [
            {
                "actor": ref("Patient", "demo-patient-nguyen", "Linh Nguyễn"),
                "required": "required",
                "status": "declined",
            },
            doctor,
        ],
    }
    return [booked, cancelled]
