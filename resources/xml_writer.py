"""JSON -> XML: serialise a FHIR JSON resource (a dict) as FHIR XML bytes (R4 `xml.html`).

`to_xml` walks the JSON along the element tables of `resources.xml_tables`, so elements come out
in FHIR definition order, primitives as `value` attributes with their `_name` companions' `id`
and `extension`, and the narrative `div` parsed as XHTML. Re-exported by `resources.xml_format`.
"""

from __future__ import annotations

import copy
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
    XHTML_NS,
    _Element,
    _extension_info,
    _parser,
    _resource_info,
    _type_info,
    _TypeInfo,
)

_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'


def _json_error(path: str, message: str) -> Invalid:
    """An `Invalid` (`structure`) about the JSON element at FHIRPath `path`."""
    return Invalid(f"{path}: {message}", code="structure", expression=[path])


def to_xml(resource: dict[str, Any], *, pretty: bool = False) -> bytes:
    """Serialise a FHIR JSON resource as FHIR XML (R4 `xml.html`).

    Args:
        resource: a resource in FHIR JSON form, e.g. `{"resourceType": "Patient", ...}`; not
            mutated. Primitive values are `str`, `bool`, `int`, `float` or `Decimal`;
            `fhir_comments` members are ignored.
        pretty: indent the output (for `_pretty=true`); may add whitespace inside the narrative.

    Returns:
        UTF-8 XML with a declaration; the root element is named by the resource type, in the
        `http://hl7.org/fhir` namespace, and elements follow FHIR definition order.

    Raises:
        Invalid: (`structure`) unknown resource type or element, wrong JSON shape (array vs
            single value, object expected), or a narrative `div` that is not well-formed XHTML.
    """
    root = _write_resource(resource, None, "")
    return _DECLARATION + bytes(etree.tostring(root, encoding="UTF-8", pretty_print=pretty))


def _write_resource(resource: Any, parent: Any, path: str) -> Any:
    rtype = resource.get("resourceType") if isinstance(resource, dict) else None
    info = _resource_info(rtype) if isinstance(rtype, str) else None
    if info is None:
        where = path or "resource"
        raise Invalid(f"{where}: {rtype!r} is not a known resource type", code="structure")
    if parent is None:
        element = etree.Element(_F + info.name, nsmap={None: FHIR_NS})
    else:
        element = etree.SubElement(parent, _F + info.name)
    _write_members(element, resource, info, path or info.name)
    return element


def _write_members(element: Any, obj: Any, info: _TypeInfo, path: str) -> None:
    if not isinstance(obj, dict):
        raise _json_error(path, "expected a JSON object")
    unknown = obj.keys() - info.json_keys
    if unknown:
        raise _json_error(f"{path}.{min(unknown)}", f"unknown element in {info.name}")
    for attribute in info.attributes:
        if obj.get(attribute) is not None:
            element.set(attribute, _lexical(obj[attribute], f"{path}.{attribute}"))
    for e in info.elements:
        value = obj.get(e.name)
        if e.kind == "primitive":
            ext = obj.get("_" + e.name)
            if value is not None or ext is not None:
                _write_primitives(element, e, value, ext, f"{path}.{e.name}")
            continue
        if value is None:
            continue
        if e.many != isinstance(value, list):
            raise _json_error(
                f"{path}.{e.name}", "expected " + ("an array" if e.many else "a single value")
            )
        for i, item in enumerate(value if e.many else [value]):
            ipath = f"{path}.{e.name}[{i}]" if e.many else f"{path}.{e.name}"
            if e.kind == "xhtml":
                element.append(_parse_div(item, ipath))
            elif e.kind == "resource":
                _write_resource(item, etree.SubElement(element, _F + e.name), ipath)
            else:
                child = etree.SubElement(element, _F + e.name)
                _write_members(child, item, _type_info(e.model), ipath)


def _write_primitives(element: Any, e: _Element, value: Any, ext: Any, path: str) -> None:
    if not e.many:
        _write_primitive(element, e.name, value, ext, path)
        return
    values, exts = value or [], ext or []
    if not isinstance(values, list) or not isinstance(exts, list):
        raise _json_error(path, "expected an array")
    for i in range(max(len(values), len(exts))):
        v = values[i] if i < len(values) else None
        x = exts[i] if i < len(exts) else None
        if v is not None or x is not None:
            _write_primitive(element, e.name, v, x, f"{path}[{i}]")


def _write_primitive(element: Any, name: str, value: Any, ext: Any, path: str) -> None:
    child = etree.SubElement(element, _F + name)
    if ext is not None:
        if not isinstance(ext, dict) or not ext.keys() <= {"id", "extension", "fhir_comments"}:
            raise _json_error(path, "expected a '_' companion with only 'id' and 'extension'")
        if ext.get("id") is not None:
            child.set("id", _lexical(ext["id"], f"{path}.id"))
    if value is not None:
        child.set("value", _lexical(value, path))
    extensions = ext.get("extension") if ext is not None else None
    if extensions:
        if not isinstance(extensions, list):
            raise _json_error(f"{path}.extension", "expected an array")
        for i, item in enumerate(extensions):
            sub = etree.SubElement(child, _F + "extension")
            _write_members(sub, item, _extension_info(), f"{path}.extension[{i}]")


def _lexical(value: Any, path: str) -> str:
    """The XML lexical form of a JSON primitive value."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | Decimal):
        return str(value)
    if isinstance(value, float) and _DECIMAL.fullmatch(repr(value)):  # no nan / inf
        return repr(value)
    raise _json_error(path, "expected a JSON primitive (string, boolean or number)")


def _parse_div(text: Any, path: str) -> Any:
    """Parse narrative XHTML (a JSON string) into a `div` element in the XHTML namespace."""
    if not isinstance(text, str):
        raise _json_error(path, "expected an XHTML string")
    try:
        div = etree.fromstring(text.encode("utf-8"), _parser())
    except etree.XMLSyntaxError as exc:
        message = _LXML_LOCATION.sub("", exc.msg)
        raise _json_error(path, f"narrative is not well-formed XHTML: {message}") from exc
    if div.getroottree().docinfo.doctype:
        raise _json_error(path, "expected XHTML without a DOCTYPE")
    if div.tag == "div":  # lenient: unqualified XHTML gets its namespace
        wrapped = f'<wrap xmlns="{XHTML_NS}">{text}</wrap>'.encode()
        div = copy.deepcopy(etree.fromstring(wrapped, _parser())[0])  # declares xmlns on div
    if div.tag != _DIV:
        raise _json_error(path, "expected an XHTML <div> element")
    return div
