"""XML -> JSON: parse FHIR XML bytes into a FHIR JSON resource (a dict) (R4 `xml.html`).

`from_xml` refuses DTDs, parses with the safe parser of `resources.xml_tables` and reads each
element along the element tables, typing primitives by their FHIR type and keeping decimals in
their lexical form. Errors name the XML line and the FHIRPath location. Re-exported by
`resources.xml_format`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from lxml import etree

from resources.errors import Invalid
from resources.xml_tables import (
    _DECIMAL,
    _DIV,
    _F,
    _LXML_LOCATION,
    FHIR_NS,
    _Element,
    _extension_info,
    _parser,
    _resource_info,
    _type_info,
    _TypeInfo,
)

_INTEGER = re.compile(r"[-+]?[0-9]+")
_INTEGER_TYPES = frozenset({"integer", "unsignedInt", "positiveInt", "integer64"})

DecimalParser = Callable[[str], Any]


def from_xml(body: bytes, *, parse_decimal: DecimalParser = Decimal) -> dict[str, Any]:
    """Parse a FHIR XML resource into FHIR JSON form (R4 `xml.html`).

    Args:
        body: the XML document; its encoding comes from the XML declaration (UTF-8 by default).
        parse_decimal: builds a JSON number from a `decimal` value's lexical form; the default
            `Decimal` keeps the precision as written ("1.50" stays 1.50).

    Returns:
        The resource as a dict (`resourceType` first), primitives typed by their FHIR type
        (`boolean` -> bool, integer types -> int, `decimal` -> `parse_decimal(...)`, others ->
        str), `_name` companions for primitive `id`/`extension`, `null` placeholders in
        repeating primitives, the narrative `div` as an XHTML string. Comments and
        processing instructions are dropped.

    Raises:
        Invalid: (`structure`, diagnostics with the XML line and an `expression`) malformed XML,
            a root outside the `http://hl7.org/fhir` namespace, unknown resource type or
            element, attributes or text where FHIR has none, a repeated single-valued element,
            an empty element (ele-1), a bad boolean/integer/decimal, or any DTD (`<!DOCTYPE`):
            entities are never resolved and the network is never used (XXE protection).
    """
    doctype = body.find(b"<!DOCTYPE")
    if doctype >= 0:
        line = body.count(b"\n", 0, doctype) + 1
        raise Invalid(f"XML line {line}: DTDs (<!DOCTYPE>) are not allowed", code="structure")
    try:
        root = etree.fromstring(body, _parser())
    except etree.XMLSyntaxError as exc:
        message = _LXML_LOCATION.sub("", exc.msg)
        raise Invalid(
            f"Malformed XML at line {exc.lineno}, column {exc.position[1]}: {message}",
            code="structure",
        ) from exc
    except ValueError as exc:  # e.g. an unknown encoding
        raise Invalid(f"Malformed XML: {exc}", code="structure") from exc
    if root.getroottree().docinfo.doctype:  # a DOCTYPE in another encoding (e.g. UTF-16)
        raise Invalid("DTDs (<!DOCTYPE>) are not allowed", code="structure")
    if not root.tag.startswith(_F):
        namespace = etree.QName(root).namespace or "none"
        raise _fail(root, f"the root element is not in the {FHIR_NS} namespace ({namespace})")
    return _read_resource(root, parse_decimal)


def _fail(element: Any, message: str) -> Invalid:
    """An `Invalid` (`structure`) naming the XML line and FHIRPath location of `element`."""
    names: list[str] = []
    node = element
    while node is not None:
        name = etree.QName(node).localname
        parent = node.getparent()
        if parent is None or not name[:1].isupper():  # skip the type wrapper of nested resources
            same = [n for n in parent if n.tag == node.tag] if parent is not None else [node]
            names.append(f"{name}[{same.index(node)}]" if len(same) > 1 else name)
        node = parent
    path = ".".join(reversed(names))
    return Invalid(
        f"XML line {element.sourceline}: {message} at {path}", code="structure", expression=[path]
    )


def _read_resource(element: Any, parse_decimal: DecimalParser) -> dict[str, Any]:
    rtype = etree.QName(element).localname
    info = _resource_info(rtype) if element.tag.startswith(_F) else None
    if info is None:
        raise _fail(element, f"'{rtype}' is not a known FHIR resource type")
    if len(element.attrib):
        raise _fail(element, "a resource element takes no attributes")
    out: dict[str, Any] = {"resourceType": rtype}
    _read_children(element, info, out, parse_decimal)
    return out


def _read_complex(element: Any, info: _TypeInfo, parse_decimal: DecimalParser) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in element.attrib.items():
        if key not in info.attributes:
            raise _fail(element, f"unexpected attribute '{key}'")
        out[key] = value
    _read_children(element, info, out, parse_decimal)
    if not out:
        raise _fail(element, "element has neither attributes nor children (ele-1)")
    return out


def _read_children(
    element: Any, info: _TypeInfo, out: dict[str, Any], parse_decimal: DecimalParser
) -> None:
    if element.text is not None and element.text.strip():
        raise _fail(element, "unexpected text content")
    repeating: list[str] = []
    for child in element:
        if child.tail is not None and child.tail.strip():
            raise _fail(element, "unexpected text content")
        tag = child.tag
        name = tag[len(_F) :] if tag.startswith(_F) else ("div" if tag == _DIV else "")
        e = info.by_name.get(name)
        if e is None or (e.kind == "xhtml") != (tag == _DIV):
            raise _fail(child, f"unknown element '{etree.QName(child).localname}' in {info.name}")
        ext = None
        if e.kind == "primitive":
            value, ext = _read_primitive(child, e, parse_decimal)
        elif e.kind == "xhtml":
            value = etree.tostring(child, encoding="unicode", with_tail=False)
        elif e.kind == "resource":
            nested = list(child)
            if len(nested) != 1 or (child.text or "").strip() or len(child.attrib):
                raise _fail(child, "expected exactly one resource element")
            value = _read_resource(nested[0], parse_decimal)
        else:
            value = _read_complex(child, _type_info(e.model), parse_decimal)
        if not e.many:
            if e.name in out or "_" + e.name in out:
                raise _fail(child, f"'{e.name}' may appear only once")
            if value is not None:
                out[e.name] = value
            if ext is not None:
                out["_" + e.name] = ext
        elif e.kind != "primitive":
            out.setdefault(e.name, []).append(value)
        else:  # parallel arrays, `null` where one side is missing (R4 json.html#primitive)
            if e.name not in out:
                out[e.name], out["_" + e.name] = [], []
                repeating.append(e.name)
            out[e.name].append(value)
            out["_" + e.name].append(ext)
    for name in repeating:
        for key in (name, "_" + name):
            if all(v is None for v in out[key]):
                del out[key]


def _read_primitive(
    element: Any, e: _Element, parse_decimal: DecimalParser
) -> tuple[Any, dict[str, Any] | None]:
    attributes = element.attrib
    if not {*attributes} <= {"id", "value"}:
        raise _fail(element, f"unexpected attribute on primitive '{e.name}'")
    if element.text is not None and element.text.strip():
        raise _fail(element, "unexpected text content (primitives use the 'value' attribute)")
    extensions = []
    for child in element:
        if child.tag != _F + "extension":
            raise _fail(child, f"primitive '{e.name}' may contain only extensions")
        extensions.append(_read_complex(child, _extension_info(), parse_decimal))
    raw = attributes.get("value")
    ext: dict[str, Any] | None = None
    if "id" in attributes or extensions:
        ext = {"id": attributes["id"]} if "id" in attributes else {}
        if extensions:
            ext["extension"] = extensions
    elif raw is None:
        raise _fail(element, "element has neither a value nor children (ele-1)")
    return (None if raw is None else _typed(raw, e, element, parse_decimal)), ext


def _typed(raw: str, e: _Element, element: Any, parse_decimal: DecimalParser) -> Any:
    """Convert a `value` attribute to the JSON type of its FHIR primitive type."""
    if e.code == "boolean":
        if raw not in ("true", "false"):
            raise _fail(element, f"invalid boolean {raw!r}")
        return raw == "true"
    if e.code in _INTEGER_TYPES:
        if not _INTEGER.fullmatch(raw):
            raise _fail(element, f"invalid {e.code} {raw!r}")
        return int(raw)
    if e.code == "decimal":
        if not _DECIMAL.fullmatch(raw):
            raise _fail(element, f"invalid decimal {raw!r}")
        return parse_decimal(raw)
    return raw
