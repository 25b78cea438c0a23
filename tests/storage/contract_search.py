"""The ResourceStore contract: string, token, date, number and quantity search conditions, and
several conditions together (semantics: `fhir_server.search.query`'s docstring).

Builders and the `store` fixture: `contract.py`, `conftest.py`.
"""

from __future__ import annotations

import pytest

from fhir_server.search.query import (
    DateCondition,
    NumberCondition,
    Prefix,
    QuantityCondition,
    QuantityValue,
    RangeValue,
    StoreQuery,
    StringCondition,
    TokenCondition,
    TokenValue,
)
from fhir_server.storage.base import ResourceStore
from resources.index_values import DateEntry, NumberEntry, QuantityEntry, StringEntry
from tests.storage.contract import DAY, SYS, T0, UCUM, create, ids, tok

# -- search: string ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        (StringCondition("name", ("mul",)), {"muller"}),
        (StringCondition("name", ("MUL",)), set()),
        (StringCondition("name", ("ller",)), set()),
        (StringCondition("name", ("",)), {"muller", "dot", "under", "other"}),
        (StringCondition("name", ("Müller",), "exact"), {"muller"}),
        (StringCondition("name", ("muller",), "exact"), set()),
        (StringCondition("name", ("Mül",), "exact"), set()),
        (StringCondition("name", ("lle",), "contains"), {"muller"}),
        (StringCondition("name", ("_",), "contains"), {"under"}),
        (StringCondition("name", ("%",), "contains"), set()),
        (StringCondition("name", ("a.b",)), {"dot"}),
        (StringCondition("name", ("a(",)), set()),
        (StringCondition("name", ("mul", "anna")), {"muller", "other"}),
        (StringCondition("family", ("mul",)), set()),
    ],
)
async def test_search_string_modifiers_match_per_semantics(
    store: ResourceStore, condition: StringCondition, expected: set[str]
) -> None:
    await create(store, "Patient", "muller", StringEntry("name", "muller", "Müller"))
    await create(store, "Patient", "dot", StringEntry("name", "a.b(c", "a.b(c"))
    await create(store, "Patient", "under", StringEntry("name", "a_b", "a_b"))
    await create(
        store,
        "Patient",
        "other",
        StringEntry("name", "axb", "axb"),
        StringEntry("name", "anna", "Anna"),
    )
    await create(store, "Patient", "none", StringEntry("family", "x", "x"))
    assert await ids(store, "Patient", condition) == expected


# -- search: token ----------------------------------------------------------------------------


async def _token_data(store: ResourceStore) -> None:
    await create(store, "Patient", "sys-a", tok("identifier", SYS, "a", "medical record"))
    await create(store, "Patient", "other-a", tok("identifier", "http://other", "a"))
    await create(store, "Patient", "nosys-a", tok("identifier", None, "a"))
    await create(store, "Patient", "sys-b", tok("identifier", SYS, "b", "social security"))
    await create(
        store,
        "Patient",
        "both",
        tok("identifier", SYS, "c"),
        tok("identifier", "http://other", "b"),
    )
    await create(store, "Patient", "none", tok("gender", None, "a"))


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ((TokenValue("*", "a"),), {"sys-a", "other-a", "nosys-a"}),
        ((TokenValue(SYS, "a"),), {"sys-a"}),
        ((TokenValue(None, "a"),), {"nosys-a"}),
        ((TokenValue(SYS, None),), {"sys-a", "sys-b", "both"}),
        ((TokenValue("*", None),), {"sys-a", "other-a", "nosys-a", "sys-b", "both"}),
        ((TokenValue(SYS, "a"), TokenValue("http://other", "b")), {"sys-a", "both"}),
        ((TokenValue("*", "zzz"),), set()),
    ],
)
async def test_search_token_system_code_match_per_semantics(
    store: ResourceStore, values: tuple[TokenValue, ...], expected: set[str]
) -> None:
    await _token_data(store)
    assert await ids(store, "Patient", TokenCondition("identifier", values)) == expected


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ((TokenValue("*", "a"),), {"sys-b", "both", "none"}),
        ((TokenValue(SYS, "a"),), {"other-a", "nosys-a", "sys-b", "both", "none"}),
        ((TokenValue(SYS, "a"), TokenValue("*", "b")), {"other-a", "nosys-a", "none"}),
        ((TokenValue(SYS, None),), {"other-a", "nosys-a", "none"}),
    ],
)
async def test_search_token_not_excludes_any_match_includes_missing(
    store: ResourceStore, values: tuple[TokenValue, ...], expected: set[str]
) -> None:
    await _token_data(store)
    condition = TokenCondition("identifier", values, negate=True)
    assert await ids(store, "Patient", condition) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (("medical",), {"sys-a"}),
        (("record",), set()),
        (("medical", "social sec"), {"sys-a", "sys-b"}),
    ],
)
async def test_search_token_text_matches_text_prefix(
    store: ResourceStore, text: tuple[str, ...], expected: set[str]
) -> None:
    await _token_data(store)
    condition = TokenCondition("identifier", tuple(TokenValue("*", t) for t in text), text=True)
    assert await ids(store, "Patient", condition) == expected


