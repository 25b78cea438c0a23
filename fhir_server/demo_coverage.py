"""The demo patients' insurance: one active Coverage each, with the copay of a visit
(`Coverage.costToBeneficiary`, type `gpvisit` of the R4 coverage-copay-type code system) that the
provider schedule shows as due until the front desk records it paid (SCHEDULING.md's seed
"handle copays, amount due, payment status"; README "Patient portal").

Boston patients pay $25 (USD), Berlin patients €10 (EUR); the payor is the clinic's own
Organization (the demo has no insurers of its own).
"""

from __future__ import annotations

from typing import Any, Final

from fhir_server.demo_data import ORG_ID, PATIENTS, concept

__all__ = ["COPAY_TYPE", "COVERAGES"]

COPAY_TYPE: Final = "http://terminology.hl7.org/CodeSystem/coverage-copay-type"
_ACT_CODE: Final = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
_COPAYS: Final = {"US": (25, "USD"), "DE": (10, "EUR")}


def _coverage(patient: dict[str, Any]) -> dict[str, Any]:
    country = (patient.get("address") or [{}])[0].get("country", "US")
    amount, currency = _COPAYS.get(country, _COPAYS["US"])
    key = str(patient["id"]).removeprefix("demo-patient-")
    return {
        "resourceType": "Coverage",
        "id": f"demo-coverage-{key}",
        "status": "active",
        "type": concept(
            "http://terminology.hl7.org/CodeSystem/v3-ActCode",
            "HIP",
            "health insurance plan policy",
        ),
        "subscriberId": f"SUB-{key.upper()}",
        "beneficiary": {"reference": f"Patient/{patient['id']}"},
        "relationship": concept(
            "http://terminology.hl7.org/CodeSystem/subscriber-relationship", "self", "Self"
        ),
        "payor": [{"reference": f"Organization/{ORG_ID}"}],
        "costToBeneficiary": [
            {
                "type": concept(COPAY_TYPE, "gpvisit", "GP Office Visit"),
                "valueMoney": {"value": amount, "currency": currency},
            }
        ],
    }


COVERAGES: Final[tuple[dict[str, Any], ...]] = tuple(_coverage(p) for p in PATIENTS)
"""One Coverage per demo patient, after the Patients in load order."""
