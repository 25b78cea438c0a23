"""Search over HTTP by parameter type, on every engine: Patient tokens (code, identifier,
boolean, ContactPoint) and meta parameters (`_tag`, `_profile`, `_security`, `_id`,
`_lastUpdated`), escaped commas in strings, uri modifiers, and date ranges on Period and
instants with offsets, with OR/AND on each (R4 search.html#ptypes)."""

from __future__ import annotations

import httpx
import pytest

from tests.api.search_type_helpers import match_ids, put


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
