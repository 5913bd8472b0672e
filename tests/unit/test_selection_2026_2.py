"""Rule set 2026.2 selection and data decisions D3-D6, D27 and D28 (docs/rules.md sections 1 and 7).

Every case goes through ``evaluate`` and asserts what a reader sees: whether ferritin 10 ug/L (below the
iron-deficiency threshold 15) or 200 ug/L was the result judged, the GFR category, or the not-evaluable
reason with its exact detail. Both sides of each boundary are tested.
"""

from __future__ import annotations

from typing import Any

import pytest
from engine_helpers import (
    AS_OF,
    EGFR_TIER_1,
    EGFR_TIER_3,
    EGFR_UNIT,
    FERRITIN,
    HEMOGLOBIN,
    IRON,
    LOINC_SYSTEM,
    TIBC,
    UCUM,
    assess,
    day,
    knowledge,
    not_evaluable,
    obs,
)

from rls_screen.model import Assessment
from rls_screen.quantities import format_number

pytestmark = pytest.mark.unit

IRON_PANEL = "50190-6"  # LOINC "Iron and Iron binding capacity panel": not an analyte of ours (a panel)


def _ferritin(value: float, id: str, *, status: str = "final", **dates: Any) -> dict[str, Any]:
    resource = obs(FERRITIN, value, "ug/L", effective=None, status=status, id=id)
    resource.update(dates)
    return resource


def _judged(assessment: Assessment) -> float | None:
    """The ferritin value the iron rules judged, or None when there was none."""
    for finding in (*assessment.findings, *assessment.advisories):
        for value in finding.values:
            if value.analyte == "ferritin":
                return value.value.value
    return None


def _details(assessment: Assessment, analyte: str) -> list[tuple[str, str]]:
    return [(n.reason, n.detail) for n in not_evaluable(assessment, analyte=analyte)]


def _details_of(assessment: Assessment, reference: str) -> list[tuple[str, str]]:
    return [(n.reason, n.detail) for n in not_evaluable(assessment, observation=reference)]


def _at(days_ago: int, time: str = "08:00:00Z") -> str:
    return f"{day(days_ago).isoformat()}T{time}"


# --- D4 effective date: dateTime, else period end, else period start, else issued; partial dates -------


@pytest.mark.parametrize(
    ("dates", "used"),
    [
        ({"effectivePeriod": {"start": day(10).isoformat()}}, True),  # a period with a start only
        ({"effectivePeriod": {"start": day(400).isoformat()}, "issued": _at(10)}, False),  # start before issued
        ({"effectivePeriod": {"start": day(10).isoformat()}, "issued": _at(400)}, True),
        ({"effectivePeriod": {"start": day(400).isoformat(), "end": day(10).isoformat()}}, True),  # end first
        # D27: a partial effective date falls back to a full issued...
        ({"effectiveDateTime": AS_OF.isoformat()[:7], "issued": _at(10)}, True),
        ({"effectiveDateTime": AS_OF.isoformat()[:7], "issued": _at(400)}, False),  # ...which is then windowed
        ({"effectiveDateTime": "2025", "issued": _at(10)}, True),
        ({"effectivePeriod": {"end": "2026-03"}, "issued": _at(10)}, True),
        ({"effectiveDateTime": day(10).isoformat()}, True),  # day precision is enough
    ],
)
def test_d4_effective_date_order_and_partial_fallback(dates: dict[str, Any], used: bool) -> None:
    assert (_judged(assess([_ferritin(10, "f", **dates)])) == 10) is used


