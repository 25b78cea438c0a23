"""One reference parser: what a FHIR `Reference.reference` names, resolved against this server's
base URL (R4 `references.html#literal`; ARCHITECTURE.md "One way in").

Every rule that looks at a reference — time claims and booking rules, compartments and access
checks, `_include`, the search index, operation parameters — reads it here, so that the
spellings of one resource resolve to one canonical key `Type/id`:

| written | kind | key |
|---|---|---|
| `Patient/7` | `local` | `Patient/7` |
| `Patient/7/_history/2` | `local` (version `2`) | `Patient/7` |
| `{base}/Patient/7`, `{base}/Patient/7/_history/2` | `local` | `Patient/7` |
| `https://other.example/fhir/Patient/7` | `foreign` (a resource of another server) | None |
| `#p1` | `contained` | None |
| `urn:uuid:...`, `urn:oid:...` | `urn` (a Bundle's placeholder, resolved by the bundle) | None |
| anything else (canonicals, malformed text) | `other` | None |

`base` is this server's public FHIR base URL (`http://host:8080/fhir`); a server may know several
(`FHIR_SERVER_BASE_URL` and the URL a request came in on). Scheme and host compare without case,
the path exactly, a trailing `/` ignored. No I/O here.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from resources.search_parameters import resource_types
from resources.types import FHIR_ID_RE, is_resource_type

__all__ = ["Reference", "ReferenceKind", "local_key", "normalize_base", "parse_reference"]

ReferenceKind = Literal["local", "foreign", "contained", "urn", "other"]

_TAIL = re.compile(
    r"(?:(?P<base>[A-Za-z][A-Za-z0-9+.\-]*://[^?#]+?)/)?"
    r"(?P<type>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})"
    r"(?:/_history/(?P<version>[A-Za-z0-9\-.]{1,64}))?"
)


@dataclass(frozen=True, slots=True)
class Reference:
    """A parsed `Reference.reference`.

    Attributes:
        text: the reference as written.
        kind: see the module table.
        resource_type / id: the target's type and id for `local` and `foreign` references
            (None otherwise).
        version: the `_history` version a versioned reference names, or None.
        base: the server base of an absolute reference, normalized (None when relative).
    """

    text: str
    kind: ReferenceKind
    resource_type: str | None = None
    id: str | None = None
    version: str | None = None
    base: str | None = None

    @property
    def key(self) -> str | None:
        """`Type/id` of a reference to a resource of this server, else None."""
        if self.kind != "local":
            return None
        return f"{self.resource_type}/{self.id}"

    @property
    def pair(self) -> tuple[str, str] | None:
        """`(type, id)` of a reference to a resource of this server, else None."""
        if self.kind != "local" or self.resource_type is None or self.id is None:
            return None
        return self.resource_type, self.id


def normalize_base(url: str) -> str:
    """A base URL as compared: scheme and host lower-cased, no trailing `/`."""
    text = url.strip().rstrip("/")
    scheme, sep, rest = text.partition("://")
    if not sep:
        return text
    host, slash, path = rest.partition("/")
    return f"{scheme.lower()}://{host.lower()}{slash}{path}"


def parse_reference(text: str, bases: Iterable[str] = ()) -> Reference:
    """Parse `text` (a `Reference.reference` value) against this server's `bases`.

    Args:
        text: the reference as written.
        bases: this server's FHIR base URLs (any spelling; `normalize_base` applies).

    Returns:
        A `Reference`; never raises (unreadable text is kind `other`).
    """
    if text.startswith("#"):
        return Reference(text, "contained")
    if text.startswith("urn:"):
        return Reference(text, "urn")
    match = _TAIL.fullmatch(text)
    if match is None or not _is_type(match["type"]):
        return Reference(text, "other")
    rtype, rid, version = match["type"], match["id"], match["version"]
    if FHIR_ID_RE.fullmatch(rid) is None:
        return Reference(text, "other")
    if match["base"] is None:
        return Reference(text, "local", rtype, rid, version)
    base = normalize_base(match["base"])
    kind: ReferenceKind = "local" if base in _normalized(tuple(bases)) else "foreign"
    return Reference(text, kind, rtype, rid, version, base)


def _is_type(name: str) -> bool:
    """A resource type served here or defined by R4 (a reference may name either)."""
    return is_resource_type(name) or name in _r4_types()


@functools.cache
def _r4_types() -> frozenset[str]:
    return frozenset(resource_types())


@functools.lru_cache(maxsize=64)
def _normalized(bases: tuple[str, ...]) -> frozenset[str]:
    return frozenset(normalize_base(b) for b in bases if b)


def local_key(reference: Any, bases: Iterable[str] = ()) -> str | None:
    """`Type/id` of a Reference (a dict with `reference`) or reference text that names a
    resource of this server, else None (foreign, contained, `urn:`, identifier-only, malformed).
    """
    text = reference.get("reference") if isinstance(reference, dict) else reference
    if not isinstance(text, str):
        return None
    return parse_reference(text, bases).key
