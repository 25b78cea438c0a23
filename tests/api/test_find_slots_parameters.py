"""The parameters of `Slot/$find-slots` and `Schedule/{id}/$find-slots` over HTTP on every
engine (SCHEDULING.md "Operations", "Errors"): POST Parameters equal to GET, a 400 that names
the bad parameter, the 31-day window, wrong levels, an instance narrowing to its Schedule,
unknown parameters ignored or refused under `handling=strict`, and `_format=xml`."""

from __future__ import annotations

import httpx
import pytest

from tests.api.find_slots_helpers import (
    FIND,
    MONDAY,
    MONDAY_SLOTS,
    SERVICE,
    day,
    find,
    put,
    schedule,
    slots,
    starts,
    utc_range,
)
from tests.api.find_slots_helpers import clinic as clinic  # noqa: PLC0414 (the fixture)


async def test_find_slots_post_parameters_equals_get(clinic: httpx.AsyncClient) -> None:
    window = day(MONDAY)
    query = {
        **window,
        "actor": "PractitionerRole/dr",
        "service-type": "http://example.org/service|checkup",
        "_count": "5",
    }
    got = await find(clinic, **query)
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "start", "valueDateTime": window["start"]},
            {"name": "end", "valueDateTime": window["end"]},
            {"name": "actor", "valueReference": {"reference": "PractitionerRole/dr"}},
            {"name": "service-type", "valueCoding": SERVICE["coding"][0]},
            {"name": "_count", "valueInteger": 5},
        ],
    }
    r = await clinic.post(FIND, json=body)
    assert r.status_code == 200, r.text
    posted = r.json()
    for bundle in (got, posted):
        bundle.pop("meta")
        bundle.pop("link")
    assert posted == got
    assert got["total"] == 14 and len(slots(got)) == 5


@pytest.mark.parametrize(
    ("params", "code", "expression"),
    [
        ({"end": "2026-12-08T00:00:00Z"}, "required", "start"),
        ({"start": "2026-12-07T00:00:00", "end": "2026-12-08T00:00:00Z"}, "invalid", "start"),
        ({"start": "2026-12-07", "end": "2026-12-08T00:00:00Z"}, "invalid", "start"),
        ({"start": "2026-12-08T00:00:00Z", "end": "2026-12-08T00:00:00Z"}, "invalid", "end"),
        ({"start": "2026-12-01T00:00:00Z", "end": "2027-01-02T00:00:00Z"}, "invalid", "end"),
        ({**day(MONDAY), "duration": "0"}, "invalid", "duration"),
        ({**day(MONDAY), "actor": "Patient/pat"}, "invalid", "actor"),
        ({**day(MONDAY), "_count": "many"}, "invalid", "_count"),
        ({**day(MONDAY), "specialty": "a|b|c"}, "invalid", "specialty"),
    ],
)
async def test_find_slots_bad_parameter_400_names_it(
    clinic: httpx.AsyncClient, params: dict[str, str], code: str, expression: str
) -> None:
    r = await clinic.get(FIND, params=params)
    assert r.status_code == 400
    (issue,) = r.json()["issue"]
    assert (issue["severity"], issue["code"], issue["expression"]) == ("error", code, [expression])


async def test_find_slots_31_day_window_accepted(clinic: httpx.AsyncClient) -> None:
    bundle = await find(
        clinic, start="2026-12-01T00:00:00Z", end="2027-01-01T00:00:00Z", _count="0"
    )
    assert bundle["total"] == 23 * 14 and "entry" not in bundle


async def test_find_slots_wrong_level_404_get_on_post_body_400(clinic: httpx.AsyncClient) -> None:
    for path in ("/Slot/x/$find-slots", "/Schedule/$find-slots", "/Appointment/$find-slots"):
        r = await clinic.get(path, params=day(MONDAY))
        assert r.status_code == 404, path
    assert (await clinic.get("/Schedule/nope/$find-slots", params=day(MONDAY))).status_code == 404
    r = await clinic.post(FIND, json={"resourceType": "Patient"})
    assert r.status_code == 400


async def test_find_slots_instance_level_limits_to_that_schedule(clinic: httpx.AsyncClient) -> None:
    await put(clinic, schedule("s-dr-2", "PractitionerRole/dr"))
    both = await find(clinic, **day(MONDAY))
    assert {s["schedule"]["reference"] for s in slots(both)} == {"Schedule/s-dr", "Schedule/s-dr-2"}
    assert starts(both) == sorted(MONDAY_SLOTS * 2)
    one = await find(clinic, "/Schedule/s-dr-2/$find-slots", **day(MONDAY))
    assert {s["schedule"]["reference"] for s in slots(one)} == {"Schedule/s-dr-2"}
    assert starts(one) == MONDAY_SLOTS
    assert one["link"][0]["url"].startswith("http://test/fhir/Schedule/s-dr-2/$find-slots?start=")
    narrowed = await find(clinic, **day(MONDAY), schedule="s-dr-2", duration="60")
    assert starts(narrowed) == utc_range(f"{MONDAY}T14:00", f"{MONDAY}T16:00", 60) + utc_range(
        f"{MONDAY}T18:00", f"{MONDAY}T21:00", 60
    )
    assert slots(narrowed)[0]["end"] == f"{MONDAY}T15:00:00Z"


async def test_find_slots_unknown_parameter_ignored_strict_400(clinic: httpx.AsyncClient) -> None:
    lenient = await find(clinic, **day(MONDAY), colour="blue")
    assert lenient["total"] == 14 and "colour" not in lenient["link"][0]["url"]
    strict = await clinic.get(
        FIND, params={**day(MONDAY), "colour": "blue"}, headers={"Prefer": "handling=strict"}
    )
    assert strict.status_code == 400
    assert strict.json()["issue"][0]["expression"] == ["colour"]


async def test_find_slots_xml_format_renders_bundle(clinic: httpx.AsyncClient) -> None:
    r = await clinic.get(FIND, params={**day(MONDAY), "_count": "1", "_format": "xml"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/fhir+xml")
    assert "<Slot>" in r.text and '<total value="14"/>' in r.text
