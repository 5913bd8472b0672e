"""Electrolytes, docs/rules.md section 5: thresholds, units, albumin correction (Payne 1973) and
CTCAE v5.0 grades; and the wording rule: these are NOT established causes of RLS.

Equivalent values in other units are computed from the spec's factors (section 7) and kept clear of
the threshold, so a test never depends on the last bit of a floating-point division.
"""

from __future__ import annotations

import pytest
from engine_helpers import (
    ALBUMIN,
    CALCIUM_IONIZED,
    CALCIUM_TOTAL,
    MAGNESIUM,
    POTASSIUM,
    advisory,
    advisory_codes,
    assess,
    knowledge,
    not_evaluable,
    obs,
    ref,
)

from rls_screen.report import format_text
from rls_screen.writeback import build_risk_assessment

pytestmark = pytest.mark.unit

MG_PER_DL_PER_MMOL_MG = 2.4305  # section 7: Mg mmol/L = mg/dL / 2.4305
MG_PER_DL_PER_MMOL_CA = 4.008  # section 7: Ca mmol/L = mg/dL / 4.008


def finding(observations: list[dict], code: str) -> tuple[bool, str | None]:
    found = assess(observations).finding(code)
    return (found is not None, found.severity if found else None)


# --- magnesium ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "unit", "unit_text", "low"),
    [
        (0.69, "mmol/L", None, True),
        (0.699, "mmol/L", None, True),
        (0.70, "mmol/L", None, False),
        (0.71, "mmol/L", None, False),
        (0.69 * MG_PER_DL_PER_MMOL_MG, "mg/dL", None, True),  # 1.677 mg/dL
        (1.69, "mg/dL", None, True),  # 0.6953 mmol/L
        (1.71, "mg/dL", None, False),  # 0.7036 mmol/L
        (0.71 * MG_PER_DL_PER_MMOL_MG, "mg/dL", None, False),
        (1.38, "meq/L", None, True),  # 0.69 mmol/L
        (1.4, "meq/L", None, False),  # 0.70 mmol/L, section 5's "1.4 mEq/L"
        (1.39, None, "mEq/L", True),  # free-text alias
        (1.4, None, "mEq/L", False),
        (1.69, None, "mg/dl", True),
    ],
)
def test_hypomagnesemia_below_0_70_mmol_per_litre(
    value: float, unit: str | None, unit_text: str | None, low: bool
) -> None:
    assert finding([obs(MAGNESIUM, value, unit, unit_text=unit_text)], "hypomagnesemia")[0] is low


@pytest.mark.parametrize("loinc", ["19123-9", "2601-3", "2593-2", "21377-7"])
def test_every_magnesium_code(loinc: str) -> None:
    assert finding([obs(loinc, 0.6, "mmol/L")], "hypomagnesemia")[0] is True


@pytest.mark.parametrize(
    ("value", "grade"),
    # CTCAE v5.0 hypomagnesaemia: G1 <LLN-0.5, G2 <0.5-0.4, G3 <0.4-0.3, G4 <0.3 mmol/L
    [
        (0.69, "grade-1"),
        (0.5, "grade-1"),
        (0.49, "grade-2"),
        (0.4, "grade-2"),
        (0.39, "grade-3"),
        (0.3, "grade-3"),
        (0.29, "grade-4"),
    ],
)
def test_hypomagnesemia_ctcae_grade(value: float, grade: str) -> None:
    assert finding([obs(MAGNESIUM, value, "mmol/L")], "hypomagnesemia") == (True, grade)


# --- potassium ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "unit", "hypo", "hyper"),
    [
        (3.49, "mmol/L", True, False),
        (3.5, "mmol/L", False, False),
        (3.51, "mmol/L", False, False),
        (4.5, "mmol/L", False, False),
        (5.0, "mmol/L", False, False),
        (5.01, "mmol/L", False, True),
        (3.49, "meq/L", True, False),
        (3.5, "meq/L", False, False),
        (5.0, "meq/L", False, False),
        (5.01, "meq/L", False, True),
    ],
)
def test_potassium_thresholds(value: float, unit: str, hypo: bool, hyper: bool) -> None:
    assessment = assess([obs(POTASSIUM, value, unit)])
    assert (assessment.finding("hypokalemia") is not None) is hypo
    assert (assessment.finding("hyperkalemia") is not None) is hyper


