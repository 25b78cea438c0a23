"""FHIR invariants we enforce, in a registry keyed by FHIR type name.

`resources.validation.validate_resource` calls `check_invariants` for every node of a registered
type, at any depth (a `Period` inside an `Appointment`, the `Narrative` of a contained resource),
once the resource is structurally valid; any issue makes it raise `Unprocessable` (422).

Registered (R4 unless noted; keys as the spec spells them):

* `Appointment`: app-1, app-2, app-3, app-4, and start <= end (R5 app-5).
* `AppointmentResponse`: apr-1.
* `Slot`: start < end (a slot has a positive duration; no R4 key).
* `Period`: per-1.
* `Narrative`: txt-1 (only basic XHTML: no scripts, forms, event attributes...), txt-2.
* `Bundle`: bdl-1, bdl-2, bdl-3, bdl-4, bdl-5, bdl-7, bdl-8, and the `Bundle.entry.fullUrl` rules
  (an absolute URI; a RESTful URL ends with the entry's type and id).

To add one: decorate `def check(node: dict, path: str) -> list[Issue]` with
`@invariant("Type")`. `node` is the element's JSON, `path` its FHIRPath
(`Bundle.entry[0].resource`). Checks must tolerate any JSON shape the structural passes
accept. Narratives are parsed by lxml with entities, DTDs and network access disabled.

Spec: R4 `appointment.html#invs`, `appointmentresponse.html#invs`, `datatypes.html#Period`,
`narrative.html#xhtml`, `bundle.html#invs` and `bundle.html#bundle-unique`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from lxml import etree

from resources.errors import Issue, IssueType
from resources.types import RESOURCE_TYPES

__all__ = ["INVARIANTS", "InvariantCheck", "check_invariants", "instant_bounds", "invariant"]

InvariantCheck = Callable[[dict[str, Any], str], list[Issue]]
"""A check: the element's JSON object and its FHIRPath location -> the issues found."""

INVARIANTS: dict[str, list[InvariantCheck]] = {}
"""Checks by FHIR type name (`Appointment`, `Period`, ...), in registration order."""


def invariant(type_name: str) -> Callable[[InvariantCheck], InvariantCheck]:
    """Register a check for every element of `type_name`.

    Args:
        type_name: a resource or datatype name (`Slot`, `Period`), or a backbone element as
            fhir.resources names its class (`AppointmentParticipant`).

    Returns:
        A decorator that adds the check to `INVARIANTS` and returns it unchanged.
    """

    def register(check: InvariantCheck) -> InvariantCheck:
        INVARIANTS.setdefault(type_name, []).append(check)
        return check

    return register


def check_invariants(type_name: str, node: dict[str, Any], path: str) -> list[Issue]:
    """Run the checks registered for `type_name` on one element.

    Args:
        type_name: the FHIR type of `node`, e.g. `Appointment`.
        node: the element as a JSON object.
        path: its FHIRPath location, used as the issues' `expression`.

    Returns:
        The `invariant` (or `invalid`) issues found; empty when all hold.
    """
    issues: list[Issue] = []
    for check in INVARIANTS.get(type_name, ()):
        issues.extend(check(node, path))
    return issues


def _issue(key: str, human: str, *where: str, code: IssueType = "invariant") -> Issue:
    return Issue(code=code, diagnostics=f"{key}: {human}" if key else human, expression=where)


# --- dates -----------------------------------------------------------------------------------

_PARTIAL_DATE = re.compile(r"(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?")
_EARLIEST_ZONE = timedelta(hours=14)  # a zone-less date may be local anywhere in -12:00..+14:00
_LATEST_ZONE = timedelta(hours=12)


def instant_bounds(value: object) -> tuple[datetime, datetime] | None:
    """The earliest and latest UTC instants a FHIR date, dateTime or instant can denote.

    Args:
        value: `2026-12-01T09:00:00Z` (exact: both bounds equal), `2026-12-01`, `2026-12`, `2026`
            (a whole day, month or year, widened by the -12:00..+14:00 zone range).

    Returns:
        `(low, high)` as aware UTC datetimes, or None when `value` is not a parseable date.
    """
    if not isinstance(value, str):
        return None
    if "T" in value:
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return None  # e.g. a leap second; the format itself is checked by the model
        if moment.tzinfo is None:
            return (
                moment.replace(tzinfo=UTC) - _EARLIEST_ZONE,
                moment.replace(tzinfo=UTC) + _LATEST_ZONE,
            )
        moment = moment.astimezone(UTC)
        return moment, moment
    match = _PARTIAL_DATE.fullmatch(value)
    if match is None:
        return None
    year, month, day = int(match[1]), int(match[2] or 1), int(match[3] or 1)
    try:
        low = datetime(year, month, day, tzinfo=UTC)
        if match[3]:
            high = low + timedelta(days=1)
        elif match[2]:
            high = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
        else:
            high = datetime(year + 1, 1, 1, tzinfo=UTC)
        return low - _EARLIEST_ZONE, high + _LATEST_ZONE - timedelta(microseconds=1)
    except (ValueError, OverflowError):
        return None  # month 13, year 0 or 9999: out of datetime's range