@pytest.mark.parametrize(
    ("dates", "reason", "detail"),
    [
        ({"effectiveDateTime": "2026"}, "date-too-imprecise", "date too imprecise: 2026 (year only)"),
        ({"effectiveDateTime": "2026-03"}, "date-too-imprecise", "date too imprecise: 2026-03 (year-month only)"),
        (
            {"effectivePeriod": {"start": "2026-02"}},
            "date-too-imprecise",
            "date too imprecise: 2026-02 (year-month only)",
        ),
        # a partial issued is no full date to fall back to
        (
            {"effectiveDateTime": "2026-03", "issued": "2026"},
            "date-too-imprecise",
            "date too imprecise: 2026-03 (year-month only)",
        ),
        ({"issued": "2026-01"}, "date-too-imprecise", "date too imprecise: 2026-01 (year-month only)"),
        # not a date at all: no fall-back, and not "imprecise"
        (
            {"effectiveDateTime": "2026-02-30", "issued": _at(10)},
            "no-effective-date",
            "effective date is not a readable date",
        ),
        ({"effectiveDateTime": "2026-13"}, "no-effective-date", "effective date is not a readable date"),
        ({}, "no-effective-date", "no effective date or issued time"),
    ],
)
def test_d4_partial_or_missing_date_is_not_used(dates: dict[str, Any], reason: str, detail: str) -> None:
    assessment = assess([_ferritin(10, "f", **dates)])
    assert _judged(assessment) is None
    assert _details_of(assessment, "Observation/f") == [(reason, detail)]


@pytest.mark.parametrize(
    ("dates", "kept"),
    [
        ({"effectiveDateTime": "2026-03", "issued": _at(365)}, True),  # the partial date falls back to issued
        ({"effectiveDateTime": "2026-03", "issued": _at(366)}, False),
        ({"effectivePeriod": {"start": day(366).isoformat()}, "issued": _at(10)}, False),  # D4: start before issued
        ({"effectiveDateTime": "2026-03"}, True),  # kept, so the engine can say why it is not used
        ({}, True),
    ],
)
def test_d4_the_contract_window_dates_as_the_engine_does(dates: dict[str, Any], kept: bool) -> None:
    assert knowledge().contract.wanted(_ferritin(10, "f", **dates), AS_OF) is kept


# --- D28 the window includes day 365 (every way a result can be dated) --------------------------------


@pytest.mark.parametrize(
    ("days_ago", "used"),
    [(365, True), (366, False)],
)
@pytest.mark.parametrize(
    "dated",
    [
        lambda n: {"effectiveDateTime": day(n).isoformat()},
        lambda n: {"effectiveDateTime": _at(n, "23:59:59+14:00")},
        lambda n: {"effectivePeriod": {"start": day(n).isoformat()}},
        lambda n: {"effectiveDateTime": "2025", "issued": _at(n)},
    ],
    ids=["dateTime", "timed", "period-start", "partial-then-issued"],
)
def test_d28_window_boundary_is_inclusive(dated: Any, days_ago: int, used: bool) -> None:
    assessment = assess([_ferritin(10, "f", **dated(days_ago))])
    assert (_judged(assessment) == 10) is used
    expected = [] if used else [("stale", "366 days old (window 365 days)")]
    assert _details_of(assessment, "Observation/f") == expected
    assert knowledge().contract.wanted(_ferritin(10, "f", **dated(days_ago)), AS_OF) is used


# --- D3 same instant: corrected/amended over final, then later issued, else a conflict ------------------


@pytest.mark.parametrize("correction", ["corrected", "amended"])
@pytest.mark.parametrize(("final_value", "corrected_value"), [(10, 200), (200, 10)])
def test_d3_corrected_or_amended_supersedes_final_at_the_same_instant(
    correction: str, final_value: float, corrected_value: float
) -> None:
    # the final one was issued later: status decides before issued
    final = _ferritin(final_value, "zz-final", effectiveDateTime=_at(5), issued=_at(3))
    fixed = _ferritin(corrected_value, "aa-fixed", status=correction, effectiveDateTime=_at(5), issued=_at(4))
    for order in ([final, fixed], [fixed, final]):
        assessment = assess(order)
        assert _judged(assessment) == corrected_value
        assert [n.reason for n in not_evaluable(assessment, analyte="ferritin")] == []


@pytest.mark.parametrize(("earlier_issued", "later_issued"), [(10, 200), (200, 10)])
def test_d3_then_the_later_issued_wins(earlier_issued: float, later_issued: float) -> None:
    first = _ferritin(earlier_issued, "zz-first", effectiveDateTime=_at(5), issued=_at(4, "09:00:00Z"))
    second = _ferritin(later_issued, "aa-second", effectiveDateTime=_at(5), issued=_at(4, "09:00:01Z"))
    assert _judged(assess([first, second])) == later_issued
    assert _judged(assess([second, first])) == later_issued


