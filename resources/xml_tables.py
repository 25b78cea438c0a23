"""FHIR XML element tables, read once from the R4B models, shared by the XML writer and reader.

`_type_info(model)` gives a FHIR type's `_TypeInfo`: its elements in definition order
(`elements_sequence()`), each an `_Element` with its kind (`primitive`, `complex`, `resource` for
a nested resource, `xhtml` for the narrative `div`), FHIR type code, whether it repeats and its
model class; the members written as XML attributes (`Element.id`, `Extension.url`); and the JSON
keys it accepts. `_resource_info(type)` does the same for a concrete resource type name (None if
unknown). Also here: the namespaces, the lexical form of `decimal`, and `_parser()`, a per-thread
lxml parser that never loads DTDs, resolves entities or uses the network.

Spec: R4 `xml.html`.
"""

from __future__ import annotations

import re
import threading
import typing
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

from fhir.resources.R4B import get_fhir_model_class
from fhir_core.types import FhirBase
from lxml import etree

from resources.types import resource_model

FHIR_NS = "http://hl7.org/fhir"
XHTML_NS = "http://www.w3.org/1999/xhtml"
_F = "{" + FHIR_NS + "}"
_DIV = "{" + XHTML_NS + "}div"
_ABSTRACT = frozenset({"Resource", "DomainResource"})
_DECIMAL = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_MARKER_TYPES = {"UuidVersion": "uuid"}
_LXML_LOCATION = re.compile(r",? line \d+, column \d+$")
_LOCAL = threading.local()

Kind = Literal["primitive", "complex", "resource", "xhtml"]


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