def _after(start: object, end: object, *, or_equal: bool = False) -> bool:
    """Whether `start` is certainly after (or, with `or_equal`, not before) `end`.

    Two dates of the same precision compare as dates (FHIRPath); otherwise the earliest instant
    `start` can denote is compared with the latest `end` can (see `instant_bounds`).
    """
    if (
        isinstance(start, str)
        and isinstance(end, str)
        and len(start) == len(end)
        and "T" not in start + end
    ):
        return start > end or (or_equal and start == end)
    low, high = instant_bounds(start), instant_bounds(end)
    if low is None or high is None:
        return False
    return low[0] > high[1] or (or_equal and low[0] >= high[1])


def _exists(node: dict[str, Any], name: str) -> bool:
    """FHIRPath `name.exists()`: a value or an `_name` extension."""
    return name in node or f"_{name}" in node


# --- scheduling resources --------------------------------------------------------------------

_MAY_LACK_TIMES = frozenset({"proposed", "cancelled", "waitlist"})
_MAY_HAVE_CANCELATION = frozenset({"cancelled", "noshow"})


@invariant("Appointment")
def _appointment(node: dict[str, Any], path: str) -> list[Issue]:
    issues: list[Issue] = []
    participants = node.get("participant")
    for i, participant in enumerate(participants if isinstance(participants, list) else ()):
        if isinstance(participant, dict) and not (
            _exists(participant, "type") or _exists(participant, "actor")
        ):
            human = "Either the type or actor on the participant SHALL be specified"
            issues.append(_issue("app-1", human, f"{path}.participant[{i}]"))
    has_start, has_end = _exists(node, "start"), _exists(node, "end")
    if has_start != has_end:
        issues.append(_issue("app-2", "Either start and end are specified, or neither", path))
    status = node.get("status")
    if not (has_start and has_end) and status not in _MAY_LACK_TIMES:
        human = "Only proposed or cancelled appointments can be missing start/end dates"
        issues.append(_issue("app-3", human, path))
    # R4's expression compares with 'no-show', but the appointmentstatus code is 'noshow'.
    if _exists(node, "cancelationReason") and status not in _MAY_HAVE_CANCELATION:
        human = (
            "Cancelation reason is only used for appointments that have been cancelled, or no-show"
        )
        issues.append(_issue("app-4", human, f"{path}.cancelationReason"))
    if _after(node.get("start"), node.get("end")):
        human = "start SHALL be less than or equal to end"
        issues.append(_issue("app-5", human, f"{path}.start", f"{path}.end"))
    return issues


@invariant("AppointmentResponse")
def _appointment_response(node: dict[str, Any], path: str) -> list[Issue]:
    if _exists(node, "participantType") or _exists(node, "actor"):
        return []
    return [_issue("apr-1", "Either the participantType or actor must be specified", path)]


@invariant("Slot")
def _slot(node: dict[str, Any], path: str) -> list[Issue]:
    if _after(node.get("start"), node.get("end"), or_equal=True):
        human = "Slot.start SHALL be before Slot.end"
        return [_issue("", human, f"{path}.start", f"{path}.end")]
    return []


@invariant("Period")
def _period(node: dict[str, Any], path: str) -> list[Issue]:
    if _after(node.get("start"), node.get("end")):
        return [_issue("per-1", "If present, start SHALL have a lower value than end", path)]
    return []


# --- narrative -------------------------------------------------------------------------------

_XHTML = "{http://www.w3.org/1999/xhtml}"
# HTML 4.0 chapters 7-11 and 15 (less chapter 9 section 4), as R4 narrative.html#xhtml allows.
# fmt: off
_ALLOWED_ELEMENTS = frozenset({
    "a", "abbr", "acronym", "address", "area", "b", "bdo", "big", "blockquote", "br", "caption",
    "cite", "code", "col", "colgroup", "dd", "dfn", "div", "dl", "dt", "em", "h1", "h2", "h3",
    "h4", "h5", "h6", "hr", "i", "img", "kbd", "li", "map", "ol", "p", "pre", "q", "samp",
    "small", "span", "strong", "sub", "sup", "table", "tbody", "td", "tfoot", "th", "thead", "tr",
    "tt", "ul", "var",
})
# fmt: on
_URL_ATTRIBUTES = frozenset({"href", "src", "longdesc", "usemap", "cite"})
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