# -- search: date, number, quantity ------------------------------------------------------------


async def _date_data(store: ResourceStore) -> None:
    await create(store, "Slot", "d1", DateEntry("start", T0, T0 + DAY))
    await create(store, "Slot", "d2", DateEntry("start", T0 + DAY, T0 + 2 * DAY))
    await create(store, "Slot", "d3", DateEntry("start", T0, T0 + 3 * DAY))
    await create(store, "Slot", "d4", DateEntry("start", T0 + 3 * DAY, T0 + 4 * DAY))
    await create(store, "Slot", "none", DateEntry("end", T0, T0 + DAY))


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("eq", {"d2"}),
        ("ne", {"d1", "d3", "d4"}),
        ("gt", {"d3", "d4"}),
        ("ge", {"d2", "d3", "d4"}),
        ("lt", {"d1", "d3"}),
        ("le", {"d1", "d2", "d3"}),
        ("sa", {"d4"}),
        ("eb", {"d1"}),
        ("ap", {"d2", "d3"}),
    ],
)
async def test_search_date_each_prefix_matches_per_semantics(
    store: ResourceStore, prefix: Prefix, expected: set[str]
) -> None:
    await _date_data(store)
    day2 = RangeValue(prefix, float(T0 + DAY), float(T0 + 2 * DAY))
    assert await ids(store, "Slot", DateCondition("start", (day2,))) == expected


async def test_search_date_or_of_values_matches_either(store: ResourceStore) -> None:
    await _date_data(store)
    values = (
        RangeValue("eq", float(T0), float(T0 + DAY)),
        RangeValue("sa", float(T0 + 2 * DAY), float(T0 + 3 * DAY)),
    )
    assert await ids(store, "Slot", DateCondition("start", values)) == {"d1", "d4"}


async def test_search_date_multiple_entries_any_entry_matches(store: ResourceStore) -> None:
    await create(
        store,
        "Slot",
        "two",
        DateEntry("start", T0, T0 + DAY),
        DateEntry("start", T0 + 5 * DAY, T0 + 6 * DAY),
    )
    early = RangeValue("eb", float(T0 + DAY), float(T0 + 2 * DAY))
    late = RangeValue("sa", float(T0 + 3 * DAY), float(T0 + 4 * DAY))
    assert await ids(store, "Slot", DateCondition("start", (early,))) == {"two"}
    assert await ids(store, "Slot", DateCondition("start", (late,))) == {"two"}


