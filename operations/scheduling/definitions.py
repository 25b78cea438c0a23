"""StructureDefinitions (R4 4.0.1) of our scheduling extensions, built for a canonical base.

Each definition constrains the base `Extension` with a differential only (`sdf-6` allows it):
the `url` is fixed, `value[x]` restricted to one type (or forbidden, for the complex
`schedule-availability`, whose sub-extensions are sliced by `url`), and the `context` names the
resources the extension may sit on. Served at `[base]/StructureDefinition/{id}` (SCHEDULING.md
"Our own extensions").
"""

from __future__ import annotations

from typing import Any, Final

from operations.scheduling.extensions import (
    AVAILABILITY,
    BUFFER_AFTER,
    BUFFER_BEFORE,
    DEFAULT_BASE,
    HOLD_EXPIRES,
    MAX_BOOKINGS_PER_DAY,
    PROPOSAL_EXPIRES,
    REMINDER_OPT_OUT,
    UCUM,
    VISIT_DURATION,
    WAITLIST_OFFER,
    WAITLIST_REPLACES,
    extension_url,
)

__all__ = ["structure_definitions"]

_EXTENSION: Final = "http://hl7.org/fhir/StructureDefinition/Extension"
_DAYS_OF_WEEK: Final = "http://hl7.org/fhir/ValueSet/days-of-week|4.0.1"
_ON_SCHEDULE: Final = ("Schedule",)
_ON_BOTH: Final = ("Schedule", "HealthcareService")


def _element(element_id: str, **content: Any) -> dict[str, Any]:
    """One ElementDefinition; its `path` is the id without slice names (`:name`)."""
    path = ".".join(step.split(":")[0] for step in element_id.split("."))
    return {"id": element_id, "path": path, **content}


def _definition(
    base: str, ext_id: str, name: str, title: str, description: str, context: tuple[str, ...]
) -> dict[str, Any]:
    return {
        "resourceType": "StructureDefinition",
        "id": ext_id,
        "url": extension_url(ext_id, base),
        "name": name,
        "title": title,
        "status": "active",
        "publisher": "FHIR scheduling server",
        "description": description,
        "fhirVersion": "4.0.1",
        "kind": "complex-type",
        "abstract": False,
        "context": [{"type": "element", "expression": where} for where in context],
        "type": "Extension",
        "baseDefinition": _EXTENSION,
        "derivation": "constraint",
    }


def _minutes(
    base: str, ext_id: str, name: str, title: str, text: str, minimum: str
) -> dict[str, Any]:
    """A single Duration extension in UCUM minutes with `value {minimum} 0`."""
    sd = _definition(base, ext_id, name, title, text, _ON_BOTH)
    rule = f"{ext_id}-1"
    sd["differential"] = {
        "element": [
            _element("Extension", short=title, definition=text, max="1"),
            _element("Extension.extension", max="0"),
            _element("Extension.url", fixedUri=sd["url"]),
            _element(
                "Extension.value[x]",
                min=1,
                type=[{"code": "Duration"}],
                constraint=[
                    {
                        "key": rule,
                        "severity": "error",
                        "human": f"The duration is {minimum} 0 minutes",
                        "expression": f"value {minimum} 0",
                    }
                ],
            ),
            _element("Extension.value[x].value", min=1),
            _element("Extension.value[x].system", min=1, fixedUri=UCUM),
            _element("Extension.value[x].code", min=1, fixedCode="min"),
        ]
    }
    return sd


def _availability(base: str) -> dict[str, Any]:
    text = (
        "One weekly rule of bookable time of a Schedule, in the Schedule's local wall-clock "
        "time: the days it applies to and either allDay or a start and end time. Repeat the "
        "extension once per rule. Takes precedence over PractitionerRole.availableTime, "
        "HealthcareService.availableTime and Location.hoursOfOperation."
    )
    sd = _definition(base, AVAILABILITY, "ScheduleAvailability", "Availability", text, _ON_SCHEDULE)
    parts = (
        ("daysOfWeek", "code", "*", "mon | tue | wed | thu | fri | sat | sun"),
        ("allDay", "boolean", "1", "Available all day on these days"),
        ("availableStartTime", "time", "1", "Opening time of day (ignored if allDay)"),
        ("availableEndTime", "time", "1", "Closing time of day (ignored if allDay)"),
    )
    elements = [
        _element("Extension", short="Weekly availability rule", definition=text, max="*"),
        _element(
            "Extension.extension",
            slicing={"discriminator": [{"type": "value", "path": "url"}], "rules": "closed"},
            min=1,
        ),
    ]
    for slice_name, value_type, most, short in parts:
        slice_id = f"Extension.extension:{slice_name}"
        value: dict[str, Any] = {"min": 1, "type": [{"code": value_type}]}
        if slice_name == "daysOfWeek":
            value["binding"] = {"strength": "required", "valueSet": _DAYS_OF_WEEK}
        elements += [
            _element(slice_id, sliceName=slice_name, short=short, definition=short, max=most),
            _element(f"{slice_id}.extension", max="0"),
            _element(f"{slice_id}.url", fixedUri=slice_name),
            _element(f"{slice_id}.value[x]", **value),
        ]
    elements += [
        _element("Extension.url", fixedUri=sd["url"]),
        _element("Extension.value[x]", max="0"),
    ]
    sd["differential"] = {"element": elements}
    return sd