@pytest.mark.parametrize(
    ("value", "code", "grade"),
    # CTCAE v5.0: hypokalaemia G1/G2 <LLN-3.0 (told apart by symptoms), G3 <3.0-2.5, G4 <2.5;
    # hyperkalaemia G1 >ULN-5.5, G2 >5.5-6.0, G3 >6.0-7.0, G4 >7.0 mmol/L
    [
        (3.49, "hypokalemia", "grade-1-2"),
        (3.0, "hypokalemia", "grade-1-2"),
        (2.99, "hypokalemia", "grade-3"),
        (2.5, "hypokalemia", "grade-3"),
        (2.49, "hypokalemia", "grade-4"),
        (5.01, "hyperkalemia", "grade-1"),
        (5.5, "hyperkalemia", "grade-1"),
        (5.51, "hyperkalemia", "grade-2"),
        (6.0, "hyperkalemia", "grade-2"),
        (6.01, "hyperkalemia", "grade-3"),
        (7.0, "hyperkalemia", "grade-3"),
        (7.01, "hyperkalemia", "grade-4"),
    ],
)
def test_potassium_ctcae_grade(value: float, code: str, grade: str) -> None:
    assert finding([obs(POTASSIUM, value, "mmol/L")], code) == (True, grade)


@pytest.mark.parametrize(
    ("comparator", "value", "hypo", "hyper"),
    [("<", 3.5, True, False), ("<", 3.0, True, False), (">", 5.0, False, True), (">", 6.5, False, True)],
)
def test_potassium_bounds_decide(comparator: str, value: float, hypo: bool, hyper: bool) -> None:
    assessment = assess([obs(POTASSIUM, value, "mmol/L", comparator=comparator)])
    assert (assessment.finding("hypokalemia") is not None) is hypo
    assert (assessment.finding("hyperkalemia") is not None) is hyper


def test_potassium_bound_that_cannot_decide_is_indeterminate() -> None:
    assessment = assess([obs(POTASSIUM, 4.0, "mmol/L", comparator="<")])
    assert assessment.finding("hypokalemia") is None
    assert "comparator-indeterminate" in {n.reason for n in not_evaluable(assessment, analyte="potassium")}


# --- calcium ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "unit", "low"),
    [
        (1.14, "mmol/L", True),
        (1.149, "mmol/L", True),
        (1.15, "mmol/L", False),
        (1.16, "mmol/L", False),
        (4.59, "mg/dL", True),  # D7: compared with the stated equivalent 4.6 mg/dL
        (4.6, "mg/dL", False),  # D7: 1.1477 mmol/L, but not below 4.6 mg/dL
        (2.28, "meq/L", True),  # 1.14 mmol/L
        (2.3, "meq/L", False),  # 1.15 mmol/L
    ],
)
def test_ionized_calcium_below_1_15(value: float, unit: str, low: bool) -> None:
    assert finding([obs(CALCIUM_IONIZED, value, unit)], "hypocalcemia")[0] is low


@pytest.mark.parametrize("loinc", ["1994-3", "1995-0", "12180-6", "47596-2", "34581-9", "38230-9", "17863-2"])
def test_every_ionized_calcium_code(loinc: str) -> None:
    assert finding([obs(loinc, 1.1, "mmol/L")], "hypocalcemia")[0] is True