@pytest.mark.parametrize(
    ("prefix", "low", "high", "expected"),
    [
        ("eq", 4.5, 5.5, {"n5"}),
        ("ap", 4.5, 5.5, {"n5"}),
        ("ne", 4.5, 5.5, {"n1", "n10"}),
        ("gt", 5.0, 5.0, {"n10"}),
        ("ge", 5.0, 5.0, {"n5", "n10"}),
        ("lt", 5.0, 5.0, {"n1"}),
        ("le", 5.0, 5.0, {"n1", "n5"}),
        ("sa", 5.0, 5.0, {"n10"}),
        ("eb", 5.0, 5.0, {"n1"}),
    ],
)
async def test_search_number_each_prefix_matches_per_semantics(
    store: ResourceStore, prefix: Prefix, low: float, high: float, expected: set[str]
) -> None:
    for name, value in (("n1", 1.0), ("n5", 5.0), ("n10", 10.0)):
        await create(store, "RiskAssessment", name, NumberEntry("probability", value))
    await create(store, "RiskAssessment", "none", NumberEntry("other", 5.0))
    condition = NumberCondition("probability", (RangeValue(prefix, low, high),))
    assert await ids(store, "RiskAssessment", condition) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (QuantityValue(RangeValue("eq", 4.5, 5.5), "*", None), {"mg5", "g5", "other5"}),
        (QuantityValue(RangeValue("eq", 4.5, 5.5), None, None), {"mg5", "g5", "other5"}),
        (QuantityValue(RangeValue("eq", 4.5, 5.5), "*", "mg"), {"mg5", "other5"}),
        (QuantityValue(RangeValue("eq", 4.5, 5.5), UCUM, "mg"), {"mg5"}),
        (QuantityValue(RangeValue("eq", 4.5, 5.5), UCUM, None), {"mg5", "g5"}),
        (QuantityValue(RangeValue("gt", 5.0, 5.0), UCUM, "mg"), {"mg10"}),
        (QuantityValue(RangeValue("le", 5.0, 5.0), "*", "g"), {"g5"}),
        (QuantityValue(RangeValue("ne", 4.5, 5.5), "*", "mg"), {"mg10"}),
    ],
)
async def test_search_quantity_value_system_code_match_per_semantics(
    store: ResourceStore, value: QuantityValue, expected: set[str]
) -> None:
    entries = {
        "mg5": QuantityEntry("value-quantity", 5.0, UCUM, "mg", "mg"),
        "g5": QuantityEntry("value-quantity", 5.0, UCUM, "g", "g"),
        "mg10": QuantityEntry("value-quantity", 10.0, UCUM, "mg", "mg"),
        "other5": QuantityEntry("value-quantity", 5.0, "http://other", "mg", "mg"),
    }
    for name, entry in entries.items():
        await create(store, "Observation", name, entry)
    condition = QuantityCondition("value-quantity", (value,))
    assert await ids(store, "Observation", condition) == expected


# -- search: several conditions, other types ----------------------------------------------------


async def test_search_conditions_and_together(store: ResourceStore) -> None:
    await create(
        store, "Slot", "free-early", tok("status", None, "free"), DateEntry("start", T0, T0 + 1)
    )
    await create(
        store, "Slot", "busy-early", tok("status", None, "busy"), DateEntry("start", T0, T0 + 1)
    )
    await create(
        store,
        "Slot",
        "free-late",
        tok("status", None, "free"),
        DateEntry("start", T0 + DAY, T0 + DAY + 1),
    )
    free = TokenCondition("status", (TokenValue("*", "free"),))
    early = DateCondition("start", (RangeValue("lt", float(T0 + 10), float(T0 + 10)),))
    assert await ids(store, "Slot", free, early) == {"free-early"}
    assert await store.count("Slot", [free, early]) == 1
    assert await store.count("Slot", [free]) == 2
    assert await store.count("Slot", []) == 3


async def test_search_other_type_never_matches(store: ResourceStore) -> None:
    await create(store, "Slot", "s", tok("status", None, "free"))
    await create(store, "Schedule", "s", tok("status", None, "free"))
    free = TokenCondition("status", (TokenValue("*", "free"),))
    page = await store.search(StoreQuery("Slot", (free,)))
    assert [(r.resource_type, r.id) for r in page.resources] == [("Slot", "s")]
