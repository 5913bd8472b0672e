"""Anaemia, docs/rules.md section 3 (WHO 2024 haemoglobin cut-offs), and the pregnancy facts of S6.

Cut-offs and severities are tested on both sides and at each boundary. Pregnancy status and
gestational age are drawn on the same day as the haemoglobin, so the trimester is the one reported.
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from engine_helpers import (
    HEMOGLOBIN,
    HEMOGLOBIN_MMOL,
    ICD10CM,
    SNOMED,
    advisory_codes,
    assess,
    birth_date_for,
    condition,
    day,
    gestational_age,
    not_evaluable,
    obs,
    patient,
    pregnancy,
    pregnancy_status,
    ref,
)

pytestmark = pytest.mark.unit


def hb(value: float, unit: str = "g/L", *, days_ago: int = 10, loinc: str = HEMOGLOBIN, **kw: object) -> dict:
    return obs(loinc, value, unit, days_ago=days_ago, **kw)


def anemia(observations: list[dict], **kw: object) -> tuple[bool, str | None]:
    finding = assess(observations, **kw).finding("anemia")
    return (finding is not None, finding.severity if finding else None)


# --- non-pregnant adults (>= 15 y) --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sex", "value", "expected"),
    [
        ("male", 150, (False, None)),
        ("male", 130, (False, None)),
        ("male", 129.9, (True, "mild")),
        ("male", 129, (True, "mild")),
        ("male", 110, (True, "mild")),
        ("male", 109.9, (True, "moderate")),
        ("male", 80, (True, "moderate")),
        ("male", 79.9, (True, "severe")),
        ("male", 40, (True, "severe")),
        ("female", 125, (False, None)),
        ("female", 120, (False, None)),
        ("female", 119.9, (True, "mild")),
        ("female", 119, (True, "mild")),
        ("female", 110, (True, "mild")),
        ("female", 109.9, (True, "moderate")),
        ("female", 80, (True, "moderate")),
        ("female", 79.9, (True, "severe")),
    ],
)
def test_adult_cutoffs_and_severity(sex: str, value: float, expected: tuple[bool, str | None]) -> None:
    assert anemia([hb(value)], who=patient(sex, age_years=40)) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "unit", "loinc", "anemic"),
    [
        (12.9, "g/dL", HEMOGLOBIN, True),
        (13.0, "g/dL", HEMOGLOBIN, False),
        (129, "g/L", HEMOGLOBIN, True),
        (130, "g/L", HEMOGLOBIN, False),
        (8.0, "mmol/L", HEMOGLOBIN_MMOL, True),  # 128.9 g/L
        (8.07, "mmol/L", HEMOGLOBIN_MMOL, False),  # 130.04 g/L
        (8.06, "mmol/L", HEMOGLOBIN_MMOL, True),  # 129.88 g/L
    ],
)
def test_hemoglobin_units(value: float, unit: str, loinc: str, anemic: bool) -> None:
    assert anemia([hb(value, unit, loinc=loinc)], who=patient("male", age_years=40))[0] is anemic


def test_hemoglobin_mmol_value_is_converted_with_16_114() -> None:
    finding = assess([hb(5, "mmol/L", loinc=HEMOGLOBIN_MMOL)], who=patient("male")).finding("anemia")
    assert finding is not None
    assert finding.values[0].value.value == pytest.approx(80.57)
    assert finding.values[0].unit == "g/L"
    assert finding.severity == "moderate"


@pytest.mark.parametrize(("sex", "threshold"), [("male", 130), ("female", 120)])
def test_anemia_finding_carries_threshold_and_basis(sex: str, threshold: float) -> None:
    h = hb(100)
    finding = assess([h], who=patient(sex)).finding("anemia")  # type: ignore[arg-type]
    assert finding is not None
    assert [(t.comparator, t.value, t.unit) for t in finding.thresholds] == [("<", threshold, "g/L")]
    assert finding.basis == (ref(h),)


def test_altitude_and_smoking_caveat_accompanies_anemia() -> None:
    assert "hemoglobin-altitude-smoking-caveat" in advisory_codes(assess([hb(100)]))


@pytest.mark.parametrize(("value", "anemic"), [(119, True), (125, None), (135, False)])
def test_unknown_sex_needs_both_cutoffs_to_agree(value: float, anemic: bool | None) -> None:
    assessment = assess([hb(value)], who=patient(None))
    if anemic is None:
        assert assessment.finding("anemia") is None
        assert not_evaluable(assessment, analyte="hemoglobin")
    else:
        assert (assessment.finding("anemia") is not None) is anemic


@pytest.mark.parametrize(
    ("comparator", "value", "expected"),
    [
        ("<", 70, (True, "severe")),
        ("<", 130, (True, None)),  # below 130 for sure; mild or worse, severity undecided
        (">", 140, (False, None)),
        (">=", 130, (False, None)),
    ],
)
def test_hemoglobin_bound(comparator: str, value: float, expected: tuple[bool, str | None]) -> None:
    assert anemia([hb(value, comparator=comparator)], who=patient("male")) == expected


# --- pregnancy ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("weeks", "value", "expected"),
    [
        # 1st trimester (< 14 weeks): < 110; mild 100-109, moderate 70-99, severe < 70
        (8, 110, (False, None)),
        (8, 109.9, (True, "mild")),
        (8, 109, (True, "mild")),
        (8, 100, (True, "mild")),
        (8, 99.9, (True, "moderate")),
        (8, 70, (True, "moderate")),
        (8, 69.9, (True, "severe")),
        (13.9, 107, (True, "mild")),
        # 2nd trimester (14-27 weeks): < 105; mild 95-104, moderate 70-94, severe < 70
        (14, 107, (False, None)),
        (14, 105, (False, None)),
        (14, 104.9, (True, "mild")),
        (20, 104, (True, "mild")),
        (20, 95, (True, "mild")),
        (20, 94.9, (True, "moderate")),
        (20, 70, (True, "moderate")),
        (20, 69.9, (True, "severe")),
        (27, 104.9, (True, "mild")),
        (27.9, 107, (False, None)),
        # 3rd trimester (>= 28 weeks): < 110; as the 1st
        (28, 107, (True, "mild")),
        (28, 110, (False, None)),
        (28, 109.9, (True, "mild")),
        (35, 100, (True, "mild")),
        (35, 99.9, (True, "moderate")),
        (35, 70, (True, "moderate")),
        (35, 69.9, (True, "severe")),
    ],
)
def test_pregnancy_cutoffs_by_trimester(weeks: float, value: float, expected: tuple[bool, str | None]) -> None:
    observations = [*pregnancy(weeks), hb(value)]
    assert anemia(observations, who=patient("female", age_years=30)) == expected


@pytest.mark.parametrize(("weeks", "trimester"), [(1, 1), (13.9, 1), (14, 2), (27.9, 2), (28, 3), (40, 3)])
def test_trimester_in_context(weeks: float, trimester: int) -> None:
    context = assess([*pregnancy(weeks, days_ago=0)], who=patient("female", age_years=30)).context
    assert context.pregnant is True
    assert context.trimester == trimester


@pytest.mark.parametrize(
    "pregnancy_condition",
    [condition("77386006", SNOMED), condition("Z33.1", ICD10CM)],
)
def test_active_pregnancy_condition_counts(pregnancy_condition: dict) -> None:
    # gestational age unknown: every trimester's cut-off says 100 g/L is anaemia and 112 is not
    who = patient("female", age_years=30)
    assert anemia([hb(100)], who=who, conditions=[pregnancy_condition])[0] is True
    assert anemia([hb(112)], who=who, conditions=[pregnancy_condition])[0] is False
    # non-pregnant, 112 g/L would be anaemia (< 120)
    assert anemia([hb(112)], who=who)[0] is True
    assert assess([], who=who, conditions=[pregnancy_condition]).context.pregnant is True


@pytest.mark.parametrize(
    ("clinical", "verification"),
    [("resolved", "confirmed"), ("inactive", "confirmed"), ("active", "refuted"), ("active", "entered-in-error")],
)
def test_inactive_or_refuted_pregnancy_condition_does_not_count(clinical: str, verification: str) -> None:
    pregnant = condition("77386006", SNOMED, clinical_status=clinical, verification_status=verification)
    assessment = assess([hb(112)], who=patient("female", age_years=30), conditions=[pregnant])
    assert assessment.context.pregnant is False
    assert assessment.finding("anemia") is not None


def test_not_pregnant_status_uses_non_pregnant_cutoff() -> None:
    observations = [pregnancy_status(False), hb(112)]
    assessment = assess(observations, who=patient("female", age_years=30))
    assert assessment.context.pregnant is False
    assert assessment.finding("anemia") is not None


def test_gestational_age_without_pregnant_status_is_not_pregnancy() -> None:
    assessment = assess([gestational_age(20), hb(112)], who=patient("female", age_years=30))
    assert assessment.context.pregnant is False
    assert assessment.finding("anemia") is not None


# S6: a "Pregnant" status Observation OR an active pregnancy Condition (regression: engine fixed in a040851)
def test_active_pregnancy_condition_counts_even_with_a_not_pregnant_status_observation() -> None:
    who = patient("female", age_years=30)
    assessment = assess([pregnancy_status(False, days_ago=100), hb(112)], who=who, conditions=[condition("77386006")])
    assert assessment.context.pregnant is True
    assert assessment.finding("anemia") is None


def test_trimester_uses_gestational_age_projected_to_the_hb_date() -> None:
    # Project choice (rule-set file, docs/rules.md): 12 weeks recorded 30 days before the Hb is 16w2d
    # on the Hb date, the 2nd trimester (cut-off 105), so Hb 107 is not anaemia; the note says so.
    observations = [pregnancy_status(True, days_ago=40), gestational_age(12, days_ago=40), hb(107, days_ago=10)]
    assert anemia(observations, who=patient("female", age_years=30)) == (False, None)
    low = assess([*observations[:2], hb(103, days_ago=10)], who=patient("female", age_years=30)).finding("anemia")
    assert low is not None
    assert low.note is not None
    assert "projected to 16w2d on the haemoglobin date (project choice)" in low.note


# --- children (WHO 2024) ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("years", "months", "value", "anemic"),
    [
        (0, 6, 104.9, True),
        (0, 6, 105, False),
        (1, 11, 104.9, True),  # 23 months
        (1, 11, 105, False),
        (2, 0, 109.9, True),  # 24 months
        (2, 0, 105, True),  # would be normal at 23 months
        (2, 0, 110, False),
        (4, 11, 109.9, True),  # 59 months
        (4, 11, 110, False),
        (5, 0, 114.9, True),
        (5, 0, 110, True),
        (5, 0, 115, False),
        (11, 11, 114.9, True),
        (11, 11, 115, False),
        (12, 0, 119.9, True),
        (12, 0, 115, True),
        (12, 0, 120, False),
        (14, 11, 119.9, True),
        (14, 11, 120, False),
    ],
)
@pytest.mark.parametrize("sex", ["male", "female"])
def test_child_cutoffs(years: int, months: int, value: float, anemic: bool, sex: str) -> None:
    who = patient(sex, age_years=years, age_months=months)  # type: ignore[arg-type]
    assert anemia([hb(value, days_ago=0)], who=who)[0] is anemic


@pytest.mark.parametrize(("sex", "value", "anemic"), [("male", 125, True), ("female", 125, False)])
def test_adult_cutoffs_from_15(sex: str, value: float, anemic: bool) -> None:
    who = patient(sex, age_years=15)  # type: ignore[arg-type]
    assert anemia([hb(value, days_ago=0)], who=who)[0] is anemic
    # the same value at 14 years 11 months is judged by the 12-14 y cut-off (< 120)
    young = patient(sex, age_years=14, age_months=11)  # type: ignore[arg-type]
    assert anemia([hb(value, days_ago=0)], who=young)[0] is False


def test_child_under_6_months_has_no_cutoff() -> None:
    assessment = assess([hb(80, days_ago=0)], who=patient("female", age_years=0, age_months=5))
    assert assessment.finding("anemia") is None
    assert not_evaluable(assessment, analyte="hemoglobin")


def test_unknown_birth_date_cannot_choose_a_cutoff() -> None:
    assessment = assess([hb(125)], who=patient("male", unknown_birth_date=True))
    assert assessment.finding("anemia") is None
    assert not_evaluable(assessment, analyte="hemoglobin")


# S6: age at the evaluation date picks the cut-off (regression: engine fixed in a040851)
def test_hemoglobin_cutoff_uses_age_at_the_evaluation_date() -> None:
    born = birth_date_for(15)  # 15th birthday on the as-of date
    assert day(30) < born.replace(year=born.year + 15)
    assert anemia([hb(125, days_ago=30)], who=patient("male", birth_date=born))[0] is True


# --- D19: children's severity (WHO 2024) ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("years", "months", "value", "severity"),
    [
        # 6-23 months: mild 95-104, moderate 70-94, severe < 70
        (0, 6, 104.9, "mild"),
        (0, 6, 95, "mild"),
        (0, 6, 94.9, "moderate"),
        (1, 11, 70, "moderate"),
        (1, 11, 69.9, "severe"),
        # 24-59 months: mild 100-109, moderate 70-99, severe < 70
        (2, 0, 109.9, "mild"),
        (2, 0, 100, "mild"),
        (2, 0, 99.9, "moderate"),
        (4, 11, 70, "moderate"),
        (4, 11, 69.9, "severe"),
        # 5-11 years: mild 110-114, moderate 80-109, severe < 80
        (5, 0, 114.9, "mild"),
        (5, 0, 110, "mild"),
        (5, 0, 109.9, "moderate"),
        (11, 11, 80, "moderate"),
        (11, 11, 79.9, "severe"),
        # 12-14 years: mild 110-119, moderate 80-109, severe < 80
        (12, 0, 119.9, "mild"),
        (12, 0, 110, "mild"),
        (12, 0, 109.9, "moderate"),
        (14, 11, 80, "moderate"),
        (14, 11, 79.9, "severe"),
    ],
)
@pytest.mark.parametrize("sex", ["male", "female", None])
def test_d19_child_severity(years: int, months: int, value: float, severity: str, sex: str | None) -> None:
    who = patient(sex, age_years=years, age_months=months)  # type: ignore[arg-type]
    assert anemia([hb(value, days_ago=0)], who=who) == (True, severity)


@pytest.mark.parametrize(
    ("born", "evaluable"),
    [
        (birth_date_for(0, 6), True),  # exactly 6 months on the as-of date
        (birth_date_for(0, 6) + timedelta(days=1), False),  # one day short of 6 months
        (birth_date_for(0, 1), False),
    ],
)
def test_d19_under_6_months_is_not_evaluable(born: date, evaluable: bool) -> None:
    assessment = assess([hb(60, days_ago=0)], who=patient("female", birth_date=born))
    assert (assessment.finding("anemia") is not None) is evaluable
    details = [n.detail for n in not_evaluable(assessment, analyte="hemoglobin")]
    assert details == ([] if evaluable else ["anaemia: no WHO cut-off under 6 months"])
