"""The ceiling for bench/rest.py: a bare Starlette endpoint returning one stored JSON document.

Run by the benchmark as `uvicorn bench.ceiling_app:create --factory`; the document comes from
the file named by BENCH_CEILING_JSON.
"""

from __future__ import annotations

import os
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


def create() -> Starlette:
    """A Starlette app with GET /fhir/Patient/{id} answering the stored bytes."""
    body = Path(os.environ["BENCH_CEILING_JSON"]).read_bytes()

    async def read(_request: Request) -> Response:
        return Response(body, media_type="application/fhir+json")

    return Starlette(routes=[Route("/fhir/Patient/{id}", read)])
