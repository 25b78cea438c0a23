"""`Patient/[id]/$everything` (R4 patient-operation-everything): the patient and every
resource in its compartment (R4 compartmentdefinition-patient), as a `searchset` Bundle.

Parameters: `_count` (page size per type, default 1000), `_since` (only resources updated at
or after the instant), `_type` (comma-separated types to include).
"""

from __future__ import annotations

from typing import Any

from fhir_server.bundle_builder import embed, full_url
from fhir_server.messages import FhirResult, Operation, OperationCall
from fhir_server.search.query import CompartmentCondition, DateCondition, RangeValue, StoreQuery
from resources.errors import Invalid
from resources.fhir_dates import parse_instant
from resources.index_values import DATE_MAX
from resources.search_parameters import compartment_params
from resources.types import RESOURCE_TYPES

MAX_PER_TYPE = 1000


async def everything(call: OperationCall) -> FhirResult:
    """Collect the patient's compartment, type by type, newest definitions from R4."""
    assert call.id is not None
    repo = call.repository
    patient = call.target or await repo.read("Patient", call.id)
    params = dict(call.request.query)
    types = tuple(t for t in sorted(RESOURCE_TYPES) if compartment_params("Patient", t))
    if "_type" in params:
        wanted = {t.strip() for t in params["_type"].split(",") if t.strip()}
        types = tuple(t for t in types if t in wanted)
    conditions: list[Any] = [CompartmentCondition(f"Patient/{call.id}")]
    if "_since" in params:
        try:
            since = parse_instant(params["_since"])
        except ValueError as exc:
            raise Invalid(f"Invalid _since: {exc}") from exc
        conditions.append(DateCondition("_lastUpdated", (RangeValue("ge", since, DATE_MAX),)))
    found = [patient]
    for rtype in types:
        if rtype == "Patient":
            continue
        page = await repo.lookup.search(StoreQuery(rtype, tuple(conditions), count=MAX_PER_TYPE))
        found.extend(page.resources)
    found = await repo.admit(found)  # only the types (and granular subsets) the caller may read
    entries = [{"fullUrl": full_url(call.request.base_url, r), "resource": embed(r)} for r in found]
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(entries),
        "entry": entries,
    }
    return FhirResult(200, bundle)


OPERATION = Operation(
    name="everything",
    handler=everything,
    instance=True,
    resource_types=frozenset({"Patient"}),
    definition={"url": "http://hl7.org/fhir/OperationDefinition/Patient-everything"},
)
