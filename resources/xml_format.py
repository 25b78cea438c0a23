"""FHIR R4 XML representation: convert resources between FHIR JSON (dicts) and XML bytes.

Implements R4 `xml.html` from the fhir.resources R4B model metadata (names, definition order from
`elements_sequence()`, cardinality, types): the `http://hl7.org/fhir` namespace, primitives as
`value` attributes with `id`/`extension` (the JSON `_name` companions), `Element.id` and
`Extension.url` as attributes, the narrative `div` as XHTML in its own namespace, and nested
resources (`contained`, `Bundle.entry.resource`, ...) wrapped in an element named by their type.
Decimals keep their lexical form: `from_xml` returns `decimal.Decimal` (write those as raw JSON
numbers, e.g. orjson `default=` returning `orjson.Fragment(str(d))`).

Not fhir.resources' `model_dump_xml`/`model_validate_xml`: they drop primitive `id`s, write
backbone `id`s as child elements, decimals through `float` ("0" -> "0.0"), instants as "+00:00"
for "Z", non-ASCII narrative as character references, and are ~20x slower (they build models).

The code lives in `resources.xml_tables` (element tables from the models), `resources.xml_writer`
(`to_xml`) and `resources.xml_reader` (`from_xml`); this module is the public entry point.
"""

from __future__ import annotations

from resources.xml_reader import DecimalParser, from_xml
from resources.xml_tables import FHIR_NS, XHTML_NS, Kind
from resources.xml_writer import to_xml

__all__ = ["FHIR_NS", "XHTML_NS", "DecimalParser", "Kind", "from_xml", "to_xml"]