def test_d3_corrected_results_tied_on_status_go_to_the_later_issued() -> None:
    earlier = _ferritin(10, "zz-earlier", status="corrected", effectiveDateTime=_at(5), issued=_at(3))
    later = _ferritin(200, "aa-later", status="amended", effectiveDateTime=_at(5), issued=_at(2))
    assert _judged(assess([earlier, later])) == 200


@pytest.mark.parametrize(
    ("a", "b", "conflict"),
    [
        (10, 200, True),
        (14.9, 15, True),  # either side of ferritin < 15
        (15, 16, False),  # the same side of every ferritin threshold (12, 15, 30, 50, 70, 75, 100, 200, 300)
        (75, 75.1, True),  # either side of ferritin <= 75
        (74, 75, False),
        (10, 10, False),
        (10, 12, True),  # either side of ferritin < 12 (under 5, D9): every ferritin threshold counts, any age
        (10, 11, False),
    ],
)
def test_d3_still_tied_values_across_a_threshold_are_indeterminate(a: float, b: float, conflict: bool) -> None:
    one = _ferritin(a, "f-a", effectiveDateTime=_at(5))
    other = _ferritin(b, "f-b", effectiveDateTime=_at(5), issued=_at(4))  # issued decides only when both carry it
    assessment = assess([one, other])
    if conflict:
        assert _judged(assessment) is None
        detail = (
            "conflicting results at the same time: "
            f"Observation/f-a ({format_number(a)} ug/L) and Observation/f-b ({format_number(b)} ug/L)"
        )
        assert _details(assessment, "ferritin") == [("indeterminate", detail)]  # indeterminate, not missing
    else:
        assert _judged(assessment) in (a, b)
        assert _details(assessment, "ferritin") == []


@pytest.mark.parametrize(
    ("one_time", "other_time", "tied"),
    [
        ("08:00:00Z", "08:00:00Z", True),  # the same instant
        ("10:00:00+02:00", "08:00:00Z", True),  # the same instant in another offset
        ("08:00:00Z", "08:00:01Z", False),  # a second later: the later wins, D3 does not apply
    ],
)
def test_d3_applies_to_the_same_instant_only(one_time: str, other_time: str, tied: bool) -> None:
    one = _ferritin(10, "f-a", status="corrected", effectiveDateTime=_at(5, one_time))
    other = _ferritin(200, "f-b", effectiveDateTime=_at(5, other_time))
    assert _judged(assess([one, other])) == (10 if tied else 200)


@pytest.mark.parametrize(("a", "b", "category"), [(55, 65, None), (61, 89, "G2")])
def test_d3_egfr_conflict_across_a_category_boundary(a: float, b: float, category: str | None) -> None:
    one = obs(EGFR_TIER_1[0], a, EGFR_UNIT, days_ago=5, at="08:00:00Z", id="e-a")
    other = obs(EGFR_TIER_1[0], b, EGFR_UNIT, days_ago=5, at="08:00:00Z", id="e-b")
    assessment = assess([one, other])
    assert assessment.gfr_category == category
    reasons = [n.reason for n in not_evaluable(assessment, analyte="egfr")]
    assert reasons == (["indeterminate"] if category is None else [])


# --- D27 same day: date-only and timed tie; issued only when both carry it; eGFR tiers first -------------


