"""FHIR invariants (`resources.invariants`), directly and through `validate_resource` (422)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from resources.errors import Issue, Unprocessable
from resources.invariants import INVARIANTS, check_invariants, instant_bounds, invariant
from resources.validation import validate_resource

XHTML = 'xmlns="http://www.w3.org/1999/xhtml"'
ACTOR = {"actor": {"reference": "Patient/1"}, "status": "accepted"}


def appointment(**fields: Any) -> dict[str, Any]:
    return {"resourceType": "Appointment", "participant": [ACTOR], **fields}


def slot(start: str, end: str) -> dict[str, Any]:
    return {
        "resourceType": "Slot",
        "schedule": {"reference": "Schedule/1"},
        "status": "free",
        "start": start,
        "end": end,
    }


def refused(resource: dict[str, Any]) -> list[tuple[str, tuple[str, ...], str]]:
    """The (code, expression, key) of each issue of the 422 `validate_resource` raises."""
    with pytest.raises(Unprocessable) as caught:
        validate_resource(resource)
    assert caught.value.status == 422
    return [(i.code, i.expression, i.diagnostics.split(":")[0]) for i in caught.value.issues]


def found(issues: list[Issue]) -> list[tuple[str, tuple[str, ...]]]:
    return [(i.code, i.expression) for i in issues]


# --- Appointment -----------------------------------------------------------------------------

START, END = "2026-12-01T09:00:00Z", "2026-12-01T09:30:00Z"


def test_appointment_booked_with_times_valid() -> None:
    validate_resource(appointment(status="booked", start=START, end=END))


def test_appointment_participant_without_type_or_actor_app1() -> None:
    resource = appointment(status="booked", start=START, end=END)
    resource["participant"] = [ACTOR, {"status": "accepted", "required": "required"}]
    assert refused(resource) == [("invariant", ("Appointment.participant[1]",), "app-1")]


def test_appointment_start_without_end_app2_and_app3() -> None:
    assert refused(appointment(status="booked", start=START)) == [
        ("invariant", ("Appointment",), "app-2"),
        ("invariant", ("Appointment",), "app-3"),
    ]


def test_appointment_proposed_start_without_end_app2_only() -> None:
    assert refused(appointment(status="proposed", end=END)) == [
        ("invariant", ("Appointment",), "app-2")
    ]


def test_appointment_booked_without_times_app3() -> None:
    assert refused(appointment(status="booked")) == [("invariant", ("Appointment",), "app-3")]


@pytest.mark.parametrize("status", ["proposed", "cancelled", "waitlist"])
def test_appointment_without_times_allowed_status_valid(status: str) -> None:
    validate_resource(appointment(status=status))


def test_appointment_cancelation_reason_when_booked_app4() -> None:
    resource = appointment(status="booked", start=START, end=END, cancelationReason={"text": "x"})
    assert refused(resource) == [("invariant", ("Appointment.cancelationReason",), "app-4")]


@pytest.mark.parametrize("status", ["cancelled", "noshow"])
def test_appointment_cancelation_reason_when_cancelled_or_noshow_valid(status: str) -> None:
    validate_resource(
        appointment(status=status, start=START, end=END, cancelationReason={"text": "x"})
    )


def test_appointment_start_after_end_app5() -> None:
    resource = appointment(status="booked", start=END, end=START)
    assert refused(resource) == [("invariant", ("Appointment.start", "Appointment.end"), "app-5")]


def test_appointment_start_equals_end_in_other_offset_valid() -> None:
    validate_resource(
        appointment(status="booked", start="2026-12-01T10:00:00+01:00", end="2026-12-01T09:00:00Z")
    )


def test_appointment_in_transaction_bundle_expression_is_nested() -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:0f6b9c1e-3f5e-4a57-9d57-1b2f0d1c2a3b",
                "resource": appointment(status="booked"),
                "request": {"method": "POST", "url": "Appointment"},
            }
        ],
    }
    assert refused(bundle) == [("invariant", ("Bundle.entry[0].resource",), "app-3")]


def test_appointment_response_without_participant_type_or_actor_apr1() -> None:
    resource = {
        "resourceType": "AppointmentResponse",
        "appointment": {"reference": "Appointment/1"},
        "participantStatus": "accepted",
    }
    assert refused(resource) == [("invariant", ("AppointmentResponse",), "apr-1")]


# --- Slot and Period -------------------------------------------------------------------------


def test_slot_start_before_end_valid() -> None:
    validate_resource(slot(START, END))


@pytest.mark.parametrize(
    ("start", "end"),
    [(START, START), (END, START), ("2026-12-01T10:00:00+01:00", "2026-12-01T09:00:00Z")],
)
def test_slot_start_not_before_end_invariant(start: str, end: str) -> None:
    assert refused(slot(start, end)) == [
        ("invariant", ("Slot.start", "Slot.end"), "Slot.start SHALL be before Slot.end")
    ]


def test_period_start_after_end_per1() -> None:
    schedule = {
        "resourceType": "Schedule",
        "actor": [{"reference": "Practitioner/1"}],
        "planningHorizon": {"start": "2026-02-01", "end": "2026-01-31"},
    }
    assert refused(schedule) == [("invariant", ("Schedule.planningHorizon",), "per-1")]


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("2026", "2026-06"),  # overlapping precisions
        ("2026-01-01", "2026-01-01"),
        ("2026-01-02", "2026-01-01T23:00:00-10:00"),  # may start before that instant
        ("2026-01-02", "2026-01"),  # different precisions: not comparable
        ("2026-01-01T10:00:00Z", "2026-01-01"),
    ],
)
def test_period_start_maybe_before_end_valid(start: str, end: str) -> None:
    assert check_invariants("Period", {"start": start, "end": end}, "Period") == []


# --- Narrative -------------------------------------------------------------------------------


def narrative_issues(div: str) -> list[tuple[str, tuple[str, ...], str]]:
    issues = check_invariants("Narrative", {"status": "generated", "div": div}, "Patient.text")
    return [(i.code, i.expression, i.diagnostics.split(":")[0]) for i in issues]


@pytest.mark.parametrize(
    "div",
    [
        f"<div {XHTML}><p>Jane <b>Doe</b></p><table><tr><td>1</td></tr></table></div>",
        f'<div {XHTML}><img src="#a" alt=""/></div>',
        f'<div {XHTML}><a href="https://example.org">x</a><!-- note --></div>',
    ],
)
def test_narrative_basic_xhtml_valid(div: str) -> None:
    assert narrative_issues(div) == []


@pytest.mark.parametrize(
    "div",
    [
        f"<div {XHTML}>x<script>alert(1)</script></div>",
        f'<div {XHTML}><p onclick="alert(1)">x</p></div>',
        f'<div {XHTML}><a href=" JavaScript:alert(1)">x</a></div>',
        f"<div {XHTML}><form>x</form></div>",
        f"<div {XHTML}><?php echo 1 ?>x</div>",
        f"<p {XHTML}>x</p>",
        "<div>no namespace</div>",
        f"<div {XHTML}>unclosed",
        f"<!DOCTYPE div><div {XHTML}>x</div>",
    ],
)
def test_narrative_unsafe_or_malformed_txt1(div: str) -> None:
    assert narrative_issues(div) == [("invariant", ("Patient.text.div",), "txt-1")]


def test_narrative_whitespace_only_txt2() -> None:
    assert narrative_issues(f"<div {XHTML}> <p> </p> </div>") == [
        ("invariant", ("Patient.text.div",), "txt-2")
    ]


# --- Bundle ----------------------------------------------------------------------------------

PATIENT = {"resourceType": "Patient", "id": "1"}


def bundle_issues(kind: str, *entries: dict[str, Any], **fields: Any) -> list[Any]:
    node = {"type": kind, "entry": list(entries), **fields}
    return found(check_invariants("Bundle", node, "Bundle"))


def test_bundle_searchset_consistent_valid() -> None:
    entry = {"fullUrl": "http://x.org/fhir/Patient/1", "resource": PATIENT, "search": {}}
    assert bundle_issues("searchset", entry, total=1) == []


def test_bundle_rules_each_broken_whole_issue_list() -> None:
    entries = (
        {"fullUrl": "urn:uuid:1", "resource": PATIENT, "search": {"mode": "match"}},
        {"fullUrl": "urn:uuid:1", "resource": PATIENT, "response": {"status": "200"}},
        {"fullUrl": "http://x.org/Patient/1/_history/2", "resource": PATIENT},
        {"fullUrl": "Patient/1", "resource": PATIENT},
        {"fullUrl": "http://x.org/fhir/Patient/2", "resource": PATIENT},
        {"fullUrl": "urn:uuid:2"},
    )
    assert bundle_issues("collection", *entries, total=3) == [
        ("invariant", ("Bundle.total",)),  # bdl-1
        ("invariant", ("Bundle.entry[0]",)),  # bdl-2
        ("invariant", ("Bundle.entry[1]",)),  # bdl-4
        ("invariant", ("Bundle.entry[1].fullUrl",)),  # bdl-7
        ("invariant", ("Bundle.entry[2].fullUrl",)),  # bdl-8
        ("invalid", ("Bundle.entry[3].fullUrl",)),  # not absolute
        ("invalid", ("Bundle.entry[4].fullUrl",)),  # RESTful URL disagrees with the id
        ("invariant", ("Bundle.entry[5]",)),  # bdl-5
    ]


def test_bundle_transaction_entry_without_request_bdl3() -> None:
    assert bundle_issues("transaction", {"fullUrl": "urn:uuid:1", "resource": PATIENT}) == [
        ("invariant", ("Bundle.entry[0]",))
    ]


def test_bundle_history_same_full_url_two_versions_valid() -> None:
    entry = {
        "fullUrl": "http://x.org/Patient/1",
        "resource": PATIENT,
        "request": {"method": "PUT", "url": "Patient/1"},
        "response": {"status": "200"},
    }
    assert bundle_issues("history", entry, entry) == []


# --- instant_bounds and the registry ---------------------------------------------------------


def test_instant_bounds_instant_exact() -> None:
    moment = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    assert instant_bounds("2026-12-01T09:00:00+01:00") == (moment, moment)


def test_instant_bounds_month_widened_by_zone_range() -> None:
    low, high = instant_bounds("2024-02") or (None, None)
    assert low == datetime(2024, 2, 1, tzinfo=UTC) - timedelta(hours=14)
    assert high == datetime(2024, 3, 1, 12, tzinfo=UTC) - timedelta(microseconds=1)


@pytest.mark.parametrize("value", [None, 5, "", "soon", "2026-13", "2026-12-01T25:00:00Z"])
def test_instant_bounds_not_a_date_none(value: object) -> None:
    assert instant_bounds(value) is None


@pytest.fixture
def registered() -> Iterator[str]:
    name = "TestOnlyType"

    @invariant(name)
    def _always(node: dict[str, Any], path: str) -> list[Issue]:
        return [Issue("invariant", f"tst-1: {node['x']}", expression=(path,))]

    yield name
    del INVARIANTS[name]


def test_check_invariants_registered_check_runs(registered: str) -> None:
    assert found(check_invariants(registered, {"x": 1}, "A.b")) == [("invariant", ("A.b",))]


def test_check_invariants_unregistered_type_no_issues() -> None:
    assert check_invariants("Patient", {"anything": 1}, "Patient") == []
