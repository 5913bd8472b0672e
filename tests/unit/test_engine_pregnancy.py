"""Pregnancy decisions of rule set 2026.2 (docs/rules.md section 1): D12 advisory, D17, D18, D28.

Boundaries on both sides: 13w6d / 14w0d, day 280 / 281 of a status without gestational age, 44w0d /
44w1d, 0 weeks when projected backwards, and a 'not pregnant' status before / after a Condition.
"""

from __future__ import annotations

import pytest
from engine_helpers import (
    HEMOGLOBIN,
    ICD10CM,
    SNOMED,
    advisory_codes,
    assess,
    condition,
    day,
    gestational_age,
    obs,
    patient,
    pregnancy_status,
)

pytestmark = pytest.mark.unit

WOMAN = patient("female", age_years=30)


def hb(value: float, *, days_ago: int = 10) -> dict:
    return obs(HEMOGLOBIN, value, "g/L", days_ago=days_ago)


def dated_condition(code: str, system: str = SNOMED, *, days_ago: int) -> dict:
    resource = condition(code, system)
    resource["recordedDate"] = day(days_ago).isoformat()
    resource["id"] = f"{resource['id']}-{days_ago}"
    return resource


# --- D17: pregnancy Conditions ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "system", "pregnant"),
    [
        ("77386006", SNOMED, True),
        ("72892002", SNOMED, True),
        ("47200007", SNOMED, True),
        ("16356006", SNOMED, True),
        ("237238006", SNOMED, True),
        ("Z33.1", ICD10CM, True),
        ("Z34.00", ICD10CM, True),
        ("Z34.93", ICD10CM, True),
        ("O09.523", ICD10CM, True),
        ("O09.A1", ICD10CM, True),
        ("Z33.2", ICD10CM, False),  # encounter for elective termination: not a pregnancy state
        ("O80", ICD10CM, False),
    ],
)
def test_d17_pregnancy_condition_codes(code: str, system: str, pregnant: bool) -> None:
    assert assess([], who=WOMAN, conditions=[condition(code, system)]).context.pregnant is pregnant


# --- D18: gestational age in whole days, trimester without rounding -----------------------------------


@pytest.mark.parametrize(
    ("weeks", "days_ago", "trimester", "days"),
    [
        (13, 6, 1, 97),  # 13w6d
        (13, 7, 2, 98),  # 14w0d
        (13.9, 0, 1, 97),  # 97.3 days: 13w6d, never "14 weeks"
        (27, 6, 2, 195),
        (27, 7, 3, 196),
    ],
)
def test_d18_trimester_on_whole_days(weeks: float, days_ago: int, trimester: int, days: int) -> None:
    context = assess(
        [pregnancy_status(days_ago=days_ago), gestational_age(weeks, days_ago=days_ago)], who=WOMAN
    ).context
    assert (context.trimester, context.gestational_age_days) == (trimester, days)


def test_d18_finding_uses_the_result_date_and_the_header_the_as_of_date() -> None:
    # 12 weeks recorded 20 days ago: 13w5d on the Hb date 8 days ago, 14w6d on the as-of date
    observations = [pregnancy_status(days_ago=20), gestational_age(12, days_ago=20), hb(107, days_ago=8)]
    assessment = assess(observations, who=WOMAN)
    assert assessment.context.trimester == 2  # 14w6d on the as-of date
    finding = assessment.finding("anemia")
    assert finding is not None  # 107 < 110: trimester 1 cut-off at 13w5d on the Hb date
    assert finding.note is not None
    assert "projected to 13w5d on the haemoglobin date" in finding.note


@pytest.mark.parametrize(("days_ago", "pregnant"), [(280, True), (281, False)])
def test_d18_d28_status_without_gestational_age_counts_280_days_inclusive(days_ago: int, pregnant: bool) -> None:
    assessment = assess([pregnancy_status(days_ago=days_ago)], who=WOMAN)
    assert assessment.context.pregnant is pregnant
    assert ("pregnancy-aggravator" in advisory_codes(assessment)) is pregnant
    if not pregnant:
        assert any(n.reason == "stale" and n.analyte == "pregnancy-status" for n in assessment.not_evaluable)