@pytest.mark.parametrize(
    ("ionized", "total", "low"),
    [
        (1.20, 1.8, False),  # normal ionized: a low total does not count
        (1.14, 2.4, True),  # low ionized: a normal total does not rescue it
        (1.15, 2.0, False),
    ],
)
def test_ionized_calcium_is_preferred_over_total(ionized: float, total: float, low: bool) -> None:
    ion, tot = obs(CALCIUM_IONIZED, ionized, "mmol/L"), obs(CALCIUM_TOTAL, total, "mmol/L")
    found = assess([ion, tot]).finding("hypocalcemia")
    assert (found is not None) is low
    if found is not None:
        assert found.basis == (ref(ion),)


@pytest.mark.parametrize(
    ("calcium", "albumin", "low"),
    [
        (2.0, 30, False),  # corrected 2.20: the brief's example
        (2.0, 34.5, True),  # corrected 2.11
        (2.0, 33.5, False),  # corrected 2.13
        (2.11, 40, True),
        (2.12, 40, False),
        (2.0, 44, True),  # corrected 1.92
        (2.2, 45, True),  # corrected 2.10: a normal total becomes low
        (2.2, 44, False),  # corrected 2.12
        (1.9, 20, False),  # corrected 2.30
    ],
)
def test_total_calcium_corrected_with_same_day_albumin(calcium: float, albumin: float, low: bool) -> None:
    assert finding([obs(CALCIUM_TOTAL, calcium, "mmol/L"), obs(ALBUMIN, albumin, "g/L")], "hypocalcemia")[0] is low


def test_corrected_calcium_value_and_basis() -> None:
    ca, alb = obs(CALCIUM_TOTAL, 1.9, "mmol/L"), obs(ALBUMIN, 35, "g/L")
    found = assess([ca, alb]).finding("hypocalcemia")
    assert found is not None
    corrected = [v for v in found.values if v.computed]
    assert len(corrected) == 1
    assert corrected[0].value.value == pytest.approx(1.9 + 0.02 * (40 - 35))
    assert set(found.basis) == {ref(ca), ref(alb)}
    assert any("Payne" in citation for citation in found.citations)


@pytest.mark.parametrize(
    ("calcium", "ca_unit", "albumin", "alb_unit", "low"),
    [
        (8.0, "mg/dL", 3.0, "g/dL", False),  # 8.0 + 0.8 x 1.0 = 8.8 mg/dL
        (8.0, "mg/dL", 4.0, "g/dL", True),  # 8.0 mg/dL = 1.996 mmol/L
        (2.0, "mmol/L", 3.0, "g/dL", False),
        (8.0, "mg/dL", 30, "g/L", False),
        (4.0, "meq/L", 30, "g/L", False),  # 2.0 mmol/L
    ],
)
def test_albumin_correction_in_other_units(
    calcium: float, ca_unit: str, albumin: float, alb_unit: str, low: bool
) -> None:
    observations = [obs(CALCIUM_TOTAL, calcium, ca_unit), obs(ALBUMIN, albumin, alb_unit)]
    assert finding(observations, "hypocalcemia")[0] is low


@pytest.mark.parametrize(
    ("calcium", "albumin", "low"),
    [
        ((1.8, "<"), (40, None), True),  # corrected < 1.8
        ((2.0, "<"), (30, None), None),  # corrected < 2.2: undecided
        ((1.9, None), (20, "<"), False),  # albumin < 20: corrected > 2.3
        ((2.0, None), (45, ">"), True),  # albumin > 45: corrected < 1.9
        ((2.1, None), (35, ">"), None),  # corrected < 2.2: undecided
    ],
)
def test_corrected_calcium_with_one_bound(
    calcium: tuple[float, str | None], albumin: tuple[float, str | None], low: bool | None
) -> None:
    observations = [
        obs(CALCIUM_TOTAL, calcium[0], "mmol/L", comparator=calcium[1]),
        obs(ALBUMIN, albumin[0], "g/L", comparator=albumin[1]),
    ]
    assessment = assess(observations)
    if low is None:
        assert assessment.finding("hypocalcemia") is None
        assert not_evaluable(assessment, analyte="calcium-total")
    else:
        assert (assessment.finding("hypocalcemia") is not None) is low


