"""The official FHIR validator test cases, submitted over HTTP: the invalid ones are refused with
a 4xx OperationOutcome, none produces a 5xx, and nothing refused is stored."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.conftest import SHARED_DATA, shared_data
from tests.resources.test_validation import KNOWN_UNDETECTED

CASES_DIR = SHARED_DATA / "fhir-test-cases-validator-r4"


def _cases() -> list[Any]:
    manifest = CASES_DIR / "manifest-subset.json"
    if not manifest.exists():
        return [pytest.param(None, id="shared-data-absent")]
    return [
        pytest.param(case, id=case["name"])
        for case in json.loads(manifest.read_text())["test-cases"]
    ]


def _java_errors(case: dict[str, Any]) -> int:
    outcome = CASES_DIR / "outcomes" / case["java"].removeprefix("java/")
    issues = json.loads(outcome.read_text()).get("issue", [])
    return sum(1 for i in issues if i["severity"] in ("error", "fatal"))


@pytest.mark.parametrize("case", _cases())
async def test_create_validator_case_invalid_refused_with_4xx_outcome(
    client: httpx.AsyncClient, case: dict[str, Any] | None
) -> None:
    if case is None:
        shared_data("fhir-test-cases-validator-r4")
        return
    raw = (CASES_DIR / case["file"].replace("/", "_")).read_bytes()
    try:
        rtype = json.loads(raw).get("resourceType", "Basic")
    except ValueError:
        rtype = "Basic"
    if not isinstance(rtype, str) or not rtype.isalpha():
        rtype = "Basic"
    r = await client.post(
        f"/{rtype}", content=raw, headers={"Content-Type": "application/fhir+json"}
    )
    assert r.status_code < 500, r.text
    invalid = _java_errors(case) > 0 and case["name"] not in KNOWN_UNDETECTED
    if invalid:
        assert 400 <= r.status_code < 500, f"accepted an invalid resource: {r.text[:300]}"
        body = r.json()
        assert body["resourceType"] == "OperationOutcome"
        assert body["issue"][0]["severity"] in ("error", "fatal")
        stored = await client.get(f"/{rtype}?_summary=count")
        assert stored.status_code in (200, 404)
        if stored.status_code == 200:
            assert stored.json()["total"] == 0
    else:
        assert r.status_code in (200, 201), r.text[:500]
