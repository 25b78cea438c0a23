"""Offer links: signed with the database's key, for one action on one offer, until the
offer's hold ends; anything else is refused."""

from __future__ import annotations

from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import OctKey

from operations.waitlist.links import LinkInvalid, link_key, offer_url, read_link
from tests.reminders.helpers import engine as engine  # noqa: PLC0414 (fixture)

NOW = 1_800_000_000_000_000


async def test_links_round_trip_and_refuse_expired_tampered_and_foreign(engine: Any) -> None:
    factory = await engine()
    repo = factory.for_job("test")
    key = await link_key(repo)
    assert (await link_key(factory.for_job("other"))).as_dict() == key.as_dict()  # shared
    url = offer_url("https://clinic.example/fhir", key, "offer-1", "accept", NOW + 60_000_000)
    assert url.startswith("https://clinic.example/waitlist/offers/")
    token = url.rsplit("/", 1)[1]
    link = read_link(key, token, NOW)
    assert (link.offer_id, link.action) == ("offer-1", "accept")
    with pytest.raises(LinkInvalid, match="expired"):
        read_link(key, token, NOW + 60_000_000)
    head, body, signature = token.split(".")
    with pytest.raises(LinkInvalid, match="not valid"):
        read_link(key, f"{head}.{body}.{signature[::-1]}", NOW)
    other = OctKey.import_key(b"k" * 32)
    foreign = jwt.encode(
        {"alg": "HS256"}, {"sub": "offer-1", "act": "accept", "aud": "x", "exp": 2**40}, key
    )
    with pytest.raises(LinkInvalid):
        read_link(key, foreign, NOW)  # another audience
    forged = jwt.encode(
        {"alg": "HS256"},
        {"sub": "offer-1", "act": "accept", "aud": "waitlist-offer", "exp": 2**40},
        other,
    )
    with pytest.raises(LinkInvalid):
        read_link(key, forged, NOW)  # not our key
    none_alg = f"{head.replace(head, 'eyJhbGciOiJub25lIn0')}.{body}."
    with pytest.raises(LinkInvalid):
        read_link(key, none_alg, NOW)
