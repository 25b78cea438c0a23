"""The ResourceStore contract: reference, uri, missing and compartment search conditions;
chain and _has (semantics: `fhir_server.search.query`'s docstring).

Builders and the `store` fixture: `contract.py`, `conftest.py`.
"""

from __future__ import annotations

from typing import Literal

import pytest

from fhir_server.search.query import (
    ChainCondition,
    CompartmentCondition,
    HasCondition,
    MissingCondition,
    ParamType,
    ReferenceCondition,
    ReferenceValue,
    StringCondition,
    TokenCondition,
    TokenValue,
    UriCondition,
)
from fhir_server.storage.base import ResourceStore
from resources.index_values import DateEntry, ReferenceEntry, StringEntry, UriEntry
from tests.storage.contract import DAY, SYS, T0, create, delete, ids, ref, tok

# -- search: reference, uri, missing, compartment --------------------------------------------


@pytest.mark.parametrize(
    ("values", "identifier", "expected"),
    [
        ((ReferenceValue(None, "1"),), False, {"to-patient", "to-group"}),
        ((ReferenceValue("Patient", "1"),), False, {"to-patient"}),
        ((ReferenceValue("Patient", "2"),), False, set()),
        ((ReferenceValue(url="http://x.org/fhir/Patient/9"),), False, {"to-url"}),
        (
            (ReferenceValue("Patient", "1"), ReferenceValue(url="http://x.org/fhir/Patient/9")),
            False,
            {"to-patient", "to-url"},
        ),
        (
            (ReferenceValue(identifier_system=SYS, identifier_value="mrn-1"),),
            True,
            {"by-identifier"},
        ),
        (
            (ReferenceValue(identifier_system="*", identifier_value="mrn-1"),),
            True,
            {"by-identifier"},
        ),
        ((ReferenceValue(identifier_system="http://no", identifier_value="mrn-1"),), True, set()),
    ],
)
async def test_search_reference_literal_url_identifier_match_per_semantics(
    store: ResourceStore,
    values: tuple[ReferenceValue, ...],
    identifier: bool,
    expected: set[str],
) -> None:
    await create(store, "Appointment", "to-patient", ref("actor", "Patient", "1"))
    await create(store, "Appointment", "to-group", ref("actor", "Group", "1"))
    await create(
        store, "Appointment", "to-url", ref("actor", None, None, "http://x.org/fhir/Patient/9")
    )
    await create(
        store,
        "Appointment",
        "by-identifier",
        ReferenceEntry("actor", None, None, None, SYS, "mrn-1"),
    )
    await create(store, "Appointment", "other-param", ref("location", "Patient", "1"))
    condition = ReferenceCondition("actor", values, identifier=identifier)
    assert await ids(store, "Appointment", condition) == expected


@pytest.mark.parametrize(
    ("modifier", "values", "expected"),
    [
        ("", ("http://a.org/fhir",), {"base"}),
        ("", ("http://a.org/fhir", "http://b.org"), {"base", "b"}),
        ("below", ("http://a.org/fhir",), {"base", "deep"}),
        ("below", ("http://a.org/fhir/",), {"deep"}),
        ("above", ("http://a.org/fhir/ValueSet/x/y",), {"base", "deep"}),
        ("above", ("http://a.org/fhir",), {"base"}),
        ("above", ("http://a.org",), set()),
    ],
)
async def test_search_uri_equals_below_above_match_per_semantics(
    store: ResourceStore,
    modifier: Literal["", "below", "above"],
    values: tuple[str, ...],
    expected: set[str],
) -> None:
    await create(store, "ValueSet", "base", UriEntry("url", "http://a.org/fhir"))
    await create(store, "ValueSet", "deep", UriEntry("url", "http://a.org/fhir/ValueSet/x"))
    await create(store, "ValueSet", "b", UriEntry("url", "http://b.org"))
    condition = UriCondition("url", values, modifier)
    assert await ids(store, "ValueSet", condition) == expected


@pytest.mark.parametrize(
    ("param", "param_type", "missing", "expected"),
    [
        ("service-type", "token", True, {"plain", "other"}),
        ("service-type", "token", False, {"typed"}),
        ("start", "date", True, {"typed", "other"}),
        ("start", "date", False, {"plain"}),
        ("schedule", "reference", True, {"typed", "plain"}),
        ("schedule", "reference", False, {"other"}),
    ],
)
async def test_search_missing_true_false_matches_absence_presence(
    store: ResourceStore, param: str, param_type: ParamType, missing: bool, expected: set[str]
) -> None:
    await create(store, "Slot", "typed", tok("service-type", SYS, "x"))
    await create(store, "Slot", "plain", DateEntry("start", T0, T0 + DAY))
    await create(store, "Slot", "other", ref("schedule", "Schedule", "1"), tok("status", None, "x"))
    condition = MissingCondition(param, param_type, missing)
    assert await ids(store, "Slot", condition) == expected


