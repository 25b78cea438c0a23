"""Tests for `resources.xml_format.from_xml` (R4 `xml.html`): malformed, empty, foreign and
invalid XML refused with an `Invalid` structure error naming the line and element, DTDs
refused (XXE, entity expansion, UTF-16), comments and processing instructions ignored, and
parsing from many threads at once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from resources.errors import Invalid
from resources.xml_format import from_xml, to_xml
from tests.resources.xml_helpers import _outcome


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
