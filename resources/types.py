"""The resource types this server serves, and the FHIR `id` rule.

We declare `fhirVersion` 4.0.1 (R4) but validate with the `fhir.resources.R4B` models (FHIR
4.3.0), the only R4-family models the library ships. R4B is R4 plus a handful of changes, so the
two type lists differ:

* `R4B_ONLY_TYPES`: 13 types R4B added (the medication-definition family replacing R4's
  `MedicinalProduct*` resources, `Citation`, `EvidenceReport`, `SubscriptionStatus`,
  `SubscriptionTopic`, ...). We serve them because we can validate them; the CapabilityStatement
  should say they come from R4B.
* `R4_ONLY_TYPES`: 18 R4 types R4B dropped (`MedicinalProduct*`, `EffectEvidenceSynthesis`,
  `RiskEvidenceSynthesis`, the `Substance*` specification family). We have no model for them, so
  they are not served: a request for one is an unknown type.
* Shared names whose content model changed in R4B (`Evidence`, `EvidenceVariable`) validate
  against R4B; none of them is a scheduling type.

The list is static because discovering it from `fhir.resources` means importing every model
(about 1.4 s); `tests/resources/test_types.py` checks it against the installed package.

Spec: R4 `resourcelist.html`; R4B `resourcelist.html`; ids: R4 `datatypes.html#id`,
`resource.html#id`.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

R4B_ONLY_TYPES: frozenset[str] = frozenset(
    {
        "AdministrableProductDefinition",
        "Citation",
        "ClinicalUseDefinition",
        "EvidenceReport",
        "Ingredient",
        "ManufacturedItemDefinition",
        "MedicinalProductDefinition",
        "NutritionProduct",
        "PackagedProductDefinition",
        "RegulatedAuthorization",
        "SubscriptionStatus",
        "SubscriptionTopic",
        "SubstanceDefinition",
    }
)
"""Types modelled by R4B (4.3.0) that R4 (4.0.1) does not define; served, flagged as R4B."""

R4_ONLY_TYPES: frozenset[str] = frozenset(
    {
        "EffectEvidenceSynthesis",
        "MedicinalProduct",
        "MedicinalProductAuthorization",
        "MedicinalProductContraindication",
        "MedicinalProductIndication",
        "MedicinalProductIngredient",
        "MedicinalProductInteraction",
        "MedicinalProductManufactured",
        "MedicinalProductPackaged",
        "MedicinalProductPharmaceutical",
        "MedicinalProductUndesirableEffect",
        "RiskEvidenceSynthesis",
        "SubstanceNucleicAcid",
        "SubstancePolymer",
        "SubstanceProtein",
        "SubstanceReferenceInformation",
        "SubstanceSourceMaterial",
        "SubstanceSpecification",
    }
)
"""R4 (4.0.1) types that R4B dropped: not served, because we have no model to validate them."""

# fmt: off
RESOURCE_TYPES: frozenset[str] = frozenset({
    "Account", "ActivityDefinition", "AdministrableProductDefinition", "AdverseEvent",
    "AllergyIntolerance", "Appointment", "AppointmentResponse", "AuditEvent", "Basic", "Binary",
    "BiologicallyDerivedProduct", "BodyStructure", "Bundle", "CapabilityStatement", "CarePlan",
    "CareTeam", "CatalogEntry", "ChargeItem", "ChargeItemDefinition", "Citation", "Claim",
    "ClaimResponse", "ClinicalImpression", "ClinicalUseDefinition", "CodeSystem", "Communication",
    "CommunicationRequest", "CompartmentDefinition", "Composition", "ConceptMap", "Condition",
    "Consent", "Contract", "Coverage", "CoverageEligibilityRequest",
    "CoverageEligibilityResponse", "DetectedIssue", "Device", "DeviceDefinition", "DeviceMetric",
    "DeviceRequest", "DeviceUseStatement", "DiagnosticReport", "DocumentManifest",
    "DocumentReference", "Encounter", "Endpoint", "EnrollmentRequest", "EnrollmentResponse",
    "EpisodeOfCare", "EventDefinition", "Evidence", "EvidenceReport", "EvidenceVariable",
    "ExampleScenario", "ExplanationOfBenefit", "FamilyMemberHistory", "Flag", "Goal",
    "GraphDefinition", "Group", "GuidanceResponse", "HealthcareService", "ImagingStudy",
    "Immunization", "ImmunizationEvaluation", "ImmunizationRecommendation", "ImplementationGuide",
    "Ingredient", "InsurancePlan", "Invoice", "Library", "Linkage", "List", "Location",
    "ManufacturedItemDefinition", "Measure", "MeasureReport", "Media", "Medication",
    "MedicationAdministration", "MedicationDispense", "MedicationKnowledge", "MedicationRequest",
    "MedicationStatement", "MedicinalProductDefinition", "MessageDefinition", "MessageHeader",
    "MolecularSequence", "NamingSystem", "NutritionOrder", "NutritionProduct", "Observation",
    "ObservationDefinition", "OperationDefinition", "OperationOutcome", "Organization",
    "OrganizationAffiliation", "PackagedProductDefinition", "Parameters", "Patient",
    "PaymentNotice", "PaymentReconciliation", "Person", "PlanDefinition", "Practitioner",
    "PractitionerRole", "Procedure", "Provenance", "Questionnaire", "QuestionnaireResponse",
    "RegulatedAuthorization", "RelatedPerson", "RequestGroup", "ResearchDefinition",
    "ResearchElementDefinition", "ResearchStudy", "ResearchSubject", "RiskAssessment", "Schedule",
    "SearchParameter", "ServiceRequest", "Slot", "Specimen", "SpecimenDefinition",
    "StructureDefinition", "StructureMap", "Subscription", "SubscriptionStatus",
    "SubscriptionTopic", "Substance", "SubstanceDefinition", "SupplyDelivery", "SupplyRequest",
    "Task", "TerminologyCapabilities", "TestReport", "TestScript", "ValueSet",
    "VerificationResult", "VisionPrescription",
})
# fmt: on
"""Every concrete resource type `fhir.resources.R4B` models (141): what this server serves.