@pytest.mark.parametrize(
    ("date_only_issued", "timed_issued", "expected"),
    [
        (None, None, None),  # a tie: 10 and 200 are on different sides of 15
        (_at(4), None, None),  # issued on one only does not decide
        (None, _at(4), None),
        (_at(4, "10:00:00Z"), _at(4, "09:00:00Z"), 10),  # both carry it: the later issued wins
        (_at(4, "09:00:00Z"), _at(4, "10:00:00Z"), 200),
    ],
)
def test_d27_date_only_and_timed_results_of_one_day_tie(
    date_only_issued: str | None, timed_issued: str | None, expected: float | None
) -> None:
    date_only = _ferritin(10, "f-date", effectiveDateTime=day(5).isoformat())
    timed = _ferritin(200, "f-timed", effectiveDateTime=_at(5, "17:00:00Z"))
    if date_only_issued:
        date_only["issued"] = date_only_issued
    if timed_issued:
        timed["issued"] = timed_issued
    assessment = assess([date_only, timed])
    assert _judged(assessment) == expected
    if expected is None:
        assert _details(assessment, "ferritin") == [
            (
                "indeterminate",
                "conflicting results at the same time: Observation/f-date (10 ug/L) and Observation/f-timed (200 ug/L)",
            )
        ]


@pytest.mark.parametrize(
    ("date_only_day", "timed_day", "expected"),
    [(5, 5, 10), (4, 5, 10), (5, 4, 200)],  # the same day ties (status decides); different days do not
)
def test_d27_only_results_of_one_day_tie(date_only_day: int, timed_day: int, expected: float) -> None:
    date_only = _ferritin(10, "f-date", status="corrected", effectiveDateTime=day(date_only_day).isoformat())
    timed = _ferritin(200, "f-timed", effectiveDateTime=_at(timed_day, "23:59:00Z"))
    assert _judged(assess([date_only, timed])) == expected


@pytest.mark.parametrize(
    ("other_code", "category"),
    [
        (EGFR_TIER_3[0], "G3a"),  # a lower tier: the tier decides, whatever its status and issued
        (EGFR_TIER_1[0], "G2"),  # the same tier: D3, the corrected result supersedes
    ],
)
def test_d27_egfr_tiers_apply_before_d3(other_code: str, category: str) -> None:
    final = obs(EGFR_TIER_1[0], 50, EGFR_UNIT, days_ago=5, at="08:00:00Z", id="e-9")
    corrected = obs(other_code, 70, EGFR_UNIT, days_ago=5, at="08:00:00Z", status="corrected", issued=_at(1), id="e-0")
    assessment = assess([corrected, final])
    assert assessment.gfr_category == category
    assert not_evaluable(assessment, analyte="egfr") == []


# --- D5 components ---------------------------------------------------------------------------------------


