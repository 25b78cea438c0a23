"""Tests for resources.xml_format: FHIR JSON <-> XML (R4 `xml.html`)."""

from __future__ import annotations

import copy
import importlib
import json
import pkgutil
import re
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fhir.resources import R4B
from lxml import etree

from resources.errors import Invalid
from resources.xml_format import from_xml, to_xml
from resources.xml_tables import _resource_info

EXAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "hl7-r4" / "examples"
EXAMPLE_FILES = sorted(EXAMPLES.glob("*.json")) if EXAMPLES.is_dir() else []
DECL = '<?xml version="1.0" encoding="UTF-8"?>\n'
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


def _outcome(diagnostics: str, expression: list[str] | None = None) -> dict[str, Any]:
    issue: dict[str, Any] = {"severity": "error", "code": "structure", "diagnostics": diagnostics}
    if expression is not None:
        issue["expression"] = expression
    return {"resourceType": "OperationOutcome", "issue": [issue]}


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


def test_from_xml_malformed_raises_invalid_structure_with_line() -> None:
    body = b'<Patient xmlns="http://hl7.org/fhir">\n  <name>\n</Patient>'

    with pytest.raises(Invalid) as caught:
        from_xml(body)

    assert caught.value.status == 400
    assert caught.value.outcome() == _outcome(
        "Malformed XML at line 3, column 11: "
        "Opening and ending tag mismatch: name line 2 and Patient"
    )


def test_from_xml_empty_body_raises_invalid_structure() -> None:
    with pytest.raises(Invalid) as caught:
        from_xml(b"")

    assert caught.value.outcome() == _outcome(
        "Malformed XML at line 1, column 1: Document is empty"
    )


def test_from_xml_wrong_namespace_raises_invalid_structure() -> None:
    with pytest.raises(Invalid) as caught:
        from_xml(b'<Patient xmlns="http://hl7.org/fhir/x"><id value="1"/></Patient>')

    assert caught.value.outcome() == _outcome(
        "XML line 1: the root element is not in the http://hl7.org/fhir namespace "
        "(http://hl7.org/fhir/x) at Patient",
        ["Patient"],
    )


def test_from_xml_unknown_element_raises_invalid_with_line_and_expression() -> None:
    body = (
        b'<Patient xmlns="http://hl7.org/fhir">\n<name><given value="a"/>\n<nick value="b"/></name>'
    )
    body += b"</Patient>"

    with pytest.raises(Invalid) as caught:
        from_xml(body)

    assert caught.value.outcome() == _outcome(
        "XML line 3: unknown element 'nick' in HumanName at Patient.name.nick",
        ["Patient.name.nick"],
    )


@pytest.mark.parametrize(
    ("body", "diagnostics", "expression"),
    [
        (
            b'<Patient xmlns="http://hl7.org/fhir"><active value="yes"/></Patient>',
            "XML line 1: invalid boolean 'yes' at Patient.active",
            "Patient.active",
        ),
        (
            b'<Patient xmlns="http://hl7.org/fhir"><gender value="male"/><gender value="female"/>'
            b"</Patient>",
            "XML line 1: 'gender' may appear only once at Patient.gender[1]",
            "Patient.gender[1]",
        ),
        (
            b'<Patient xmlns="http://hl7.org/fhir"><name><given/></name></Patient>',
            "XML line 1: element has neither a value nor children (ele-1) at Patient.name.given",
            "Patient.name.given",
        ),
        (
            b'<Patient xmlns="http://hl7.org/fhir"><gender>male</gender></Patient>',
            "XML line 1: unexpected text content (primitives use the 'value' attribute) "
            "at Patient.gender",
            "Patient.gender",
        ),
        (
            b'<Bundle xmlns="http://hl7.org/fhir"><type value="collection"/><entry><resource>'
            b'<Patient/></resource></entry><entry><resource><Slot><overbooked value="1"/>'
            b"</Slot></resource></entry></Bundle>",
            "XML line 1: invalid boolean '1' at Bundle.entry[1].resource.overbooked",
            "Bundle.entry[1].resource.overbooked",
        ),
        (
            b'<Foo xmlns="http://hl7.org/fhir"/>',
            "XML line 1: 'Foo' is not a known FHIR resource type at Foo",
            "Foo",
        ),
    ],
    ids=["boolean", "repeated", "empty", "text", "nested", "unknown-type"],
)
def test_from_xml_invalid_content_raises_invalid_structure(
    body: bytes, diagnostics: str, expression: str
) -> None:
    with pytest.raises(Invalid) as caught:
        from_xml(body)

    assert caught.value.outcome() == _outcome(diagnostics, [expression])


def test_from_xml_xxe_external_entity_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    body = (
        '<?xml version="1.0"?>\n'
        f'<!DOCTYPE Patient [<!ENTITY xxe SYSTEM "file://{secret}">]>\n'
        '<Patient xmlns="http://hl7.org/fhir"><gender value="&xxe;"/></Patient>'
    ).encode()

    with pytest.raises(Invalid) as caught:
        from_xml(body)

    assert caught.value.outcome() == _outcome("XML line 2: DTDs (<!DOCTYPE>) are not allowed")


def test_from_xml_entity_expansion_bomb_refused() -> None:
    body = (
        b'<?xml version="1.0"?><!DOCTYPE Patient [<!ENTITY a "aaaaaaaaaa">'
        b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;">]>'
        b'<Patient xmlns="http://hl7.org/fhir"><gender value="&c;"/></Patient>'
    )

    with pytest.raises(Invalid) as caught:
        from_xml(body)

    assert caught.value.outcome() == _outcome("XML line 1: DTDs (<!DOCTYPE>) are not allowed")


def test_from_xml_utf16_doctype_refused() -> None:
    body = (
        '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE Patient [<!ENTITY x "y">]>'
        '<Patient xmlns="http://hl7.org/fhir"><gender value="&x;"/></Patient>'
    ).encode("utf-16")

    with pytest.raises(Invalid) as caught:
        from_xml(body)

    assert caught.value.outcome() == _outcome("DTDs (<!DOCTYPE>) are not allowed")


def test_from_xml_comments_pis_and_whitespace_ignored() -> None:
    body = b"""<?xml version="1.0" encoding="UTF-8"?>
<!-- a comment -->
<Slot xmlns="http://hl7.org/fhir">
  <!-- another --><?some-pi data?>
  <id value="s1"/>
  <status value="busy"/>
</Slot>
"""

    assert from_xml(body) == {"resourceType": "Slot", "id": "s1", "status": "busy"}


def test_from_xml_concurrent_threads_same_results() -> None:
    bodies = [to_xml({"resourceType": "Slot", "id": str(i), "status": "free"}) for i in range(200)]

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(from_xml, bodies))

    assert results == [{"resourceType": "Slot", "id": str(i), "status": "free"} for i in range(200)]


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