def test_corrected_calcium_with_two_bounds_that_agree() -> None:
    observations = [
        obs(CALCIUM_TOTAL, 1.8, "mmol/L", comparator="<"),
        obs(ALBUMIN, 40, "g/L", comparator=">"),
    ]
    assert assess(observations).finding("hypocalcemia") is not None


@pytest.mark.parametrize("loinc", ["1751-7", "61151-7", "61152-5"])
def test_every_albumin_code(loinc: str) -> None:
    assert finding([obs(CALCIUM_TOTAL, 2.0, "mmol/L"), obs(loinc, 30, "g/L")], "hypocalcemia")[0] is False


@pytest.mark.parametrize(
    ("calcium", "low", "grade"),
    # CTCAE v5.0 corrected calcium: G1 <LLN-2.0, G2 <2.0-1.75, G3 <1.75-1.5, G4 <1.5 mmol/L
    [
        (2.0, True, "grade-1"),
        (2.11, True, "grade-1"),
        (2.12, False, None),
        (1.99, True, "grade-2"),
        (1.6, True, "grade-3"),
        (1.4, True, "grade-4"),
    ],
)
def test_total_calcium_without_albumin_is_judged_uncorrected(calcium: float, low: bool, grade: str | None) -> None:
    assessment = assess([obs(CALCIUM_TOTAL, calcium, "mmol/L")])
    found = assessment.finding("hypocalcemia")
    assert (found is not None, found.severity if found else None) == (low, grade)
    if found is not None:
        assert found.note is not None
        assert "not corrected" in found.note


@pytest.mark.parametrize("albumin_days_ago", [9, 11, 40])
def test_albumin_from_another_day_is_not_used(albumin_days_ago: int) -> None:
    ca, alb = obs(CALCIUM_TOTAL, 2.0, "mmol/L", days_ago=10), obs(ALBUMIN, 30, "g/L", days_ago=albumin_days_ago)
    found = assess([ca, alb]).finding("hypocalcemia")
    assert found is not None  # uncorrected 2.0 < 2.12
    assert found.basis == (ref(ca),)


@pytest.mark.parametrize("loinc", ["17861-6", "2000-8", "1996-8", "49765-1"])
def test_every_total_calcium_code(loinc: str) -> None:
    assert finding([obs(loinc, 2.0, "mmol/L")], "hypocalcemia")[0] is True


@pytest.mark.parametrize(
    ("ionized", "grade"),
    # CTCAE v5.0 ionized calcium: G1 <LLN-1.0, G2 <1.0-0.9, G3 <0.9-0.8, G4 <0.8 mmol/L
    [
        (1.14, "grade-1"),
        (1.0, "grade-1"),
        (0.99, "grade-2"),
        (0.9, "grade-2"),
        (0.89, "grade-3"),
        (0.8, "grade-3"),
        (0.79, "grade-4"),
    ],
)
def test_ionized_calcium_ctcae_grade(ionized: float, grade: str) -> None:
    assert finding([obs(CALCIUM_IONIZED, ionized, "mmol/L")], "hypocalcemia") == (True, grade)


# --- wording: not an established cause ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("observation", "code"),
    [
        (obs(MAGNESIUM, 0.6, "mmol/L"), "hypomagnesemia"),
        (obs(POTASSIUM, 3.0, "mmol/L"), "hypokalemia"),
        (obs(POTASSIUM, 5.8, "mmol/L"), "hyperkalemia"),
        (obs(CALCIUM_IONIZED, 1.0, "mmol/L"), "hypocalcemia"),
        (obs(CALCIUM_TOTAL, 1.9, "mmol/L"), "hypocalcemia"),
    ],
)
def test_electrolyte_finding_comes_with_not_established_cause_advisory(observation: dict, code: str) -> None:
    assessment = assess([observation])
    assert code in assessment.finding_codes
    caveat = advisory(assessment, "electrolyte-not-established-cause")
    assert caveat is not None
    assert "not an established" in caveat.display.lower()


