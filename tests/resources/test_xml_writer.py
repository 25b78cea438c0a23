"""Tests for `resources.xml_format.to_xml` (R4 `xml.html`): primitives with ids and
extensions as attributes and children, elements in definition order, JSON that is not a
FHIR resource refused with an `Invalid` structure error, and pretty printing."""

from __future__ import annotations

from typing import Any

import pytest

from resources.errors import Invalid
from resources.xml_format import from_xml, to_xml
from tests.resources.xml_helpers import DECL, _outcome


def test_to_xml_primitives_with_id_and_extensions_writes_attributes_and_children() -> None:
    patient = {
        "resourceType": "Patient",
        "id": "p1",
        "name": [
            {
                "id": "n1",
                "given": ["Peter", None, "Jim"],
                "_given": [
                    None,
                    {"id": "g2", "extension": [{"url": "urn:nick", "valueString": "PJ"}]},
                ],
            }
        ],
        "_gender": {"extension": [{"url": "urn:absent", "valueCode": "unknown"}]},
        "birthDate": "1970-01-01",
        "_birthDate": {"id": "bd"},
    }

    xml = to_xml(patient)

    assert xml.decode() == (
        DECL + '<Patient xmlns="http://hl7.org/fhir"><id value="p1"/>'
        '<name id="n1"><given value="Peter"/>'
        '<given id="g2"><extension url="urn:nick"><valueString value="PJ"/></extension></given>'
        '<given value="Jim"/></name>'
        '<gender><extension url="urn:absent"><valueCode value="unknown"/></extension></gender>'
        '<birthDate id="bd" value="1970-01-01"/></Patient>'
    )
    assert from_xml(xml) == {
        "resourceType": "Patient",
        "id": "p1",
        "name": [
            {
                "id": "n1",
                "given": ["Peter", None, "Jim"],
                "_given": [
                    None,
                    {"id": "g2", "extension": [{"url": "urn:nick", "valueString": "PJ"}]},
                    None,
                ],
            }
        ],
        "_gender": {"extension": [{"url": "urn:absent", "valueCode": "unknown"}]},
        "birthDate": "1970-01-01",
        "_birthDate": {"id": "bd"},
    }


def test_to_xml_json_keys_out_of_order_follows_definition_order() -> None:
    slot = {
        "end": "2026-12-01T09:30:00Z",
        "start": "2026-12-01T09:00:00Z",
        "status": "free",
        "schedule": {"reference": "Schedule/7"},
        "id": "s1",
        "resourceType": "Slot",
    }

    assert to_xml(slot).decode() == (
        DECL + '<Slot xmlns="http://hl7.org/fhir"><id value="s1"/>'
        '<schedule><reference value="Schedule/7"/></schedule><status value="free"/>'
        '<start value="2026-12-01T09:00:00Z"/><end value="2026-12-01T09:30:00Z"/></Slot>'
    )


@pytest.mark.parametrize(
    ("resource", "diagnostics", "expression"),
    [
        ({"resourceType": "Nope"}, "resource: 'Nope' is not a known resource type", None),
        (
            {"resourceType": "Patient", "nickname": "x"},
            "Patient.nickname: unknown element in Patient",
            ["Patient.nickname"],
        ),
        (
            {"resourceType": "Patient", "name": {"family": "x"}},
            "Patient.name: expected an array",
            ["Patient.name"],
        ),
        (
            {"resourceType": "Patient", "text": {"status": "generated", "div": "<div>"}},
            "Patient.text.div: narrative is not well-formed XHTML: "
            "Premature end of data in tag div line 1",
            ["Patient.text.div"],
        ),
    ],
    ids=["type", "element", "shape", "div"],
)
def test_to_xml_bad_json_raises_invalid_structure(
    resource: dict[str, Any], diagnostics: str, expression: list[str] | None
) -> None:
    with pytest.raises(Invalid) as caught:
        to_xml(resource)

    assert caught.value.outcome() == _outcome(diagnostics, expression)


def test_to_xml_pretty_indents_elements() -> None:
    xml = to_xml({"resourceType": "Slot", "id": "a", "status": "free"}, pretty=True)

    assert xml.decode() == (
        DECL + '<Slot xmlns="http://hl7.org/fhir">\n  <id value="a"/>\n  <status value="free"/>\n'
        "</Slot>\n"
    )