Excludes the abstract `Resource` and `DomainResource` and all datatypes.
"""

FHIR_ID_RE: re.Pattern[str] = re.compile(r"[A-Za-z0-9\-\.]{1,64}")
"""The R4 `id` datatype: 1 to 64 letters, digits, `-` and `.`. Use with `fullmatch`."""


def is_resource_type(name: str) -> bool:
    """Whether `name` is a resource type this server serves (case-sensitive, e.g. `Slot`).

    Args:
        name: a candidate type name, e.g. the `{type}` segment of a REST URL.

    Returns:
        True for the 141 types in `RESOURCE_TYPES`; False for anything else, including
        abstract types (`Resource`, `DomainResource`), datatypes and `R4_ONLY_TYPES`.
    """
    return name in RESOURCE_TYPES


def is_valid_id(value: str) -> bool:
    """Whether `value` is a valid logical id (R4 `datatypes.html#id`).

    Args:
        value: a candidate `Resource.id`, e.g. the `{id}` segment of a REST URL.

    Returns:
        True when `value` is 1-64 characters from `[A-Za-z0-9-.]`.
    """
    return FHIR_ID_RE.fullmatch(value) is not None


@cache
def resource_model(resource_type: str) -> Any | None:
    """The R4B pydantic model class of a concrete resource type we serve, or None.

    Imports the model module on first use (fhir.resources loads models lazily).
    """
    if resource_type not in RESOURCE_TYPES:
        return None
    from fhir.resources.R4B import get_fhir_model_class

    try:
        model = get_fhir_model_class(resource_type)
    except ValueError:
        return None
    if model.__name__ != resource_type or not model.has_resource_base():
        return None
    return model