@pytest.mark.parametrize(
    "observations",
    [
        [],
        [obs(MAGNESIUM, 0.8, "mmol/L"), obs(POTASSIUM, 4.0, "mmol/L"), obs(CALCIUM_IONIZED, 1.2, "mmol/L")],
        [obs(CALCIUM_TOTAL, 2.0, "mmol/L"), obs(ALBUMIN, 30, "g/L")],
    ],
)
def test_no_electrolyte_advisory_without_an_electrolyte_finding(observations: list[dict]) -> None:
    assert "electrolyte-not-established-cause" not in advisory_codes(assess(observations))


def test_electrolyte_caveat_text_says_not_an_established_cause() -> None:
    concept = knowledge().terminology.concepts["electrolyte-not-established-cause"]
    text = f"{concept.display} {concept.definition}".lower()
    assert "not" in text
    assert "established" in text


# --- D7: the comparison unit ----------------------------------------------------------------------------

DANGER = "potentially dangerous: act on it now if it has not been addressed (local critical-result policy)."


@pytest.mark.parametrize(
    ("loinc", "value", "unit", "unit_text", "code", "low"),
    [
        # magnesium 0.70 mmol/L = 1.7 mg/dL = 1.4 mEq/L
        (MAGNESIUM, 1.70, "mg/dL", None, "hypomagnesemia", False),  # 0.6994 mmol/L, but not below 1.7 mg/dL
        (MAGNESIUM, 1.69, "mg/dL", None, "hypomagnesemia", True),
        (MAGNESIUM, 1.70, None, "mg/dl", "hypomagnesemia", False),  # unit from the alias table
        (MAGNESIUM, 1.4, "meq/L", None, "hypomagnesemia", False),
        (MAGNESIUM, 1.39, "meq/L", None, "hypomagnesemia", True),
        (MAGNESIUM, 0.70, "mmol/L", None, "hypomagnesemia", False),
        (MAGNESIUM, 0.699, "mmol/L", None, "hypomagnesemia", True),
        # ionized calcium 1.15 mmol/L = 4.6 mg/dL; mEq/L has no stated equivalent: converted
        (CALCIUM_IONIZED, 4.6, "mg/dL", None, "hypocalcemia", False),
        (CALCIUM_IONIZED, 4.59, "mg/dL", None, "hypocalcemia", True),
        (CALCIUM_IONIZED, 2.3, "meq/L", None, "hypocalcemia", False),
        (CALCIUM_IONIZED, 2.29, "meq/L", None, "hypocalcemia", True),
        # total calcium (no albumin) 2.12 mmol/L = 8.5 mg/dL
        (CALCIUM_TOTAL, 8.5, "mg/dL", None, "hypocalcemia", False),
        (CALCIUM_TOTAL, 8.498, "mg/dL", None, "hypocalcemia", True),  # 2.1203 mmol/L, yet below 8.5 mg/dL
        (CALCIUM_TOTAL, 2.12, "mmol/L", None, "hypocalcemia", False),
        (CALCIUM_TOTAL, 2.119, "mmol/L", None, "hypocalcemia", True),
    ],
)
def test_d7_compared_with_the_stated_equivalent(
    loinc: str, value: float, unit: str | None, unit_text: str | None, code: str, low: bool
) -> None:
    assert finding([obs(loinc, value, unit, unit_text=unit_text)], code)[0] is low


@pytest.mark.parametrize(
    ("calcium", "albumin", "albumin_unit", "low"),
    [
        # Ca (mg/dL) + 0.8 x (4.0 - albumin g/dL) against 8.5 mg/dL
        (8.1, 3.5, "g/dL", False),  # 8.5
        (8.098, 3.5, "g/dL", True),  # 8.498 mg/dL (2.1205 mmol/L corrected in SI: not low there)
        (8.098, 35, "g/L", True),  # albumin in g/L is read as 3.5 g/dL
        (8.5, 4.0, "g/dL", False),
        (8.49, 4.0, "g/dL", True),
    ],
)
def test_d7_corrected_calcium_in_conventional_units(
    calcium: float, albumin: float, albumin_unit: str, low: bool
) -> None:
    observations = [obs(CALCIUM_TOTAL, calcium, "mg/dL"), obs(ALBUMIN, albumin, albumin_unit)]
    assert finding(observations, "hypocalcemia")[0] is low


