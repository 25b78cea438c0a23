"""Member paths in search parameter expressions, evaluated by walking the JSON: which part
of a branch is plain navigation, whether it reaches anything, and (for a branch that is only
navigation, `Appointment.participant.actor`) its values without fhirpathpy (`indexing.py`
uses these; indexing is most of a write's CPU). A choice element met on the way (`value`
held as `valueQuantity`) is always left to fhirpathpy, which knows the types."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

__all__ = ["Evaluator", "is_member_path", "leading_steps", "member_path", "reachable", "walk"]

Evaluator = Callable[[dict[str, Any]], list[Any]]
"""A compiled expression: a resource's JSON in, the matched JSON values out."""

# A branch made only of navigation, indexers, where() and type casts yields nothing when its
# leading member path is absent, so it can be skipped without calling fhirpathpy.
_NAVIGATION_ONLY = re.compile(
    r"\(?[A-Za-z]\w*(?:\.[A-Za-z]\w*|\[\d+\]|\.where\([^()]*\)|\.(?:as|ofType)\(\w+\)"
    r"| as \w+\)?)*"
)
_MEMBER_PATH = re.compile(r"[A-Za-z]\w*(?:\.[a-z]\w*)+")
"""A branch that is only member navigation from the type (`Patient.name.given`)."""
_LEADING_PATH = re.compile(r"\(?([A-Za-z]\w*(?:\.[A-Za-z]\w*(?![\w(]))*)")


def is_member_path(expression: str) -> bool:
    """Whether `expression` is only member navigation from its type (`Patient.name.given`)."""
    return _MEMBER_PATH.fullmatch(expression) is not None


def leading_steps(resource_type: str, expression: str) -> tuple[str, ...] | None:
    """The member names a navigation-only branch starts with (`Patient.address.city` ->
    `("address", "city")`); None when the branch may yield values from nothing (`exists()`)."""
    if _NAVIGATION_ONLY.fullmatch(expression) is None:
        return None
    match = _LEADING_PATH.match(expression)
    if match is None:  # pragma: no cover - the fullmatch above guarantees an identifier
        return None
    steps = match[1].split(".")
    if steps[0] == resource_type:
        steps = steps[1:]
    return tuple(steps) or None


def _has_choice(node: dict[str, Any], stem: str) -> bool:
    """Whether `node` holds a choice element `stem[x]` (`valueQuantity` for `value`)."""
    size = len(stem)
    return any(key.startswith(stem) and key[size : size + 1].isupper() for key in node)


def walk(resource: dict[str, Any], steps: tuple[str, ...]) -> list[Any] | None:
    """The values the member path `steps` reaches in `resource` (lists flattened, nulls and
    extension-only primitives skipped), or None when a choice element is met on the way
    (`value` held as `valueQuantity`): only fhirpathpy knows its types."""
    level: list[Any] = [resource]
    for step in steps:
        found: list[Any] = []
        for node in level:
            if not isinstance(node, dict):
                continue
            value = node.get(step)
            if value is None:
                if _has_choice(node, step):
                    return None
            elif isinstance(value, list):
                found.extend(v for v in value if v is not None)
            else:
                found.append(value)
        if not found:
            return []
        level = found
    return level


def reachable(resource: dict[str, Any], steps: tuple[str, ...]) -> bool:
    """Whether the member path `steps` reaches any value in `resource`; a choice element met
    on the way counts as reachable and is left to fhirpathpy."""
    found = walk(resource, steps)
    return found is None or bool(found)


def member_path(steps: tuple[str, ...], fhirpath: Evaluator) -> Evaluator:
    """The evaluator of a plain member path (`Appointment.participant.actor`): the JSON walked
    directly (`walk`) — what fhirpathpy returns for it, at a fraction of the cost (indexing
    is most of a write's CPU); a choice element on the way is left to fhirpathpy."""

    def evaluate(resource: dict[str, Any]) -> list[Any]:
        found = walk(resource, steps)
        return fhirpath(resource) if found is None else found

    return evaluate