def _single(
    base: str,
    ext_id: str,
    name: str,
    title: str,
    text: str,
    context: tuple[str, ...],
    value_type: dict[str, Any],
    *,
    short: str | None = None,
    repeats: bool = False,
) -> dict[str, Any]:
    """A simple extension: one `value[x]` of `value_type`, at most once unless `repeats`."""
    sd = _definition(base, ext_id, name, title, text, context)
    head: dict[str, Any] = {"short": short or title, "definition": text}
    if not repeats:
        head["max"] = "1"
    sd["differential"] = {
        "element": [
            _element("Extension", **head),
            _element("Extension.extension", max="0"),
            _element("Extension.url", fixedUri=sd["url"]),
            _element("Extension.value[x]", min=1, type=[value_type]),
        ]
    }
    return sd


def _max_per_day(base: str) -> dict[str, Any]:
    text = "The most bookings one local calendar day of this Schedule or service may hold."
    return _single(
        base,
        MAX_BOOKINGS_PER_DAY,
        "MaxBookingsPerDay",
        "Max bookings per day",
        text,
        _ON_BOTH,
        {"code": "positiveInt"},
        short="Daily booking limit",
    )


def _instant(base: str, ext_id: str, name: str, title: str, text: str) -> dict[str, Any]:
    """A server-managed expiry instant on an Appointment (valueInstant, UTC)."""
    return _single(base, ext_id, name, title, text, ("Appointment",), {"code": "instant"})


def _appointment_reference(
    base: str, ext_id: str, name: str, title: str, text: str
) -> dict[str, Any]:
    """A Reference(Appointment) on an Appointment."""
    target = "http://hl7.org/fhir/StructureDefinition/Appointment"
    value = {"code": "Reference", "targetProfile": [target]}
    return _single(base, ext_id, name, title, text, ("Appointment",), value)


def _opt_out(base: str) -> dict[str, Any]:
    text = (
        "A channel the Patient does not want appointment reminders and notices on: `email` "
        "or `sms` (repeat the extension for both)."
    )
    return _single(
        base,
        REMINDER_OPT_OUT,
        "ReminderOptOut",
        "Reminder opt-out",
        text,
        ("Patient",),
        {"code": "code"},
        short="No reminders on this channel",
        repeats=True,
    )


def structure_definitions(base: str = DEFAULT_BASE) -> list[dict[str, Any]]:
    """The StructureDefinitions of our ten extensions under `base`, as fresh JSON dicts.

    Args:
        base: the canonical base, e.g. `https://fhir-scheduling.example.org/StructureDefinition`.

    Returns:
        `schedule-availability`, `visit-duration`, `buffer-before`, `buffer-after`,
        `max-bookings-per-day`, `hold-expires`, `proposal-expires`, `reminder-opt-out`,
        `waitlist-replaces`, `waitlist-offer`, in that order; R4 StructureDefinitions with
        `id` = the extension id and `url = {base}/{id}`.
    """
    visit = "Length of one visit booked on this Schedule or service, in minutes (default 30)."
    before = "Preparation time kept free before each visit, in minutes (default 0)."
    after = "Clean-up time kept free after each visit, in minutes (default 0)."
    return [
        _availability(base),
        _minutes(base, VISIT_DURATION, "VisitDuration", "Visit duration", visit, ">"),
        _minutes(base, BUFFER_BEFORE, "BufferBefore", "Buffer before", before, ">="),
        _minutes(base, BUFFER_AFTER, "BufferAfter", "Buffer after", after, ">="),
        _max_per_day(base),
        _instant(
            base,
            HOLD_EXPIRES,
            "HoldExpires",
            "Hold expires",
            "When a $hold ends (set by the server): the Appointment is then cancelled and its "
            "time freed.",
        ),
        _instant(
            base,
            PROPOSAL_EXPIRES,
            "ProposalExpires",
            "Proposal expires",
            "Until when a $find proposal can be held or booked by reference (set by the server).",
        ),
        _opt_out(base),
        _appointment_reference(
            base,
            WAITLIST_REPLACES,
            "WaitlistReplaces",
            "Waitlist entry replaces",
            "On a waitlist entry: the patient's booked Appointment an offer must start earlier "
            "than; booking the offer cancels it in the same write (move earlier).",
        ),
        _appointment_reference(
            base,
            WAITLIST_OFFER,
            "WaitlistOffer",
            "Waitlist offer",
            "On a held Appointment (set by the server): the waitlist entry this time is offered "
            "to; booking it closes the entry.",
        ),
    ]