async def test_search_compartment_matches_members_only(store: ResourceStore) -> None:
    await create(store, "Appointment", "a", comps=["Patient/1", "Practitioner/7"])
    await create(store, "Appointment", "b", comps=["Patient/2"])
    await create(store, "Appointment", "c")
    assert await ids(store, "Appointment", CompartmentCondition("Patient/1")) == {"a"}
    assert await ids(store, "Appointment", CompartmentCondition("Practitioner/7")) == {"a"}
    assert await ids(store, "Appointment", CompartmentCondition("Patient/3")) == set()


# -- search: chain and _has ---------------------------------------------------------------------


async def test_search_chain_matches_references_to_matching_targets(store: ResourceStore) -> None:
    await create(store, "Schedule", "s1", ref("actor", "Practitioner", "7"))
    await create(store, "Schedule", "s2", ref("actor", "Practitioner", "8"))
    s3 = await create(store, "Schedule", "s3", ref("actor", "Practitioner", "7"))
    await delete(store, s3)
    await create(store, "Location", "s1", ref("actor", "Practitioner", "7"))
    await create(store, "Slot", "slot1", ref("schedule", "Schedule", "s1"))
    await create(store, "Slot", "slot2", ref("schedule", "Schedule", "s2"))
    await create(store, "Slot", "slot3", ref("schedule", "Schedule", "s1"))
    await create(store, "Slot", "slot4", ref("schedule", "Schedule", "s3"))
    await create(store, "Slot", "slot5", ref("schedule", "Location", "s1"))
    await create(store, "Slot", "slot6", ref("other", "Schedule", "s1"))
    actor7 = ReferenceCondition("actor", (ReferenceValue("Practitioner", "7"),))
    chain = ChainCondition("schedule", "Schedule", actor7)
    assert await ids(store, "Slot", chain) == {"slot1", "slot3"}
    assert await store.count("Slot", [chain]) == 2
    nobody = ReferenceCondition("actor", (ReferenceValue("Practitioner", "0"),))
    assert await ids(store, "Slot", ChainCondition("schedule", "Schedule", nobody)) == set()


async def test_search_chain_two_levels_matches(store: ResourceStore) -> None:
    await create(store, "Practitioner", "p7", StringEntry("name", "smith", "Smith"))
    await create(store, "Practitioner", "p8", StringEntry("name", "jones", "Jones"))
    await create(store, "Schedule", "s1", ref("actor", "Practitioner", "p7"))
    await create(store, "Schedule", "s2", ref("actor", "Practitioner", "p8"))
    await create(store, "Slot", "slot1", ref("schedule", "Schedule", "s1"))
    await create(store, "Slot", "slot2", ref("schedule", "Schedule", "s2"))
    smith = StringCondition("name", ("smi",))
    inner = ChainCondition("actor", "Practitioner", smith)
    assert await ids(store, "Slot", ChainCondition("schedule", "Schedule", inner)) == {"slot1"}


async def test_search_has_matches_targets_of_matching_sources(store: ResourceStore) -> None:
    for pid in ("p1", "p2", "p3", "p4"):
        await create(store, "Patient", pid)
    booked = tok("status", None, "booked")
    await create(store, "Appointment", "a1", ref("actor", "Patient", "p1"), booked)
    await create(
        store, "Appointment", "a2", ref("actor", "Patient", "p2"), tok("status", None, "cancelled")
    )
    await create(store, "Appointment", "a3", ref("actor", "Practitioner", "p3"), booked)
    a4 = await create(store, "Appointment", "a4", ref("actor", "Patient", "p2"), booked)
    await delete(store, a4)
    await create(store, "Appointment", "a5", ref("location", "Patient", "p4"), booked)
    await create(store, "Slot", "a6", ref("actor", "Patient", "p4"), booked)
    has = HasCondition(
        "Appointment", "actor", TokenCondition("status", (TokenValue("*", "booked"),))
    )
    assert await ids(store, "Patient", has) == {"p1"}
    assert await store.count("Patient", [has]) == 1
