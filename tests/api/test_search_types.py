"""Search over HTTP by parameter type, on every engine: number, quantity, uri, the token and
reference forms and modifiers test_search.py leaves out, meta parameters, date ranges on Period
and instants with offsets, escaping, and OR/AND on each type (R4 search.html#ptypes)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"


async def put(client: httpx.AsyncClient, resource: dict[str, Any]) -> dict[str, Any]:
    r = await client.put(f"/{resource['resourceType']}/{resource['id']}", json=resource)
    assert r.status_code in (200, 201), r.text
    return dict(r.json())


async def match_ids(client: httpx.AsyncClient, query: str) -> list[str]:
    """The sorted ids of the `match` entries of a search that must succeed."""
    r = await client.get(f"/{query}")
    assert r.status_code == 200, r.text
    entries = r.json().get("entry", [])
    return sorted(e["resource"]["id"] for e in entries if e["search"]["mode"] == "match")


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


@pytest.fixture
async def patients(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """Patients pa (tags, profile, security, identifiers, telecom), pb and pc."""
    await put(
        client,
        {
            "resourceType": "Patient",
            "id": "pa",
            "meta": {
                "tag": [{"system": "urn:tags", "code": "vip"}],
                "profile": ["http://example.org/StructureDefinition/pt"],
                "security": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
                        "code": "R",
                    }
                ],
            },
            "gender": "male",
            "active": True,
            "identifier": [
                {"system": "urn:mrn", "value": "111"},
                {"value": "abc"},
                {"system": "urn:x", "value": "a|b"},
            ],
            "telecom": [
                {"system": "phone", "value": "555-1234"},
                {"system": "email", "value": "a@example.org"},
            ],
        },
    )
    await put(
        client,
        {
            "resourceType": "Patient",
            "id": "pb",
            "meta": {"tag": [{"system": "urn:tags", "code": "test"}]},
            "gender": "female",
            "active": False,
            "identifier": [{"system": "urn:mrn", "value": "222"}],
            "telecom": [{"system": "phone", "value": "555-9999"}],
        },
    )
    await put(client, {"resourceType": "Patient", "id": "pc", "gender": "unknown"})
    return client


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("gender=|male", ["pa"]),
        ("gender=male,female", ["pa", "pb"]),
        ("identifier=|abc", ["pa"]),
        ("identifier=urn:mrn|", ["pa", "pb"]),
        ("identifier=urn:mrn|111,urn:mrn|222", ["pa", "pb"]),
        ("identifier=urn:mrn|&identifier=222", ["pb"]),
        ("identifier=urn:x|a\\|b", ["pa"]),
        ("identifier=urn:x|a", []),
        ("active=false", ["pb"]),
        ("active=true,false", ["pa", "pb"]),
        ("telecom=555-1234", ["pa"]),
        ("phone=555-1234", ["pa"]),
        ("email=a@example.org", ["pa"]),
        ("phone=a@example.org", []),
        ("telecom=555-9999,a@example.org", ["pa", "pb"]),
        ("_tag=urn:tags|vip", ["pa"]),
        ("_tag=vip,test", ["pa", "pb"]),
        ("_tag:not=urn:tags|vip", ["pb", "pc"]),
        ("_profile=http://example.org/StructureDefinition/pt", ["pa"]),
        ("_profile:below=http://example.org/StructureDefinition/", ["pa"]),
        ("_security=http://terminology.hl7.org/CodeSystem/v3-Confidentiality|R", ["pa"]),
        ("_security:missing=true", ["pb", "pc"]),
        ("_id=pa,pb&_id=pb,pc", ["pb"]),
    ],
)
async def test_search_patient_token_and_meta_match_expected_ids(
    patients: httpx.AsyncClient, query: str, expected: list[str]
) -> None:
    assert await match_ids(patients, f"Patient?{query}") == expected


async def test_search_last_updated_gt_le_brackets_writes(client: httpx.AsyncClient) -> None:
    stamps = []
    for oid in ("o1", "o2", "o3"):
        body = await put(client, {"resourceType": "Organization", "id": oid, "name": oid})
        stamps.append(body["meta"]["lastUpdated"])
    assert stamps == sorted(stamps) and len(set(stamps)) == 3
    first, second, _ = stamps
    assert await match_ids(client, f"Organization?_lastUpdated=gt{first}") == ["o2", "o3"]
    assert await match_ids(client, f"Organization?_lastUpdated=le{second}") == ["o1", "o2"]
    both = f"Organization?_lastUpdated=gt{first}&_lastUpdated=le{second}"
    assert await match_ids(client, both) == ["o2"]


async def test_search_string_escaped_comma_is_one_value(client: httpx.AsyncClient) -> None:
    for oid, name in (("inc", "Acme, Inc"), ("labs", "Acme Labs"), ("zeta", "Zeta")):
        await put(client, {"resourceType": "Organization", "id": oid, "name": name})
    assert await match_ids(client, "Organization?name=acme\\, inc") == ["inc"]
    assert await match_ids(client, "Organization?name=acme,zeta") == ["inc", "labs", "zeta"]
    assert await match_ids(client, "Organization?name=acme&name:contains=labs") == ["labs"]


@pytest.fixture
async def valuesets(client: httpx.AsyncClient) -> httpx.AsyncClient:
    for vid, url in (
        ("a", "http://example.org/fhir/ValueSet/a"),
        ("ab", "http://example.org/fhir/ValueSet/a/b"),
        ("x", "http://other.org/ValueSet/x"),
    ):
        await put(client, {"resourceType": "ValueSet", "id": vid, "url": url, "status": "active"})
    return client


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("url=http://example.org/fhir/ValueSet/a", ["a"]),
        ("url=http://example.org/fhir/ValueSet/A", []),
        ("url=http://example.org/fhir/ValueSet/a,http://other.org/ValueSet/x", ["a", "x"]),
        ("url:below=http://example.org/fhir", ["a", "ab"]),
        ("url:below=http://example.org/&url:below=http://example.org/fhir/ValueSet/a/", ["ab"]),
        ("url:above=http://example.org/fhir/ValueSet/a/b/c", ["a", "ab"]),
        ("url:above=http://example.org/fhir/ValueSet/a", ["a"]),
        ("url:above=http://example.org/fhir", []),
    ],
)
async def test_search_uri_modifier_matches_expected_ids(
    valuesets: httpx.AsyncClient, query: str, expected: list[str]
) -> None:
    assert await match_ids(valuesets, f"ValueSet?{query}") == expected


@pytest.fixture
async def calendar(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """Schedules whose planningHorizon is a closed, open-ended and open-started Period, and
    Slots around midnight written in Z and +02:00."""
    horizons = {
        "dec": {"start": "2026-12-01T00:00:00Z", "end": "2026-12-31T23:59:59Z"},
        "open": {"start": "2027-01-01T00:00:00Z"},
        "past": {"end": "2026-06-30T23:59:59Z"},
    }
    for sid, horizon in horizons.items():
        await put(
            client,
            {
                "resourceType": "Schedule",
                "id": sid,
                "actor": [{"reference": "Practitioner/d1"}],
                "planningHorizon": horizon,
            },
        )
    slots = {
        "a": ("2026-12-01T23:30:00Z", "2026-12-02T00:00:00Z"),  # 01:30 at +02:00 on the 2nd
        "b": ("2026-12-02T00:30:00+02:00", "2026-12-02T01:00:00+02:00"),  # 22:30Z on the 1st
        "c": ("2026-12-02T08:00:00+02:00", "2026-12-02T08:30:00+02:00"),
    }
    for slot_id, (start, end) in slots.items():
        await put(
            client,
            {
                "resourceType": "Slot",
                "id": slot_id,
                "schedule": {"reference": "Schedule/dec"},
                "status": "free",
                "start": start,
                "end": end,
            },
        )
    return client


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("Schedule?date=2026-12", ["dec"]),
        ("Schedule?date=2026", ["dec"]),
        ("Schedule?date=ge2026-12-15", ["dec", "open"]),
        ("Schedule?date=lt2026-12-01", ["past"]),
        ("Schedule?date=le2026-12-01", ["dec", "past"]),
        ("Schedule?date=gt2030-01-01", ["open"]),
        ("Schedule?date=sa2026-11-30", ["dec", "open"]),
        ("Schedule?date=eb2026-12-01", ["past"]),
        ("Schedule?date=ne2026-12", ["open", "past"]),
        ("Schedule?date=lt2026-07-01,gt2027-06-01", ["open", "past"]),
        ("Slot?start=ge2026-12-02T00:00:00Z&start=lt2026-12-03T00:00:00Z", ["c"]),
        (
            "Slot?start=ge2026-12-02T00:00:00%2B02:00&start=lt2026-12-03T00:00:00%2B02:00",
            ["a", "b", "c"],
        ),
        ("Slot?start=ge2026-12-01T23:00:00Z&start=lt2026-12-02T00:00:00Z", ["a"]),
        ("Slot?start=2026-12-02T01:30:00%2B02:00", ["a"]),
        ("Slot?start=2026-12-01", ["a", "b"]),  # a date without zone: the UTC day
        ("Slot?start=2026-12-02", ["c"]),
        ("Slot?start=ge2026-12-02T00:00", ["c"]),
        ("Slot?start=2026-12-01T22:30", ["b"]),
        ("Slot?start=2026-12-01T22:30,2026-12-02", ["b", "c"]),
    ],
)
async def test_search_date_period_and_offsets_match_expected_ids(
    calendar: httpx.AsyncClient, query: str, expected: list[str]
) -> None:
    assert await match_ids(calendar, query) == expected


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