@pytest.mark.parametrize(("days_ago", "pregnant"), [(14, True), (15, False)])
def test_d18_with_gestational_age_while_at_most_44_weeks(days_ago: int, pregnant: bool) -> None:
    # 42 weeks recorded 14 days ago is 44w0d today (pregnant); 15 days ago is 44w1d (outdated)
    observations = [pregnancy_status(days_ago=days_ago), gestational_age(42, days_ago=days_ago)]
    assert assess(observations, who=WOMAN).context.pregnant is pregnant


def test_d18_gestational_age_outlives_the_280_days_of_a_bare_status() -> None:
    # 2 weeks recorded 290 days ago would be 43w3d today: still pregnant by gestational age
    observations = [pregnancy_status(days_ago=290), gestational_age(2, days_ago=290)]
    assert assess(observations, who=WOMAN).context.pregnant is True


def test_d18_a_later_not_pregnant_status_ends_a_bare_status() -> None:
    observations = [pregnancy_status(days_ago=100), pregnancy_status(False, days_ago=20)]
    assert assess(observations, who=WOMAN).context.pregnant is False


# --- D28: backwards projection, status dates, Conditions ----------------------------------------------


@pytest.mark.parametrize(
    ("hb_days_ago", "pregnant_at_hb"),
    [
        (35, True),  # 10 weeks recorded 5 days ago: 5w5d on the Hb date
        (75, True),  # 0w0d: pregnant
        (76, False),  # below 0 weeks: not pregnant then
    ],
)
def test_d28_gestational_age_projected_backwards(hb_days_ago: int, pregnant_at_hb: bool) -> None:
    # Hb 115: anaemia when not pregnant (< 120), not when pregnant (< 110)
    observations = [pregnancy_status(days_ago=5), gestational_age(10, days_ago=5), hb(115, days_ago=hb_days_ago)]
    assessment = assess(observations, who=WOMAN)
    assert (assessment.finding("anemia") is None) is pregnant_at_hb


@pytest.mark.parametrize(("hb_days_ago", "pregnant_at_hb"), [(30, False), (20, True), (10, True)])
def test_d28_bare_status_covers_only_days_from_its_own_date(hb_days_ago: int, pregnant_at_hb: bool) -> None:
    observations = [pregnancy_status(days_ago=20), hb(115, days_ago=hb_days_ago)]
    assert (assess(observations, who=WOMAN).finding("anemia") is None) is pregnant_at_hb


@pytest.mark.parametrize(
    ("condition_days_ago", "status_days_ago", "pregnant"),
    [
        (100, 20, False),  # a later 'not pregnant' status wins over the Condition recorded before it
        (20, 100, True),  # the Condition is newer
        (21, 20, False),
        (20, 21, True),
    ],
)
def test_d28_later_not_pregnant_status_wins_over_an_earlier_condition(
    condition_days_ago: int, status_days_ago: int, pregnant: bool
) -> None:
    assessment = assess(
        [pregnancy_status(False, days_ago=status_days_ago)],
        who=WOMAN,
        conditions=[dated_condition("77386006", days_ago=condition_days_ago)],
    )
    assert assessment.context.pregnant is pregnant
    assert ("pregnancy-aggravator" in advisory_codes(assessment)) is pregnant


def test_d12_d28_advisory_reads_pregnancy_at_the_evaluation_date() -> None:
    # pregnant at the Hb 200 days ago (bare status 250 days ago), not any more today (> 280 days)
    observations = [pregnancy_status(days_ago=290), hb(115, days_ago=200)]
    assessment = assess(observations, who=WOMAN)
    assert assessment.finding("anemia") is None  # pregnant at the Hb date
    assert "pregnancy-aggravator" not in advisory_codes(assessment)
    assert assessment.context.pregnant is False


def test_d12_advisory_basis_and_citation() -> None:
    status = pregnancy_status(days_ago=10)
    assessment = assess([status], who=WOMAN)
    [advisory] = [a for a in assessment.advisories if a.code == "pregnancy-aggravator"]
    assert advisory.basis == (f"Observation/{status['id']}",)
    assert any("Picchietti DL" in c and "Sleep Med Rev 2015;22:64-77" in c for c in advisory.citations)
