"""Search over HTTP by parameter type, on every engine: number, quantity, the token and
reference forms and modifiers test_search.py leaves out (on Observation), canonical
references, absolute references to this server and others, and OR/AND on each type
(R4 search.html#ptypes). Meta parameters, strings, uri and dates: test_search_meta_uri_dates.py."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.api.search_type_helpers import match_ids, put

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"


def observation(oid: str, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": oid, "status": "final", **extra}


def quantity(value: float, system: str, code: str) -> dict[str, Any]:
    return {"value": value, "unit": code, "system": system, "code": code}


@pytest.fixture
async def numbers(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """RiskAssessments ra50, ra80, ra84, ra86, ra95 (probability 0.5 ... 0.95)."""
    for value in ("0.5", "0.8", "0.84", "0.86", "0.95"):
        rid = "ra" + value[2:].ljust(2, "0")
        await put(
            client,
            {
                "resourceType": "RiskAssessment",
                "id": rid,
                "status": "final",
                "subject": {"reference": "Patient/pa"},
                "prediction": [{"probabilityDecimal": float(value)}],
            },
        )
    return client


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("probability=0.8", ["ra80", "ra84"]),  # implicit precision: [0.75, 0.85)
        ("probability=eq0.80", ["ra80"]),  # [0.795, 0.805)
        ("probability=gt0.8", ["ra84", "ra86", "ra95"]),
        ("probability=ge0.8", ["ra80", "ra84", "ra86", "ra95"]),
        ("probability=lt0.8", ["ra50"]),
        ("probability=le0.8", ["ra50", "ra80"]),
        ("probability=ne0.8", ["ra50", "ra86", "ra95"]),
        ("probability=ap0.8", ["ra80", "ra84", "ra86"]),  # ±10%: [0.72, 0.88)
        ("probability=0.5,0.95", ["ra50", "ra95"]),
        ("probability=ge0.8&probability=lt0.86", ["ra80", "ra84"]),
    ],
)
async def test_search_number_prefix_matches_expected_ids(
    numbers: httpx.AsyncClient, query: str, expected: list[str]
) -> None:
    assert await match_ids(numbers, f"RiskAssessment?{query}") == expected


async def test_search_number_not_a_number_returns_400(numbers: httpx.AsyncClient) -> None:
    r = await numbers.get("/RiskAssessment?probability=gtabc")
    assert r.status_code == 400
    issue = r.json()["issue"][0]
    assert issue["code"] == "invalid" and "probability" in issue["diagnostics"]


@pytest.fixture
async def observations(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """Observations with quantities, codes (display/text) and subjects of every form."""
    glucose_serum = {"system": LOINC, "code": "2345-7", "display": "Glucose [Mass/volume] in Serum"}
    glucose_blood = {"system": LOINC, "code": "2339-0", "display": "Glucose [Mass/volume] in Blood"}
    await put(
        client,
        observation(
            "mg",
            code={"coding": [glucose_serum], "text": "Blood sugar"},
            subject={"reference": "Patient/pa"},
            valueQuantity=quantity(5.4, UCUM, "mg"),
        ),
    )
    await put(
        client,
        observation(
            "other-system",
            code={"coding": [glucose_blood]},
            subject={"reference": "Group/pa"},
            valueQuantity=quantity(5.4, "http://example.org/units", "mg"),
        ),
    )
    await put(
        client,
        observation(
            "g",
            code={"text": "Body weight | mass"},
            subject={"identifier": {"system": "urn:x", "value": "123"}},
            valueQuantity=quantity(6, UCUM, "g"),
        ),
    )
    await put(
        client,
        observation(
            "low",
            code={"coding": [{"system": "http://snomed.info/sct", "code": "271649006"}]},
            subject={"reference": "http://test/fhir/Patient/pb"},
            valueQuantity=quantity(4.0, UCUM, "mg"),
        ),
    )
    await put(
        client,
        observation(
            "no-system",
            code={"text": "Note"},
            subject={"identifier": {"value": "123"}},
        ),
    )
    return client


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (f"value-quantity=5.4|{UCUM}|mg", ["mg"]),
        ("value-quantity=5.4||mg", ["mg", "other-system"]),
        ("value-quantity=5.4", ["mg", "other-system"]),
        (f"value-quantity=5.4|{UCUM}|g", []),
        ("value-quantity=gt5", ["g", "mg", "other-system"]),
        ("value-quantity=lt5||mg", ["low"]),
        (f"value-quantity=gt5|{UCUM}|g", ["g"]),
        (f"value-quantity=4.0|{UCUM}|mg,6|{UCUM}|g", ["g", "low"]),
        ("value-quantity=gt4&value-quantity=lt6", ["mg", "other-system"]),
        ("code:text=glucose", ["mg", "other-system"]),
        ("code:text=BLOOD", ["mg"]),  # the concept's text, not a word inside a display
        ("code:text=body weight \\| mass", ["g"]),
        ("code:text=note,body", ["g", "no-system"]),
        (f"code={LOINC}|2345-7", ["mg"]),
        (f"code={LOINC}|", ["mg", "other-system"]),
        ("code=|271649006", []),
        ("code=2345-7,271649006", ["low", "mg"]),
        (f"code={LOINC}|&code=2339-0", ["other-system"]),
        ("subject=pa", ["mg", "other-system"]),
        ("subject:Patient=pa", ["mg"]),
        ("subject:Group=Group/pa", ["other-system"]),
        ("subject=Patient/pa,Patient/pb", ["low", "mg"]),
        ("subject=Patient/pb", ["low"]),
        ("subject=http://other.example/fhir/Patient/pa", []),
        ("patient=pa&code=2345-7", ["mg"]),
        ("subject:identifier=urn:x|123", ["g"]),
        ("subject:identifier=123", ["g", "no-system"]),
        ("subject:identifier=|123", ["no-system"]),
        ("subject:identifier=urn:y|123", []),
    ],
)
async def test_search_observation_quantity_token_reference_match_expected_ids(
    observations: httpx.AsyncClient, query: str, expected: list[str]
) -> None:
    assert await match_ids(observations, f"Observation?{query}") == expected


async def test_search_reference_absolute_url_to_this_server_matches_relative_reference(
    observations: httpx.AsyncClient,
) -> None:
    assert await match_ids(observations, "Observation?subject=http://test/fhir/Patient/pa") == [
        "mg"
    ]
    assert await match_ids(observations, "Observation?subject=http://test/fhir/Patient/pb") == [
        "low"
    ]


async def test_search_reference_type_modifier_conflicting_type_returns_400(
    observations: httpx.AsyncClient,
) -> None:
    r = await observations.get("/Observation?subject:Patient=Group/pa")
    assert r.status_code == 400
    assert r.json()["issue"][0]["code"] == "invalid"


async def test_search_canonical_reference_matches_url_as_written(client: httpx.AsyncClient) -> None:
    for qid, url in (("qr1", "http://example.org/Questionnaire/q1"), ("qr2", "urn:uuid:1234")):
        await put(
            client,
            {
                "resourceType": "QuestionnaireResponse",
                "id": qid,
                "status": "completed",
                "questionnaire": url,
            },
        )
    query = "QuestionnaireResponse?questionnaire="
    assert await match_ids(client, query + "http://example.org/Questionnaire/q1") == ["qr1"]
    assert await match_ids(client, query + "urn:uuid:1234,http://x.org/Q/9") == ["qr2"]


async def test_search_reference_stored_absolute_matches_only_its_own_server(
    client: httpx.AsyncClient,
) -> None:
    for oid, ref in (
        ("ours", "http://test/fhir/Patient/abs"),
        ("theirs", "http://elsewhere.example/fhir/Patient/abs"),
        ("relative", "Patient/abs"),
    ):
        r = await client.put(
            f"/Observation/{oid}",
            json={
                "resourceType": "Observation",
                "id": oid,
                "status": "final",
                "code": {"text": "x"},
                "subject": {"reference": ref},
            },
        )
        assert r.status_code == 201
    assert await match_ids(client, "Observation?subject=Patient/abs") == ["ours", "relative"]
    assert await match_ids(
        client, "Observation?subject=http://elsewhere.example/fhir/Patient/abs"
    ) == ["theirs"]