def test_d7_thresholds_state_their_equivalents_compared_one_first() -> None:
    in_mmol = assess([obs(MAGNESIUM, 0.6, "mmol/L")]).finding("hypomagnesemia")
    assert in_mmol is not None
    assert [(t.value, t.unit) for t in in_mmol.thresholds] == [(0.7, "mmol/L"), (1.7, "mg/dL"), (1.4, "meq/L")]
    assert in_mmol.note is None
    in_mg = assess([obs(MAGNESIUM, 1.6, "mg/dL")]).finding("hypomagnesemia")
    assert in_mg is not None
    assert [(t.value, t.unit) for t in in_mg.thresholds] == [(1.7, "mg/dL"), (0.7, "mmol/L"), (1.4, "meq/L")]
    assert in_mg.note == "Compared in the reported unit with the stated equivalent (D7)."


# --- D20: grade from a bound; grade 3 or higher is potentially dangerous --------------------------------


@pytest.mark.parametrize(
    ("loinc", "value", "comparator", "code", "severity", "at_least", "dangerous"),
    [
        (MAGNESIUM, 0.4, "<", "hypomagnesemia", "grade-3", True, True),  # "<0.4": grade 3 or higher
        (MAGNESIUM, 0.3, "<", "hypomagnesemia", "grade-4", False, True),
        (MAGNESIUM, 0.5, "<", "hypomagnesemia", "grade-2", True, False),
        (MAGNESIUM, 0.4, None, "hypomagnesemia", "grade-2", False, False),
        (MAGNESIUM, 0.39, None, "hypomagnesemia", "grade-3", False, True),
        (POTASSIUM, 3.0, None, "hypokalemia", "grade-1-2", False, False),
        (POTASSIUM, 2.99, None, "hypokalemia", "grade-3", False, True),
        (POTASSIUM, 3.0, "<", "hypokalemia", "grade-3", True, True),
        (POTASSIUM, 6.0, None, "hyperkalemia", "grade-2", False, False),
        (POTASSIUM, 6.01, None, "hyperkalemia", "grade-3", False, True),
        (POTASSIUM, 10, None, "hyperkalemia", "grade-4", False, True),
        (POTASSIUM, 6.5, ">", "hyperkalemia", "grade-3", True, True),
        (POTASSIUM, 7.0, ">", "hyperkalemia", "grade-4", False, True),
        (CALCIUM_IONIZED, 0.9, None, "hypocalcemia", "grade-2", False, False),
        (CALCIUM_IONIZED, 0.89, None, "hypocalcemia", "grade-3", False, True),
        (CALCIUM_IONIZED, 0.9, "<", "hypocalcemia", "grade-3", True, True),
        (CALCIUM_TOTAL, 1.75, None, "hypocalcemia", "grade-2", False, False),
        (CALCIUM_TOTAL, 1.749, None, "hypocalcemia", "grade-3", False, True),
    ],
)
def test_d20_grade_from_a_bound_and_danger_wording(
    loinc: str,
    value: float,
    comparator: str | None,
    code: str,
    severity: str,
    at_least: bool,
    dangerous: bool,
) -> None:
    unit = "mmol/L"
    found = assess([obs(loinc, value, unit, comparator=comparator)]).finding(code)
    assert found is not None
    assert (found.severity, found.severity_at_least) == (severity, at_least)
    assert (DANGER in (found.note or "")) is dangerous
    assert ("or higher" in (found.note or "")) is at_least
    assert found.to_json().get("severityAtLeast", False) is at_least


