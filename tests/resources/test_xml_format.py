"""Tests for resources.xml_format: FHIR JSON <-> XML round trips (R4 `xml.html`): every HL7
example, decimals as written, narratives in the XHTML namespace, contained resources, Bundle
entries and every R4B resource type. Parsing: test_xml_reader.py; writing: test_xml_writer.py."""

from __future__ import annotations

import copy
import importlib
import json
import pkgutil
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fhir.resources import R4B
from lxml import etree

from resources.xml_format import from_xml, to_xml
from resources.xml_tables import _resource_info
from tests.resources.xml_helpers import DECL

EXAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "hl7-r4" / "examples"
EXAMPLE_FILES = sorted(EXAMPLES.glob("*.json")) if EXAMPLES.is_dir() else []
XHTML = "http://www.w3.org/1999/xhtml"
# Character and entity references other than the ones XML must escape: an XML processor does not
# keep them (`&quot;` reads back as `"`), so such narratives compare after canonicalisation.
LEXICAL_ONLY_REFERENCES = re.compile(r"&(?!amp;|lt;|gt;)[#a-zA-Z0-9]+;")


def _canonical(value: Any, c14n_divs: bool) -> Any:
    """Numbers as (kind, lexical form), so 1.50 != 1.5 and 1 != True; `div` canonicalised."""
    if isinstance(value, dict):
        return {
            k: _c14n(v) if k == "div" and c14n_divs else _canonical(v, c14n_divs)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_canonical(v, c14n_divs) for v in value]
    if isinstance(value, int | Decimal | float) and not isinstance(value, bool):
        return ("number", str(value))
    return value


def _c14n(div: str) -> bytes:
    return bytes(etree.tostring(etree.fromstring(div.encode()), method="c14n"))


@pytest.mark.shared_data
@pytest.mark.parametrize("path", EXAMPLE_FILES or [None], ids=lambda p: p.name if p else "absent")
def test_round_trip_hl7_example_equals_original(path: Path | None) -> None:
    if path is None:
        pytest.skip("needs ../shared/data (the shared data folder beside the repo)")
    text = path.read_text(encoding="utf-8")
    original = json.loads(text, parse_float=Decimal)
    pristine = copy.deepcopy(original)
    c14n_divs = bool(LEXICAL_ONLY_REFERENCES.search(text))

    xml = to_xml(original)
    back = from_xml(xml)

    assert original == pristine
    assert _canonical(back, c14n_divs) == _canonical(original, c14n_divs)
    assert to_xml(back) == xml


def test_round_trip_decimals_keeps_precision_as_written() -> None:
    location = {
        "resourceType": "Location",
        "position": {"longitude": Decimal("-83.694710"), "latitude": Decimal("42.256500")},
        "extension": [{"url": "urn:f", "valueDecimal": 2.0}, {"url": "urn:i", "valueDecimal": 3}],
    }

    xml = to_xml(location)
    back = from_xml(xml)

    assert b'<longitude value="-83.694710"/><latitude value="42.256500"/>' in xml
    assert b'<valueDecimal value="2.0"/>' in xml
    assert b'<valueDecimal value="3"/>' in xml
    assert back == {
        "resourceType": "Location",
        "extension": [
            {"url": "urn:f", "valueDecimal": Decimal("2.0")},
            {"url": "urn:i", "valueDecimal": Decimal("3")},
        ],
        "position": {"longitude": Decimal("-83.694710"), "latitude": Decimal("42.256500")},
    }
    assert str(back["position"]["latitude"]) == "42.256500"


def test_from_xml_parse_decimal_float_returns_floats() -> None:
    xml = b'<Location xmlns="http://hl7.org/fhir"><position><longitude value="1.50"/>'
    xml += b'<latitude value="2"/></position></Location>'

    back = from_xml(xml, parse_decimal=float)

    assert back == {"resourceType": "Location", "position": {"longitude": 1.5, "latitude": 2.0}}


def test_round_trip_narrative_keeps_xhtml_namespace_and_unicode() -> None:
    div = f'<div xmlns="{XHTML}"><p class="x">Zoë &amp; 张 &lt;b&gt;</p><br/></div>'
    patient = {"resourceType": "Patient", "text": {"status": "generated", "div": div}}

    xml = to_xml(patient)

    assert xml.decode() == (
        DECL + '<Patient xmlns="http://hl7.org/fhir"><text><status value="generated"/>'
        f"{div}</text></Patient>"
    )
    assert from_xml(xml) == patient


def test_to_xml_div_without_namespace_gets_xhtml_namespace() -> None:
    patient = {
        "resourceType": "Patient",
        "text": {"status": "generated", "div": "<div><p>x</p></div>"},
    }

    back = from_xml(to_xml(patient))

    assert back["text"]["div"] == f'<div xmlns="{XHTML}"><p>x</p></div>'


def test_round_trip_contained_resource_wraps_in_type_element() -> None:
    appointment = {
        "resourceType": "Appointment",
        "contained": [{"resourceType": "Patient", "id": "p", "active": True}],
        "status": "booked",
        "participant": [{"actor": {"reference": "#p"}, "status": "accepted"}],
    }

    xml = to_xml(appointment)

    assert xml.decode() == (
        DECL + '<Appointment xmlns="http://hl7.org/fhir">'
        '<contained><Patient><id value="p"/><active value="true"/></Patient></contained>'
        '<status value="booked"/><participant><actor><reference value="#p"/></actor>'
        '<status value="accepted"/></participant></Appointment>'
    )
    assert from_xml(xml) == appointment


def test_round_trip_bundle_entries_wrap_resources() -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": 2,
        "link": [{"relation": "self", "url": "http://x/fhir/Slot?status=free"}],
        "entry": [
            {
                "fullUrl": "http://x/fhir/Slot/1",
                "resource": {"resourceType": "Slot", "id": "1", "status": "free"},
                "search": {"mode": "match", "score": Decimal("1.0")},
            },
            {
                "fullUrl": "http://x/fhir/Schedule/7",
                "resource": {"resourceType": "Schedule", "id": "7", "active": False},
                "search": {"mode": "include"},
            },
        ],
    }

    xml = to_xml(bundle)

    assert xml.decode() == (
        DECL + '<Bundle xmlns="http://hl7.org/fhir"><type value="searchset"/><total value="2"/>'
        '<link><relation value="self"/><url value="http://x/fhir/Slot?status=free"/></link>'
        '<entry><fullUrl value="http://x/fhir/Slot/1"/><resource><Slot><id value="1"/>'
        '<status value="free"/></Slot></resource><search><mode value="match"/>'
        '<score value="1.0"/></search></entry>'
        '<entry><fullUrl value="http://x/fhir/Schedule/7"/><resource><Schedule><id value="7"/>'
        '<active value="false"/></Schedule></resource><search><mode value="include"/></search>'
        "</entry></Bundle>"
    )
    assert from_xml(xml) == bundle


def test_round_trip_every_r4b_resource_type_minimal_resource_equal() -> None:
    names = {
        name
        for info in pkgutil.iter_modules(R4B.__path__)
        for name in vars(importlib.import_module(f"fhir.resources.R4B.{info.name}"))
        if _resource_info(name) is not None
    }

    for name in sorted(names):
        resource = {"resourceType": name, "id": "x", "meta": {"versionId": "1"}}
        assert from_xml(to_xml(resource)) == resource
    assert len(names) == 141
