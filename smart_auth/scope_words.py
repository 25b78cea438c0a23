"""SMART scopes in plain words for the consent page (SMART App Launch 2.2
`scopes-and-launch-context.html`): what a person is agreeing to, e.g. `patient/Appointment.cruds`
-> "See, book and change your appointments". The raw scope is shown beside it in small print.
"""

from __future__ import annotations

from typing import Final

__all__ = ["scope_words"]

_FIXED: Final = {
    "openid": "Know who you are when you sign in",
    "fhirUser": "Know who you are when you sign in",
    "profile": "See your name",
    "launch": "Open from your clinic's system with the record you are looking at",
    "launch/patient": "Know which patient's record to open",
    "launch/encounter": "Know which visit you are in",
    "online_access": "Stay signed in while you use it",
    "offline_access": "Stay signed in after you close it, until you revoke it",
}
_THINGS: Final = {
    "*": "health record",
    "Appointment": "appointments",
    "Patient": "personal details",
    "Slot": "free appointment times",
    "Schedule": "clinic schedules",
    "Practitioner": "clinicians' details",
    "PractitionerRole": "clinicians' roles and hours",
    "Location": "clinic locations",
    "HealthcareService": "clinic services",
    "Coverage": "insurance coverage",
    "PaymentReconciliation": "payments",
    "Communication": "messages",
    "CommunicationRequest": "reminders",
    "Observation": "test results and measurements",
    "Condition": "health conditions",
    "Encounter": "visits",
    "Endpoint": "video visit links",
}


_SHARED: Final = frozenset(
    {
        "Slot",
        "Schedule",
        "Practitioner",
        "PractitionerRole",
        "Location",
        "HealthcareService",
        "Endpoint",
    }
)
"""Types that are the clinic's, not the patient's: no "your"."""


def _actions(permissions: str, thing: str) -> str:
    words = []
    if set(permissions) & set("rs"):
        words.append("see")
    if "c" in permissions:
        words.append("book" if thing.startswith("appointments") else "add")
    if "u" in permissions:
        words.append("change")
    if "d" in permissions:
        words.append("delete")
    text = ", ".join(words[:-1]) + (" and " if len(words) > 1 else "") + words[-1]
    return text[:1].upper() + text[1:]


def scope_words(scope: str) -> str:
    """One scope in plain words; the scope itself when it has no words here."""
    if scope in _FIXED:
        return _FIXED[scope]
    context, _, rest = scope.partition("/")
    rtype, _, permissions = rest.partition(".")
    permissions = permissions.split("?", 1)[0]
    if context not in ("patient", "user", "system") or not permissions:
        return scope
    if permissions in ("read", "write", "*"):  # SMART v1 spellings
        permissions = {"read": "rs", "write": "cud", "*": "cruds"}[permissions]
    if not set(permissions) <= set("cruds"):
        return scope
    thing = _THINGS.get(rtype, f"{rtype} records")
    whose = {"patient": "your", "user": "the", "system": "all"}[context]
    if rtype in _SHARED:
        whose = "the" if context != "system" else "all"
    if context == "user":
        thing += " you have access to"
    if rtype == "*" and context != "patient":
        thing = "health records" + (" you have access to" if context == "user" else "")
    return f"{_actions(permissions, thing)} {whose} {thing}"
