"""Patient self-registration at `POST /auth/register` on the live server: the account signs
in as its new Patient; one account per email (any case, also when two registrations race);
a taken username, bad fields and too many registrations from one address are refused with
OperationOutcomes, leaving nothing behind."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fhir_server.cli import _load_demo
from tests.conftest import LiveServer, make_settings
from tests.smart.flows import bearer, patient_token, run_cli


def person(n: int | str, **more: Any) -> dict[str, Any]:
    return {
        "given": "Lena",
        "family": f"Park{n}",
        "birthDate": "1990-04-02",
        "email": f"lena{n}@example.org",
        "username": f"lena{n}",
        "password": "a long passphrase",
        **more,
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    settings = make_settings(tmp_path_factory.mktemp("register"), auth=True)
    live = LiveServer(settings.model_copy(update={"registrations_per_hour": 1000}))
    assert asyncio.run(_load_demo(live.settings)) > 0  # the demo app signs in
    with live:
        yield live


def origin(server: LiveServer) -> str:
    return server.base_url.rsplit("/fhir", 1)[0]


def outcome(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    issue: dict[str, Any] = response.json()["issue"][0]
    assert issue["code"] == code, issue
    return issue


def test_a_new_patient_signs_in_as_their_own_record(server: LiveServer) -> None:
    made = httpx.post(f"{origin(server)}/auth/register", json=person(1))
    assert made.status_code == 201, made.text
    assert made.headers["cache-control"] == "no-store"
    patient_ref = made.json()["patient"]
    with httpx.Client(base_url=origin(server), follow_redirects=False, timeout=30) as http:
        token = patient_token(
            http, server.base_url, "launch/patient patient/Patient.rs", "lena1", "a long passphrase"
        )
    assert f"Patient/{token['patient']}" == patient_ref
    me = httpx.get(f"{server.base_url}/{patient_ref}", headers=bearer(token)).json()
    assert me["name"] == [{"given": ["Lena"], "family": "Park1"}]
    assert me["telecom"] == [{"system": "email", "value": "lena1@example.org", "rank": 1}]


def test_one_account_per_email_and_username(server: LiveServer) -> None:
    url = f"{origin(server)}/auth/register"
    assert httpx.post(url, json=person(2)).status_code == 201
    again = httpx.post(url, json=person(3, email="LENA2@Example.org"))
    assert "email" in outcome(again, 409, "duplicate")["diagnostics"]
    taken = httpx.post(url, json=person(4, username="lena2"))
    assert "username" in outcome(taken, 409, "duplicate")["diagnostics"]
    retry = httpx.post(url, json=person(4))  # the refused email was given back
    assert retry.status_code == 201, retry.text


async def test_two_registrations_racing_with_one_email_make_one_account(
    server: LiveServer,
) -> None:
    url = f"{origin(server)}/auth/register"
    token = await asyncio.to_thread(run_cli, server.settings, "token", "--scope", "system/*.rs")
    admin = bearer(token.strip())
    async with httpx.AsyncClient(timeout=30) as http:
        answers = await asyncio.gather(
            *(http.post(url, json=person(f"race{n}", email="race@example.org")) for n in range(4))
        )
        found = (
            await http.get(
                f"{server.base_url}/Patient", params={"email": "race@example.org"}, headers=admin
            )
        ).json()
    assert sorted(a.status_code for a in answers) == [201, 409, 409, 409]
    assert found["total"] == 1


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"birthDate": "2999-01-01"}, "birthDate"),
        ({"birthDate": "02/04/1990"}, "birthDate"),
        ({"email": "not-an-email"}, "email"),
        ({"username": "a b"}, "username"),
        ({"password": "short"}, "password"),
        ({"given": ""}, "given"),
    ],
)
def test_bad_fields_are_400_naming_the_field(
    server: LiveServer, change: dict[str, str], field: str
) -> None:
    response = httpx.post(f"{origin(server)}/auth/register", json=person("bad", **change))
    assert outcome(response, 400, "invalid")["expression"] == [field]


def test_not_json_is_400(server: LiveServer) -> None:
    response = httpx.post(f"{origin(server)}/auth/register", content=b"[1,")
    outcome(response, 400, "invalid")


def test_too_many_registrations_from_one_address_are_429(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, auth=True).model_copy(update={"registrations_per_hour": 2})
    with LiveServer(settings) as live:
        url = f"{origin(live)}/auth/register"
        assert [httpx.post(url, json=person(f"r{n}")).status_code for n in range(2)] == [201, 201]
        refused = httpx.post(url, json=person("r3"))
        outcome(refused, 429, "throttled")
        assert 0 < int(refused.headers["retry-after"]) <= 3600