@invariant("Narrative")
def _narrative(node: dict[str, Any], path: str) -> list[Issue]:
    div = node.get("div")
    if not isinstance(div, str):
        return []
    where = f"{path}.div"
    txt1 = "The narrative SHALL contain only the basic html formatting elements and attributes"
    try:
        root = etree.fromstring(div.encode(), _PARSER)
    except etree.XMLSyntaxError as exc:
        return [_issue("txt-1", f"{txt1}; the div is not well-formed XHTML ({exc.msg})", where)]
    if root.tag != f"{_XHTML}div" or root.getroottree().docinfo.doctype:
        return [_issue("txt-1", f"{txt1}; it must be one XHTML <div> element", where)]
    problem = _xhtml_problem(root)
    if problem:
        return [_issue("txt-1", f"{txt1}; {problem}", where)]
    if not "".join(root.itertext()).strip() and root.find(f".//{_XHTML}img") is None:
        return [_issue("txt-2", "The narrative SHALL have some non-whitespace content", where)]
    return []


def _xhtml_problem(root: Any) -> str | None:
    for element in root.iter():
        tag = element.tag
        if not isinstance(tag, str):
            if isinstance(element, etree._ProcessingInstruction):
                return "processing instructions are not allowed"
            continue  # comments and entities
        if not tag.startswith(_XHTML) or tag[len(_XHTML) :] not in _ALLOWED_ELEMENTS:
            return f"element <{etree.QName(tag).localname}> is not allowed"
        for name, value in element.attrib.items():
            local = etree.QName(name).localname.lower()
            if local.startswith("on"):
                return f"event attribute {local!r} is not allowed"
            if local in _URL_ATTRIBUTES and value.strip().lower().startswith(
                ("javascript:", "vbscript:")
            ):
                return f"script URL in attribute {local!r} is not allowed"
    return None


# --- bundle ----------------------------------------------------------------------------------

_ABSOLUTE_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:\S+")
_RESTFUL_URL = re.compile(r"https?://\S*?/([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})")
_NEEDS_REQUEST = frozenset({"batch", "transaction", "history"})
_NEEDS_RESPONSE = frozenset({"batch-response", "transaction-response", "history"})


@invariant("Bundle")
def _bundle(node: dict[str, Any], path: str) -> list[Issue]:
    kind = node.get("type")
    issues: list[Issue] = []
    if _exists(node, "total") and kind not in ("searchset", "history"):
        issues.append(_issue("bdl-1", "total only when a search or history", f"{path}.total"))
    entries = node.get("entry")
    seen: set[tuple[str, object]] = set()
    for i, entry in enumerate(entries if isinstance(entries, list) else ()):
        if not isinstance(entry, dict):
            continue
        where = f"{path}.entry[{i}]"
        if "search" in entry and kind != "searchset":
            issues.append(_issue("bdl-2", "entry.search only when a search", where))
        if ("request" in entry) != (kind in _NEEDS_REQUEST):
            human = "entry.request mandatory for batch/transaction/history, otherwise prohibited"
            issues.append(_issue("bdl-3", human, where))
        if ("response" in entry) != (kind in _NEEDS_RESPONSE):
            human = "entry.response mandatory for batch-response/transaction-response/history"
            issues.append(_issue("bdl-4", f"{human}, otherwise prohibited", where))
        if not ("resource" in entry or "request" in entry or "response" in entry):
            human = "must be a resource unless there's a request or response"
            issues.append(_issue("bdl-5", human, where))
        full_url = entry.get("fullUrl")
        if isinstance(full_url, str):
            issues.extend(_full_url_issues(full_url, entry.get("resource"), where))
            meta = (
                entry["resource"].get("meta") if isinstance(entry.get("resource"), dict) else None
            )
            key = (full_url, meta.get("versionId") if isinstance(meta, dict) else None)
            if key in seen and kind != "history":
                human = "FullUrl must be unique in a bundle, or else entries with the same fullUrl"
                human += " must have different meta.versionId (except in history bundles)"
                issues.append(_issue("bdl-7", human, f"{where}.fullUrl"))
            seen.add(key)
    return issues


def _full_url_issues(full_url: str, resource: object, where: str) -> list[Issue]:
    expression = f"{where}.fullUrl"
    if "/_history/" in full_url:
        return [_issue("bdl-8", "fullUrl cannot be a version specific reference", expression)]
    if not _ABSOLUTE_URI.fullmatch(full_url):
        human = f"fullUrl must be an absolute URI (a URL, urn:uuid: or urn:oid:), not {full_url!r}"
        return [_issue("", human, expression, code="invalid")]
    match = _RESTFUL_URL.fullmatch(full_url)
    if match is None or match[1] not in RESOURCE_TYPES or not isinstance(resource, dict):
        return []
    rid = resource.get("id")
    if resource.get("resourceType") != match[1] or (isinstance(rid, str) and rid != match[2]):
        human = (
            f"fullUrl {full_url!r} is a RESTful URL, so it must end with the entry's "
            f"resource type and id ({resource.get('resourceType')}/{rid})"
        )
        return [_issue("", human, expression, code="invalid")]
    return []