def _panel(*components: dict[str, Any], status: str = "final", days_ago: int = 10, code: str = IRON_PANEL) -> dict:
    return {
        "resourceType": "Observation",
        "id": "panel",
        "status": status,
        "code": {"coding": [{"system": LOINC_SYSTEM, "code": code}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": day(days_ago).isoformat(),
        "component": list(components),
    }


def _component(code: str, value: float, unit: str) -> dict[str, Any]:
    return {
        "code": {"coding": [{"system": LOINC_SYSTEM, "code": code}]},
        "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
    }


def test_d5_component_is_a_result_citing_the_parent_and_its_code() -> None:
    assessment = assess([_panel(_component(FERRITIN, 10, "ug/L"))])
    finding = assessment.finding("iron-deficiency")
    assert finding is not None
    assert finding.basis == ("Observation/panel",)
    [value] = finding.values
    assert (value.component, value.reported, value.effective) == (FERRITIN, "10 ug/L", day(10))
    assert value.to_json()["component"] == FERRITIN
    assert [n.reason for n in assessment.not_evaluable if n.observation == "Observation/panel"] == []


def test_d5_components_of_one_panel_are_separate_results() -> None:
    # serum iron 50 / TIBC 400 x 100 = TSAT 12.5 %, below 20 %
    assessment = assess([_panel(_component(IRON, 50, "ug/dL"), _component(TIBC, 400, "ug/dL"))])
    assert not [n for n in not_evaluable(assessment, analyte="tsat") if n.reason == "missing"]
    assert {v.component for f in assessment.findings for v in f.values if v.component} <= {IRON, TIBC}


@pytest.mark.parametrize(
    ("panel", "reason", "detail"),
    [
        (
            _panel(_component(FERRITIN, 10, "ug/L"), status="preliminary"),
            "pending",
            "component 2276-4: status preliminary: result pending, not used",
        ),
        (
            _panel(_component(FERRITIN, 10, "ug/L"), days_ago=366),
            "stale",
            "component 2276-4: 366 days old (window 365 days)",
        ),
        (
            _panel(_component(FERRITIN, 10, "mg")),
            "unit-not-understood",
            "component 2276-4: UCUM unit 'mg' is not a unit this module converts for ferritin",
        ),
        (
            _panel(
                {"code": {"coding": [{"system": LOINC_SYSTEM, "code": FERRITIN}]}, "dataAbsentReason": {"text": "x"}}
            ),
            "no-value",
            "component 2276-4: no value (data absent reason: given)",
        ),
    ],
)
def test_d5_component_takes_the_parents_status_and_date(panel: dict, reason: str, detail: str) -> None:
    assessment = assess([panel])
    assert assessment.finding("iron-deficiency") is None
    assert _details_of(assessment, "Observation/panel") == [(reason, detail)]
    assert [n.analyte for n in not_evaluable(assessment, observation="Observation/panel")] == ["ferritin"]


@pytest.mark.parametrize(
    ("code", "problems"),
    [
        (FERRITIN, []),  # a panel of our analytes is not an unknown code
        ("2075-0", [("unknown-code", "test code 50190-6 is not one this module screens")]),  # chloride: not ours
    ],
)
def test_d5_a_panel_is_unknown_only_without_our_components(code: str, problems: list) -> None:
    panel = _panel(_component(code, 5.0, "ug/L"))
    assert _details_of(assess([panel]), "Observation/panel") == problems


def test_d5_an_analyte_parent_and_its_component_are_both_results() -> None:
    parent = _panel(_component(FERRITIN, 200, "ug/L"), code=HEMOGLOBIN)
    parent["valueQuantity"] = {"value": 100, "unit": "g/L", "system": UCUM, "code": "g/L"}
    assessment = assess([parent])
    assert assessment.finding("anemia") is not None
    assert _judged(assessment) == 200


def test_d5_component_and_parent_conflict_name_the_component() -> None:
    parent = _panel(_component(FERRITIN, 200, "ug/L"), code=FERRITIN)
    parent["valueQuantity"] = {"value": 10, "unit": "ug/L", "system": UCUM, "code": "ug/L"}
    assert _details(assess([parent]), "ferritin") == [
        (
            "indeterminate",
            "conflicting results at the same time: Observation/panel (10 ug/L) and "
            "Observation/panel component 2276-4 (200 ug/L)",
        )
    ]


# --- D6 unit text without a system ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("quantity", "reported", "problem"),
    [
        ({"value": 11, "unit": "g/dL"}, "11 g/dL (unit read from text)", None),  # exactly a UCUM code of the table
        ({"value": 110, "unit": "g/L"}, "110 g/L (unit read from text)", None),
        ({"value": 11, "unit": "g/dl"}, "11 g/dl", None),  # the alias table, as it was
        ({"value": 11, "unit": "g/dL", "system": UCUM, "code": "g/dL"}, "11 g/dL", None),  # a UCUM code
        ({"value": 11, "unit": "G/DL"}, None, "unit 'G/DL' is not understood for hemoglobin"),  # case-sensitive
        ({"value": 11, "unit": "g / dL"}, None, "unit 'g / dL' is not understood for hemoglobin"),
        ({"value": 11, "unit": "mg/dL"}, None, "unit 'mg/dL' is not understood for hemoglobin"),  # not Hb's table
    ],
)
def test_d6_unit_text_is_read_only_when_exactly_a_ucum_code(
    quantity: dict[str, Any], reported: str | None, problem: str | None
) -> None:
    assessment = assess([obs(HEMOGLOBIN, None, None, id="hb", valueQuantity=quantity)])
    finding = assessment.finding("anemia")
    if reported is None:
        assert finding is None
        assert _details_of(assessment, "Observation/hb") == [("unit-not-understood", problem)]
    else:
        assert finding is not None
        [value] = finding.values
        assert (value.reported, value.value.value) == (reported, pytest.approx(110.0))
