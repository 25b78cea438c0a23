"""The date-free part of the demo clinic: organization, two sites, staff, services and patients.

`fhir_server.demo` adds what depends on the day (leave, schedules, slots, appointments) and hands
out fresh copies, so callers never mutate the module-level resources here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, NamedTuple

from resources.extension_urls import TIMEZONE_URL

NPI: Final = "http://hl7.org/fhir/sid/us-npi"
MRN: Final = "http://riverside.example/mrn"
SNOMED: Final = "http://snomed.info/sct"
NUCC: Final = "http://nucc.org/provider-taxonomy"
SERVICE_CATEGORY: Final = "http://terminology.hl7.org/CodeSystem/service-category"

ORG_ID: Final = "demo-org"
BOSTON_ID: Final = "demo-loc-boston"
BERLIN_ID: Final = "demo-loc-berlin"
ZONES: Final[dict[str, str]] = {BOSTON_ID: "America/New_York", BERLIN_ID: "Europe/Berlin"}
"""IANA time zone of each site, by Location id."""

WEEKDAYS: Final = ("mon", "tue", "wed", "thu", "fri")


def timezone_extension(zone: str) -> dict[str, Any]:
    """The standard timezone extension carrying an IANA zone code."""
    return {"url": TIMEZONE_URL, "valueCode": zone}


def ref(resource_type: str, resource_id: str, display: str | None = None) -> dict[str, Any]:
    """A literal `Type/id` Reference, with a display when given."""
    reference: dict[str, Any] = {"reference": f"{resource_type}/{resource_id}"}
    if display is not None:
        reference["display"] = display
    return reference


def concept(system: str, code: str, display: str) -> dict[str, Any]:
    """A CodeableConcept with one coding and the display as its text."""
    return {"coding": [{"system": system, "code": code, "display": display}], "text": display}


@dataclass(frozen=True, slots=True)
class Service:
    """A HealthcareService and the codes its roles, schedules and slots repeat."""

    id: str
    name: str
    category: tuple[str, str]  # service-category code, display
    snomed: tuple[str, str]  # service type
    nucc: tuple[str, str]  # specialty

    def category_concept(self) -> dict[str, Any]:
        return concept(SERVICE_CATEGORY, *self.category)

    def type_concept(self) -> dict[str, Any]:
        return concept(SNOMED, *self.snomed)

    def specialty_concept(self) -> dict[str, Any]:
        return concept(NUCC, *self.nucc)


PRIMARY_CARE: Final = Service(
    "demo-hs-primary-care",
    "Primary care",
    ("17", "General Practice"),
    ("394814009", "General practice"),
    ("207Q00000X", "Family Medicine"),
)
DERMATOLOGY: Final = Service(
    "demo-hs-dermatology",
    "Dermatology",
    ("28", "Specialist Medical"),
    ("394582007", "Dermatology"),
    ("207N00000X", "Dermatology"),
)


@dataclass(frozen=True, slots=True)
class StaffRole:
    """One PractitionerRole (and its Schedule): who works where, for which service, when.

    `hours` holds (days, start, end) weekly windows in the site's local wall-clock time;
    `leave` describes a week off starting 14 days after the demo's `today`, or is None.
    """

    id: str
    schedule_id: str
    practitioner_id: str
    practitioner_name: str
    location_id: str
    service: Service
    hours: tuple[tuple[tuple[str, ...], str, str], ...]
    leave: str | None = None


ROLES: Final = (
    StaffRole(
        "demo-role-smith",
        "demo-schedule-smith",
        "demo-pract-smith",
        "Dr. Emily Smith",
        BOSTON_ID,
        PRIMARY_CARE,
        ((WEEKDAYS, "09:00:00", "12:00:00"), (WEEKDAYS, "13:00:00", "17:00:00")),
        "Vacation: family trip (Dr. Smith's patients are seen by the on-call physician)",
    ),
    StaffRole(
        "demo-role-okafor",
        "demo-schedule-okafor",
        "demo-pract-okafor",
        "Dr. Chinedu Okafor",
        BOSTON_ID,
        DERMATOLOGY,
        ((WEEKDAYS, "10:00:00", "18:00:00"),),
    ),
    StaffRole(
        "demo-role-schneider",
        "demo-schedule-schneider",
        "demo-pract-schneider",
        "Dr. Anna Schneider",
        BERLIN_ID,
        PRIMARY_CARE,
        ((WEEKDAYS, "08:00:00", "16:00:00"),),
        "Urlaub (annual leave)",
    ),
    StaffRole(
        "demo-role-lefevre",
        "demo-schedule-lefevre",
        "demo-pract-lefevre",
        "Dr. Mathieu Lefèvre",
        BERLIN_ID,
        DERMATOLOGY,
        ((("mon", "tue", "thu", "fri"), "09:00:00", "17:00:00"),),
    ),
)


def _phone(value: str, use: str = "work") -> dict[str, Any]:
    return {"system": "phone", "value": value, "use": use}


def _email(value: str, use: str = "work") -> dict[str, Any]:
    return {"system": "email", "value": value, "use": use}


def _address(
    lines: list[str], city: str, postal: str, country: str, state: str = ""
) -> dict[str, Any]:
    address: dict[str, Any] = {"use": "work", "type": "physical", "line": lines, "city": city}
    if state:
        address["state"] = state
    return {**address, "postalCode": postal, "country": country}


_BOSTON_ADDRESS: Final = (["42 Riverside Way", "Suite 300"], "Boston", "02114", "US", "MA")
_BERLIN_ADDRESS: Final = (["Spreeufer 12"], "Berlin", "10178", "DE")

ORGANIZATION: Final[dict[str, Any]] = {
    "resourceType": "Organization",
    "id": ORG_ID,
    "identifier": [
        {"system": NPI, "value": "1428571420"},
        {"system": "http://riverside.example/org", "value": "RFH"},
    ],
    "active": True,
    "type": [
        concept(
            "http://terminology.hl7.org/CodeSystem/organization-type", "prov", "Healthcare Provider"
        )
    ],
    "name": "Riverside Family Health",
    "alias": ["RFH"],
    "telecom": [
        _phone("+1 617-555-0100"),
        _email("contact@riverside.example"),
        {"system": "url", "value": "https://riverside.example", "use": "work"},
    ],
    "address": [_address(*_BOSTON_ADDRESS)],
}


def _location(
    location_id: str, name: str, address: dict[str, Any], phone: str, **extra: Any
) -> dict[str, Any]:
    return {
        "resourceType": "Location",
        "id": location_id,
        "extension": [timezone_extension(ZONES[location_id])],
        "status": "active",
        "name": name,
        "mode": "instance",
        "type": [
            concept(
                "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "FMC", "Family medicine clinic"
            ),
            concept(
                "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "DERM", "Dermatology clinic"
            ),
        ],
        "telecom": [_phone(phone)],
        "address": address,
        "physicalType": concept(
            "http://terminology.hl7.org/CodeSystem/location-physical-type", "bu", "Building"
        ),
        "managingOrganization": ref("Organization", ORG_ID, "Riverside Family Health"),
        **extra,
    }


LOCATIONS: Final[tuple[dict[str, Any], ...]] = (
    _location(
        BOSTON_ID,
        "Riverside Family Health, Boston",
        _address(*_BOSTON_ADDRESS),
        "+1 617-555-0100",
        position={"longitude": -71.0636, "latitude": 42.3626},
        hoursOfOperation=[
            {"daysOfWeek": list(WEEKDAYS), "openingTime": "08:00:00", "closingTime": "18:00:00"},
            {"daysOfWeek": ["sat"], "openingTime": "09:00:00", "closingTime": "12:00:00"},
        ],
        availabilityExceptions="Closed on US federal holidays.",
    ),
    _location(
        BERLIN_ID,
        "Riverside Family Health, Berlin",
        _address(*_BERLIN_ADDRESS),
        "+49 30 23125000",
        position={"longitude": 13.4132, "latitude": 52.5170},
        hoursOfOperation=[
            {"daysOfWeek": list(WEEKDAYS), "openingTime": "08:00:00", "closingTime": "18:00:00"}
        ],
        availabilityExceptions="Geschlossen an gesetzlichen Feiertagen in Berlin.",
    ),
)


class _Doctor(NamedTuple):
    key: str  # the id without its `demo-pract-` prefix
    given: str
    family: str
    gender: str
    npi: str
    issuer: str
    phone: str


def _practitioner(row: _Doctor) -> dict[str, Any]:
    return {
        "resourceType": "Practitioner",
        "id": f"demo-pract-{row.key}",
        "identifier": [{"system": NPI, "value": row.npi}],
        "active": True,
        "name": [
            {"use": "official", "family": row.family, "given": [row.given], "prefix": ["Dr."]}
        ],
        "telecom": [
            _phone(row.phone),
            _email(f"{row.key}@riverside.example"),
        ],
        "gender": row.gender,
        "qualification": [
            {
                "code": concept(
                    "http://terminology.hl7.org/CodeSystem/v2-0360/2.7", "MD", "Doctor of Medicine"
                ),
                "issuer": {"display": row.issuer},
            }
        ],
    }


_MA: Final = "Massachusetts Board of Registration in Medicine"
_BERLIN: Final = "Ärztekammer Berlin"

# fmt: off
PRACTITIONERS: Final[tuple[dict[str, Any], ...]] = tuple(_practitioner(row) for row in (
    _Doctor("smith", "Emily", "Smith", "female", "1234567893", _MA, "+1 617-555-0111"),
    _Doctor("okafor", "Chinedu", "Okafor", "male", "1987654328", _MA, "+1 617-555-0112"),
    _Doctor("schneider", "Anna", "Schneider", "female", "1543219871", _BERLIN, "+49 30 23125011"),
    _Doctor("lefevre", "Mathieu", "Lefèvre", "male", "1678901236", _BERLIN, "+49 30 23125012"),
))
# fmt: on


def _healthcare_service(service: Service, comment: str) -> dict[str, Any]:
    return {
        "resourceType": "HealthcareService",
        "id": service.id,
        "active": True,
        "providedBy": ref("Organization", ORG_ID, "Riverside Family Health"),
        "category": [service.category_concept()],
        "type": [service.type_concept()],
        "specialty": [service.specialty_concept()],
        "location": [ref("Location", BOSTON_ID), ref("Location", BERLIN_ID)],
        "name": service.name,
        "comment": comment,
        "telecom": [_phone("+1 617-555-0100")],
        "appointmentRequired": True,
    }


HEALTHCARE_SERVICES: Final[tuple[dict[str, Any], ...]] = (
    _healthcare_service(PRIMARY_CARE, "Check-ups, acute visits and chronic care for all ages."),
    _healthcare_service(DERMATOLOGY, "Skin checks, rashes, acne and minor skin procedures."),
)


class _Person(NamedTuple):
    key: str  # the id without its `demo-patient-` prefix
    given: str
    family: str
    gender: str
    birth_date: str
    phone: str
    language: tuple[str, str]  # BCP 47 code, display
    home: tuple[Any, ...]  # _address arguments


def _patient(row: _Person) -> dict[str, Any]:
    mrn = concept("http://terminology.hl7.org/CodeSystem/v2-0203", "MR", "Medical record number")
    return {
        "resourceType": "Patient",
        "id": f"demo-patient-{row.key}",
        "identifier": [
            {
                "use": "usual",
                "type": mrn,
                "system": MRN,
                "value": f"MRN-{row.key.upper()}",
            }
        ],
        "active": True,
        "name": [{"use": "official", "family": row.family, "given": [row.given]}],
        "telecom": [
            {**_email(f"{row.key}@patients.example", "home"), "rank": 1},
            {**_phone(row.phone, "mobile"), "rank": 2},
        ],
        "gender": row.gender,
        "birthDate": row.birth_date,
        "address": [{**_address(*row.home), "use": "home"}],
        "communication": [
            {"language": concept("urn:ietf:bcp:47", *row.language), "preferred": True}
        ],
        "managingOrganization": ref("Organization", ORG_ID),
        **_PATIENT_EXTRAS.get(row.key, {}),
    }


_PATIENT_EXTRAS: Final[dict[str, dict[str, Any]]] = {
    "munoz": {
        "generalPractitioner": [ref("PractitionerRole", "demo-role-smith", "Dr. Emily Smith")]
    },
    "muller": {
        "generalPractitioner": [
            ref("PractitionerRole", "demo-role-schneider", "Dr. Anna Schneider")
        ]
    },
    "kowalski": {
        "contact": [
            {
                "relationship": [
                    concept("http://terminology.hl7.org/CodeSystem/v2-0131", "N", "Next-of-Kin")
                ],
                "name": {"family": "Kowalska", "given": ["Agnieszka"]},
                "telecom": [_phone("+49 30 23125104", "mobile")],
            }
        ]
    },
}
_GERMAN: Final = ("de", "German")

# fmt: off
PATIENTS: Final[tuple[dict[str, Any], ...]] = tuple(_patient(row) for row in (
    _Person("munoz", "José", "Muñoz", "male", "1984-07-12", "+1 617-555-0142", ("es", "Spanish"),
            (["18 Tremont Street", "Apt 4B"], "Boston", "02108", "US", "MA")),
    _Person("muller", "Zoë", "Müller", "female", "1992-03-03", "+49 30 23125101", _GERMAN,
            (["Kastanienallee 17"], "Berlin", "10435", "DE")),
    _Person("nguyen", "Linh", "Nguyễn", "female", "1975-11-30", "+1 617-555-0177",
            ("vi", "Vietnamese"), (["77 Dorchester Avenue"], "Boston", "02125", "US", "MA")),
    _Person("oconnor", "Seán", "O'Connor", "male", "1958-01-21", "+1 617-555-0158",
            ("en", "English"), (["9 Hancock Street"], "Quincy", "02169", "US", "MA")),
    _Person("yilmaz", "Ayşe", "Yılmaz", "female", "2001-09-14", "+49 30 23125102",  # noqa: RUF001
            ("tr", "Turkish"), (["Oranienstraße 25"], "Berlin", "10999", "DE")),
    _Person("kowalski", "Łukasz", "Kowalski", "male", "2015-05-05", "+49 30 23125103", _GERMAN,
            (["Warschauer Straße 40"], "Berlin", "10243", "DE")),
))
# fmt: on