def test_d20_magnesium_bound_exact_text() -> None:
    found = assess([obs(MAGNESIUM, 0.4, "mmol/L", comparator="<")]).finding("hypomagnesemia")
    assert found is not None
    assert found.note == f"Magnesium <0.4 mmol/L: CTCAE grade 3 or higher, {DANGER}"


def test_d20_potassium_10_exact_text() -> None:
    found = assess([obs(POTASSIUM, 10, "mmol/L")]).finding("hyperkalemia")
    assert found is not None
    assert found.note == f"Potassium 10 mmol/L: CTCAE grade 4, {DANGER}"


def test_d20_report_leads_with_the_danger_before_the_advice() -> None:
    text = format_text(assess([obs(POTASSIUM, 10, "mmol/L")]), knowledge().ruleset)
    line = next(line for line in text.splitlines() if "High potassium" in line)
    assert line == (
        "  - High potassium (CTCAE grade 4): potassium 10 mmol/L on 2026-03-05; threshold potassium > 5 mmol/L "
        f"[CTCAE v5.0; rule ELECTROLYTE-HYPERKALEMIA v2026.3]. Potassium 10 mmol/L: CTCAE grade 4, {DANGER} "
        + knowledge().ruleset.advice["hyperkalemia"]
    )
    text = format_text(assess([obs(MAGNESIUM, 0.4, "mmol/L", comparator="<")]), knowledge().ruleset)
    assert (
        "Low magnesium (CTCAE grade 3 or higher): magnesium <0.4 mmol/L on 2026-03-05; "
        "threshold magnesium < 0.7 mmol/L (= 1.7 mg/dL = 1.4 mEq/L)"
    ) in text


# --- D22: ionized calcium only when it is as new as the total -------------------------------------------


@pytest.mark.parametrize(
    ("ionized_days_ago", "total_days_ago", "judged"),
    [
        (10, 10, "ionized"),  # same day
        (9, 10, "ionized"),  # later
        (11, 10, "total"),  # one day older: the newer total decides
        (200, 10, "total"),
    ],
)
def test_d22_ionized_only_when_as_new_as_the_total(ionized_days_ago: int, total_days_ago: int, judged: str) -> None:
    # low ionized, normal total; and the reverse
    low_ionized = [
        obs(CALCIUM_IONIZED, 1.10, "mmol/L", days_ago=ionized_days_ago),
        obs(CALCIUM_TOTAL, 2.40, "mmol/L", days_ago=total_days_ago),
    ]
    low_total = [
        obs(CALCIUM_IONIZED, 1.25, "mmol/L", days_ago=ionized_days_ago),
        obs(CALCIUM_TOTAL, 2.00, "mmol/L", days_ago=total_days_ago),
    ]
    assert finding(low_ionized, "hypocalcemia")[0] is (judged == "ionized")
    assert finding(low_total, "hypocalcemia")[0] is (judged == "total")


def test_d22_the_note_says_the_older_ionized_was_set_aside() -> None:
    ion = obs(CALCIUM_IONIZED, 1.25, "mmol/L", days_ago=20)
    tot = obs(CALCIUM_TOTAL, 2.00, "mmol/L", days_ago=10)
    found = assess([ion, tot]).finding("hypocalcemia")
    assert found is not None
    assert found.basis == (ref(tot),)
    assert found.note == (
        "No same-day albumin: total calcium not corrected. The ionized calcium of 2026-02-23 is older than the "
        "total calcium of 2026-03-05: the newer total decides (D22)."
    )


def test_d20_risk_assessment_summary_says_or_higher_for_a_bound() -> None:
    assessment = assess([obs(MAGNESIUM, 0.4, "mmol/L", comparator="<")])
    risk = build_risk_assessment(assessment, knowledge().terminology, knowledge().ruleset, "Device/rls-screen")
    assert risk.text is not None
    assert "; Low magnesium (CTCAE grade 3 or higher).</p>" in risk.text.div
