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
"""

from __future__ import annotations

import copy
import re
import threading
import typing
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from typing import Any, Literal

from fhir.resources.R4B import get_fhir_model_class
from fhir_core.types import FhirBase
from lxml import etree

from resources.errors import Invalid
from resources.types import resource_model

FHIR_NS = "http://hl7.org/fhir"
XHTML_NS = "http://www.w3.org/1999/xhtml"
_F = "{" + FHIR_NS + "}"
_DIV = "{" + XHTML_NS + "}div"
_ABSTRACT = frozenset({"Resource", "DomainResource"})
_DECIMAL = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_INTEGER = re.compile(r"[-+]?[0-9]+")
_INTEGER_TYPES = frozenset({"integer", "unsignedInt", "positiveInt", "integer64"})
_MARKER_TYPES = {"UuidVersion": "uuid"}
_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'
_LXML_LOCATION = re.compile(r",? line \d+, column \d+$")
_LOCAL = threading.local()

Kind = Literal["primitive", "complex", "resource", "xhtml"]
DecimalParser = Callable[[str], Any]


@dataclass(frozen=True, slots=True)
class _Element:
    """One element of a FHIR type: name, kind, FHIR type code, repeats, model class if complex."""

    name: str
    kind: Kind
    code: str
    many: bool
    model: Any


@dataclass(frozen=True, slots=True)
class _TypeInfo:
    """A FHIR type's elements in definition order, plus the members written as XML attributes."""

    name: str
    attributes: tuple[str, ...]
    elements: tuple[_Element, ...]
    by_name: dict[str, _Element]
    json_keys: frozenset[str]


def _element(name: str, annotation: Any) -> _Element:
    """Describe one model field (its annotation unwrapped from Optional/List) as an `_Element`."""
    many = False
    while typing.get_origin(annotation) not in (None, typing.Annotated):
        many = many or typing.get_origin(annotation) is list
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    if typing.get_origin(annotation) is typing.Annotated:
        marker = next(
            type(m).__name__ for m in annotation.__metadata__ if type(m).__name__ != "EncodedBytes"
        )
        code = _MARKER_TYPES.get(marker, marker[0].lower() + marker[1:])
        return _Element(name, "xhtml" if code == "xhtml" else "primitive", code, many, None)
    if annotation is bool:
        return _Element(name, "primitive", "boolean", many, None)
    if isinstance(annotation, type) and issubclass(annotation, FhirBase):
        model = annotation.get_model_klass()
        kind: Kind = "resource" if model.__name__ in _ABSTRACT else "complex"
        return _Element(name, kind, model.__name__, many, model)
    raise TypeError(f"unsupported annotation {annotation!r} for element {name}")


@cache
def _type_info(model: Any) -> _TypeInfo:
    """Compute (once per model class) the element table that drives both directions."""
    is_resource = bool(model.has_resource_base())
    fields = {f.alias or n: f for n, f in model.model_fields.items()}
    attributes: tuple[str, ...] = () if is_resource else ("id",)
    if model.__name__ == "Extension":
        attributes = ("id", "url")
    elements = tuple(
        _element(n, fields[n].annotation) for n in model.elements_sequence() if n not in attributes
    )
    keys = {e.name for e in elements} | {"_" + e.name for e in elements if e.kind == "primitive"}
    keys |= {*attributes, "fhir_comments"} | ({"resourceType"} if is_resource else set())
    by_name = {e.name: e for e in elements}
    return _TypeInfo(model.__name__, attributes, elements, by_name, frozenset(keys))


@cache
def _resource_info(resource_type: str) -> _TypeInfo | None:
    """The element table of a concrete R4B resource type, or None if it is not one."""
    model = resource_model(resource_type)
    return None if model is None else _type_info(model)


def _parser() -> Any:
    """This thread's XML parser (lxml parsers are not thread-safe): no DTD, entities, network."""
    parser = getattr(_LOCAL, "parser", None)
    if parser is None:
        parser = _LOCAL.parser = etree.XMLParser(
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            remove_comments=True,
            remove_pis=True,
        )
    return parser


@cache
def _extension_info() -> _TypeInfo:
    """The element table of `Extension` (the content of primitive extensions)."""
    return _type_info(get_fhir_model_class("Extension"))


def _json_error(path: str, message: str) -> Invalid:
    """An `Invalid` (`structure`) about the JSON element at FHIRPath `path`."""
    return Invalid(f"{path}: {message}", code="structure", expression=[path])


# --- JSON -> XML -------------------------------------------------------------------------------


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


# --- XML -> JSON -------------------------------------------------------------------------------


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
