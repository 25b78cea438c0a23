"""Every error is an OperationOutcome with a precise code; nothing is written on failure."""

from __future__ import annotations

import httpx
import pytest


def issue(r: httpx.Response) -> dict[str, object]:
    body = r.json()
    assert body["resourceType"] == "OperationOutcome"
    assert r.headers["content-type"].startswith("application/fhir+json")
    return dict(body["issue"][0])


async def test_malformed_json_returns_400_structure(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/Patient", content=b"{not json", headers={"Content-Type": "application/fhir+json"}
    )
    assert r.status_code == 400
    assert issue(r)["code"] == "structure"


async def test_wrong_resource_type_returns_400(client: httpx.AsyncClient) -> None:
    r = await client.post("/Patient", json={"resourceType": "Observation", "status": "final"})
    assert r.status_code == 400
    assert issue(r)["expression"] == ["resourceType"]


async def test_unknown_type_returns_404_not_supported(client: httpx.AsyncClient) -> None:
    r = await client.get("/Spaceship/1")
    assert r.status_code == 404
    assert issue(r)["code"] == "not-supported"


async def test_unknown_element_returns_400_with_expression(client: httpx.AsyncClient) -> None:
    r = await client.post("/Patient", json={"resourceType": "Patient", "colour": "blue"})
    assert r.status_code == 400
    found = issue(r)
    assert found["code"] == "structure"
    assert found["expression"] == ["Patient.colour"]
    assert (await client.get("/Patient?_total=accurate")).json()["total"] == 0


async def test_oversized_body_returns_413(tmp_path: object) -> None:
    from pathlib import Path

    from fhir_server.app import create_app
    from tests.conftest import make_settings

    app = create_app(make_settings(Path(str(tmp_path)), max_body_bytes=100))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t/fhir") as c:
            r = await c.post(
                "/Patient",
                json={"resourceType": "Patient", "text": {"status": "generated", "div": "x" * 500}},
            )
    assert r.status_code == 413
    assert issue(r)["code"] == "too-long"


async def test_unsupported_accept_returns_406(client: httpx.AsyncClient) -> None:
    r = await client.get("/metadata", headers={"Accept": "application/pdf"})
    assert r.status_code == 406
    assert issue(r)["code"] == "not-supported"


async def test_unsupported_content_type_returns_415(client: httpx.AsyncClient) -> None:
    r = await client.post("/Patient", content=b"x", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415


async def test_wrong_method_returns_405(client: httpx.AsyncClient) -> None:
    r = await client.delete("/metadata")
    assert r.status_code == 405
    assert issue(r)["code"] == "not-supported"


async def test_route_outside_base_returns_404_outcome(client: httpx.AsyncClient) -> None:
    r = await client.get("http://test/nowhere")
    assert r.status_code == 404
    assert issue(r)["code"] == "not-found"


@pytest.mark.parametrize(
    "body",
    [
        b"[]",
        b"null",
        b"123",
        b'"Patient"',
        b'{"resourceType": 5}',
        b"\xff\xfe",
        b'{"resourceType":"Patient","name":[null]}',
    ],
)
async def test_garbage_bodies_return_4xx_outcome(client: httpx.AsyncClient, body: bytes) -> None:
    r = await client.post(
        "/Patient", content=body, headers={"Content-Type": "application/fhir+json"}
    )
    assert 400 <= r.status_code < 500
    assert issue(r)["severity"] in ("error", "fatal")


async def test_bad_cursor_returns_400(client: httpx.AsyncClient) -> None:
    r = await client.get("/Patient?_cursor=garbage!!")
    assert r.status_code == 400


async def test_bad_count_returns_400(client: httpx.AsyncClient) -> None:
    r = await client.get("/Patient?_count=-1")
    assert r.status_code == 400


async def test_unexpected_failure_returns_500_outcome_without_internal_text(
    tmp_path: object,
) -> None:
    from pathlib import Path

    from fhir_server.app import create_app
    from fhir_server.storage.base import StoredResource
    from fhir_server.storage.sqlite import SQLiteStore
    from tests.conftest import make_settings

    class BrokenStore(SQLiteStore):
        async def read(self, resource_type: str, id: str) -> StoredResource | None:
            if resource_type == "Patient":
                raise RuntimeError("secret internal detail")
            return await super().read(resource_type, id)

    path = Path(str(tmp_path))
    app = create_app(make_settings(path), store=BrokenStore(str(path / "b.db")))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t/fhir") as c:
            r = await c.get("/Patient/1", headers={"X-Request-ID": "case-500"})
    assert r.status_code == 500
    found = issue(r)
    assert found["code"] == "exception"
    assert "secret" not in r.text
    assert r.headers["x-request-id"] == "case-500"  # the caller's id, quoted in the 500
    assert "case-500" in str(found["diagnostics"])
