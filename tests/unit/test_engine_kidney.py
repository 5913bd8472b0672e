"""Kidney rules, docs/rules.md section 4 (KDIGO 2024 categories; CKD-EPI 2021 creatinine fallback).

Expected CKD-EPI values are computed here from the published equation (Inker 2021), independently of
the engine and of the rule-set file.
"""

from __future__ import annotations

from datetime import date

import pytest
from engine_helpers import (
    COCKCROFT_GAULT,
    CREATININE,
    CREATININE_UMOL,
    EGFR,
    EGFR_PANEL,
    EGFR_TIER_0,
    EGFR_TIER_2,
    EGFR_TIER_3,
    EGFR_UNIT,
    ICD10CM,
    SNOMED,
    advisory,
    advisory_codes,
    assess,
    birth_date_for,
    condition,
    knowledge,
    not_evaluable,
    obs,
    patient,
    procedure,
    reasons_for,
    ref,
)

from rls_screen.report import format_text

pytestmark = pytest.mark.unit


def ckd_epi_2021(creatinine_mg_dl: float, age: int, sex: str) -> float:
    """eGFR = 142 x min(Scr/k,1)^a x max(Scr/k,1)^-1.200 x 0.9938^age x 1.012 [female] (Inker 2021)."""
    kappa, alpha, factor = (0.7, -0.241, 1.012) if sex == "female" else (0.9, -0.302, 1.0)
    ratio = creatinine_mg_dl / kappa
    return 142 * min(ratio, 1) ** alpha * max(ratio, 1) ** -1.200 * 0.9938**age * factor


def egfr(value: float, code: str = EGFR, **kw: object) -> dict:
    return obs(code, value, EGFR_UNIT, **kw)


@pytest.mark.parametrize(
    ("value", "category"),
    [
        (120, "G1"),
        (90, "G1"),
        (89.9, "G2"),
        (60, "G2"),
        (59.9, "G3a"),
        (45, "G3a"),
        (44.9, "G3b"),
        (30, "G3b"),
        (29.9, "G4"),
        (15, "G4"),
        (14.9, "G5"),
        (5, "G5"),
        (0, "G5"),
    ],
)
def test_gfr_category_lower_bounds_inclusive(value: float, category: str) -> None:
    assessment = assess([egfr(value)])
    assert assessment.gfr_category == category
    found = set(assessment.finding_codes)
    assert ("reduced-kidney-function" in found) is (category in ("G3a", "G3b", "G4"))
    assert ("kidney-failure" in found) is (category == "G5")


@pytest.mark.parametrize("code", [*EGFR_TIER_0, EGFR, *EGFR_TIER_2, *EGFR_TIER_3])
def test_every_egfr_code_is_an_egfr(code: str) -> None:
    assert assess([egfr(50, code)]).gfr_category == "G3a"


@pytest.mark.parametrize(("value", "category"), [(59.9, "G3a"), (44.9, "G3b"), (29.9, "G4")])
def test_reduced_kidney_function_says_chronicity_is_unproven(value: float, category: str) -> None:
    e = egfr(value)
    assessment = assess([e])
    finding = assessment.finding("reduced-kidney-function")
    assert finding is not None
    assert finding.note is not None
    assert category in finding.note
    assert "3 months" in finding.note
    assert finding.basis == (ref(e),)
    assert "egfr-chronicity-caveat" in advisory_codes(assessment)


@pytest.mark.parametrize("value", [130, 90, 89.9, 60])
def test_no_kidney_finding_and_no_caveat_for_g1_g2(value: float) -> None:
    assessment = assess([egfr(value)])
    assert not {"reduced-kidney-function", "kidney-failure"} & set(assessment.finding_codes)
    assert "egfr-chronicity-caveat" not in advisory_codes(assessment)


def test_kidney_failure_below_15() -> None:
    e = egfr(14.9)
    finding = assess([e]).finding("kidney-failure")
    assert finding is not None
    assert [(t.comparator, t.value) for t in finding.thresholds] == [("<", 15)]
    assert finding.basis == (ref(e),)


# --- dialysis -----------------------------------------------------------------------------------------

DIALYSIS_CONDITIONS = [condition("Z99.2", ICD10CM), condition("N18.6", ICD10CM)]


@pytest.mark.parametrize("dialysis", DIALYSIS_CONDITIONS)
@pytest.mark.parametrize("observations", [[], [egfr(50)], [egfr(95)]])
def test_active_dialysis_condition_is_kidney_failure(dialysis: dict, observations: list[dict]) -> None:
    finding = assess(observations, conditions=[dialysis]).finding("kidney-failure")
    assert finding is not None
    assert f"Condition/{dialysis['id']}" in finding.basis


@pytest.mark.parametrize(
    ("clinical", "verification"),
    [("resolved", "confirmed"), ("inactive", "confirmed"), ("active", "refuted"), ("active", "entered-in-error")],
)
def test_inactive_or_refuted_dialysis_condition_is_not_kidney_failure(clinical: str, verification: str) -> None:
    dialysis = condition("Z99.2", ICD10CM, clinical_status=clinical, verification_status=verification)
    assert assess([egfr(50)], conditions=[dialysis]).finding("kidney-failure") is None


@pytest.mark.parametrize("code", ["302497006", "71192002", "265764009", "108241001"])
def test_completed_dialysis_procedure_is_kidney_failure(code: str) -> None:
    dialysis = procedure(code, SNOMED, days_ago=3)
    assert assess([egfr(50)], procedures=[dialysis]).finding("kidney-failure") is not None


def test_other_condition_is_not_dialysis() -> None:
    assert assess([egfr(50)], conditions=[condition("38341003", SNOMED)]).finding("kidney-failure") is None


# --- eGFR look-alikes that are never eGFR -------------------------------------------------------------


@pytest.mark.parametrize("code", [COCKCROFT_GAULT, EGFR_PANEL])
def test_never_egfr_codes(code: str) -> None:
    clearance = obs(code, 10, "mL/min")
    assessment = assess([clearance])
    assert assessment.gfr_category is None
    assert assessment.finding("kidney-failure") is None
    assert reasons_for(assessment, clearance) == ["unknown-code"]


def test_cockcroft_gault_in_egfr_units_is_still_not_egfr() -> None:
    clearance = obs(COCKCROFT_GAULT, 10, EGFR_UNIT)
    assert assess([clearance]).gfr_category is None


def test_cockcroft_gault_does_not_block_creatinine_fallback() -> None:
    assessment = assess([obs(COCKCROFT_GAULT, 10, "mL/min"), obs(CREATININE, 1.0, "mg/dL")])
    assert assessment.gfr_category == "G2"
    assert "egfr-computed-from-creatinine" in advisory_codes(assessment)


@pytest.mark.parametrize(("unit", "unit_text"), [("mL/min", None), (None, "mL/min"), (None, "ml/min")])
def test_plain_ml_per_min_is_not_an_egfr_unit(unit: str | None, unit_text: str | None) -> None:
    result = obs(EGFR, 10, unit, unit_text=unit_text)
    assessment = assess([result])
    assert assessment.gfr_category is None
    assert reasons_for(assessment, result) == ["unit-not-understood"]


@pytest.mark.parametrize("unit_text", ["mL/min/1.73m2", "mL/min/1.73 m2", "ml/min/1.73m2"])
def test_egfr_unit_aliases(unit_text: str) -> None:
    assert assess([obs(EGFR, 50, None, unit_text=unit_text)]).gfr_category == "G3a"


# --- creatinine fallback (CKD-EPI 2021, project choice) -----------------------------------------------


@pytest.mark.parametrize(
    ("sex", "age", "creatinine", "approx"),
    [
        ("female", 60, 1.0, 64),  # the brief's worked example
        ("male", 60, 1.0, 86),
        ("female", 60, 0.6, None),
        ("male", 40, 0.7, None),
        ("male", 75, 2.0, None),
        ("female", 85, 3.5, None),
        ("female", 30, 0.7, None),  # exactly kappa
        ("male", 30, 0.9, None),
    ],
)
def test_ckd_epi_2021_from_creatinine(sex: str, age: int, creatinine: float, approx: float | None) -> None:
    expected = ckd_epi_2021(creatinine, age, sex)
    if approx is not None:
        assert expected == pytest.approx(approx, abs=1)
    scr = obs(CREATININE, creatinine, "mg/dL", days_ago=10)
    assessment = assess([scr], who=patient(sex, age_years=age))  # type: ignore[arg-type]
    note = advisory(assessment, "egfr-computed-from-creatinine")
    assert note is not None
    [value] = note.values
    assert value.value.value == pytest.approx(expected, abs=0.051)
    assert value.computed  # marked computed
    assert value.observations == (ref(scr),)
    assert value.unit == EGFR_UNIT


@pytest.mark.parametrize(
    ("sex", "creatinine", "category"),
    [
        ("female", 1.0, "G2"),  # 64.6
        ("female", 1.2, "G3a"),  # 51.8
        ("female", 1.6, "G3b"),  # 36.6
        ("female", 2.0, "G4"),  # 28.0
        ("female", 4.0, "G5"),  # 12.2
        ("male", 1.0, "G2"),  # 86.3
        ("male", 0.7, "G1"),  # 101.5
    ],
)
def test_computed_egfr_is_categorised(sex: str, creatinine: float, category: str) -> None:
    who = patient(sex, age_years=60)  # type: ignore[arg-type]
    assessment = assess([obs(CREATININE, creatinine, "mg/dL")], who=who)
    assert assessment.gfr_category == category
    if category in ("G3a", "G3b", "G4"):
        assert assessment.finding("reduced-kidney-function") is not None
    if category == "G5":
        assert assessment.finding("kidney-failure") is not None


@pytest.mark.parametrize("loinc", [CREATININE_UMOL, "38483-4", "59826-8"])
def test_creatinine_in_umol_per_litre(loinc: str) -> None:
    who = patient("female", age_years=60)
    assessment = assess([obs(loinc, 88.42, "umol/L")], who=who)
    note = advisory(assessment, "egfr-computed-from-creatinine")
    assert note is not None
    assert note.values[0].value.value == pytest.approx(ckd_epi_2021(1.0, 60, "female"), abs=0.051)


def test_usable_egfr_wins_over_an_older_or_same_day_creatinine() -> None:
    assessment = assess([egfr(50, days_ago=1), obs(CREATININE, 1.0, "mg/dL", days_ago=200)])
    assert assessment.gfr_category == "G3a"
    assert "egfr-computed-from-creatinine" not in advisory_codes(assessment)


@pytest.mark.parametrize("status", ["preliminary", "entered-in-error"])
def test_unusable_egfr_falls_back_to_creatinine(status: str) -> None:
    assessment = assess([egfr(20, status=status), obs(CREATININE, 1.0, "mg/dL")])
    assert assessment.gfr_category == "G2"
    assert "egfr-computed-from-creatinine" in advisory_codes(assessment)


def test_stale_egfr_falls_back_to_creatinine() -> None:
    assessment = assess([egfr(20, days_ago=366), obs(CREATININE, 1.0, "mg/dL")])
    assert assessment.gfr_category == "G2"


def test_latest_creatinine_is_used() -> None:
    old, new = obs(CREATININE, 4.0, "mg/dL", days_ago=100), obs(CREATININE, 1.0, "mg/dL", days_ago=5)
    assert assess([new, old]).gfr_category == "G2"


def test_no_egfr_and_no_creatinine_is_missing() -> None:
    assessment = assess([])
    assert assessment.gfr_category is None
    assert [n.reason for n in not_evaluable(assessment, analyte="egfr")] == ["missing"]


def test_reduced_function_from_computed_egfr_rests_on_the_creatinine() -> None:
    scr = obs(CREATININE, 1.2, "mg/dL")
    finding = assess([scr], who=patient("female", age_years=60)).finding("reduced-kidney-function")
    assert finding is not None
    assert finding.basis == (ref(scr),)


# Section 4: the computed eGFR is categorised as computed (regression: it was rounded to 0.1 before a040851)
def test_computed_egfr_is_categorised_unrounded() -> None:
    expected = ckd_epi_2021(1.0625, 60, "female")
    assert 59.95 < expected < 60
    assessment = assess([obs(CREATININE, 1.0625, "mg/dL")], who=patient("female", age_years=60))
    assert assessment.gfr_category == "G3a"
    assert assessment.finding("reduced-kidney-function") is not None


# S6: age at the evaluation date (regression: the engine used the age at the draw before a040851)
def test_ckd_epi_uses_age_at_the_evaluation_date() -> None:
    born = date(1965, 6, 1)  # 60 on the as-of date 2026-03-15, 59 on 2025-05-01
    assert birth_date_for(61) < born <= birth_date_for(60)
    scr = obs(CREATININE, 1.0, "mg/dL", days_ago=318)
    note = advisory(assess([scr], who=patient("female", birth_date=born)), "egfr-computed-from-creatinine")
    assert note is not None
    assert note.values[0].value.value == pytest.approx(ckd_epi_2021(1.0, 60, "female"), abs=0.051)


def test_creatinine_with_unknown_sex_needs_both_sexes_to_agree() -> None:
    # 1.0 mg/dL at 60 y: female 64.6 and male 86.3 are both G2
    assert assess([obs(CREATININE, 1.0, "mg/dL")], who=patient(None, age_years=60)).gfr_category == "G2"
    # 0.8 mg/dL at 40 y: female ~ 95 (G1), male ~ 113 (G1)
    assert assess([obs(CREATININE, 0.8, "mg/dL")], who=patient(None, age_years=40)).gfr_category == "G1"
    # 1.5 mg/dL at 60 y: female 39.6 (G3b), male 51.7 (G3a): undecided
    assert ckd_epi_2021(1.5, 60, "female") < 45 <= ckd_epi_2021(1.5, 60, "male")
    assert assess([obs(CREATININE, 1.5, "mg/dL")], who=patient(None, age_years=60)).gfr_category is None


def test_creatinine_bound_decides_when_it_can() -> None:
    # "<0.5 mg/dL": eGFR above the value computed for 0.5, which is G1 for a 40-year-old
    scr = obs(CREATININE, 0.5, "mg/dL", comparator="<")
    assert assess([scr], who=patient("female", age_years=40)).gfr_category == "G1"
    # ">4 mg/dL": eGFR below 12 for a 60-year-old woman: G5
    scr = obs(CREATININE, 4, "mg/dL", comparator=">")
    assert assess([scr], who=patient("female", age_years=60)).gfr_category == "G5"


# --- D13: kidney failure by dialysis ------------------------------------------------------------------

DIALYSIS = condition("Z99.2", ICD10CM, id="dialysis-1")


@pytest.mark.parametrize(
    ("value", "dialysis", "findings", "caveat"),
    [
        # dialysis: kidney-failure alone (it supersedes reduced-kidney-function), never a chronicity caveat
        (25, True, ["kidney-failure"], False),
        (59.9, True, ["kidney-failure"], False),
        (14.9, True, ["kidney-failure"], False),
        (95, True, ["kidney-failure"], False),
        # without dialysis, the eGFR decides and one result still cannot prove chronicity
        (25, False, ["reduced-kidney-function"], True),
        (14.9, False, ["kidney-failure"], True),
        (60, False, [], False),
    ],
)
def test_d13_dialysis_supersedes_reduced_function_and_drops_the_chronicity_caveat(
    value: float, dialysis: bool, findings: list[str], caveat: bool
) -> None:
    e = egfr(value)
    assessment = assess([e], conditions=[DIALYSIS] if dialysis else [])
    kidney = [c for c in assessment.finding_codes if c in ("reduced-kidney-function", "kidney-failure")]
    assert kidney == findings
    assert ("egfr-chronicity-caveat" in advisory_codes(assessment)) is caveat
    # D24: gfrCategory stays the selected eGFR's category
    assert assessment.gfr_category == assess([e]).gfr_category


def test_d13_kidney_failure_by_dialysis_says_so_beside_an_egfr_of_25() -> None:
    assessment = assess([egfr(25, days_ago=10, id="e1")], conditions=[DIALYSIS])
    finding = assessment.finding("kidney-failure")
    assert finding is not None
    assert finding.thresholds == ()  # not by the eGFR < 15 threshold
    assert finding.note == (
        "Kidney failure by dialysis (Condition/dialysis-1). Not by the eGFR threshold: the selected eGFR "
        "(25 on 2026-03-05, category G4) is not below 15."
    )
    assert finding.basis == ("Condition/dialysis-1",)


def test_d13_dialysis_with_egfr_below_15_keeps_the_threshold_without_chronicity_wording() -> None:
    finding = assess([egfr(10, id="e1")], conditions=[DIALYSIS]).finding("kidney-failure")
    assert finding is not None
    assert [(t.comparator, t.value) for t in finding.thresholds] == [("<", 15)]
    assert finding.note == "Kidney failure by dialysis (Condition/dialysis-1). The eGFR is also below 15."


def test_d13_dialysis_text_report_has_no_egfr_repeat_or_acr_advice() -> None:
    text = format_text(assess([egfr(25, id="e1")], conditions=[DIALYSIS]), knowledge().ruleset)
    assert "Kidney failure by dialysis (Condition/dialysis-1). Not by the eGFR threshold" in text
    assert "threshold eGFR < 15" not in text
    assert "albumin-creatinine" not in text
    assert "chronicity" not in text
    assert "GFR category: G4" in text


# --- D14: the newest evidence decides which eGFR is judged ------------------------------------------------

# A 50-year-old woman: creatinine 1.0 mg/dL gives CKD-EPI 2021 ~ 69 (G2); the measured eGFR is 50 (G3a).
NEWER = "the creatinine of {c} is newer than the latest eGFR {e} on {d}"
BOUND = (
    "the latest eGFR {e} on {d} is a bound that cannot fix the GFR category, and a creatinine of {c} "
    "(same day or later) decides"
)


@pytest.mark.parametrize(
    ("egfr_value", "comparator", "egfr_days_ago", "creatinine_days_ago", "category", "why"),
    [
        (50, None, 10, 9, "G2", NEWER),  # creatinine one day later: computed
        (50, None, 10, 10, "G3a", None),  # same day: the measured eGFR
        (50, None, 10, 11, "G3a", None),  # creatinine older: the measured eGFR
        (60, ">", 10, 10, "G2", BOUND),  # ">60" cannot fix G1/G2; same-day creatinine decides
        (60, ">", 10, 9, "G2", NEWER),  # later creatinine: newer evidence anyway
        (60, ">", 10, 11, None, None),  # older creatinine: the bound stays, undecided
        (10, "<", 10, 10, "G5", None),  # "<10" fixes G5: the measured eGFR
    ],
)
def test_d14_newest_evidence(
    egfr_value: float,
    comparator: str | None,
    egfr_days_ago: int,
    creatinine_days_ago: int,
    category: str | None,
    why: str | None,
) -> None:
    e = egfr(egfr_value, comparator=comparator, days_ago=egfr_days_ago)
    scr = obs(CREATININE, 1.0, "mg/dL", days_ago=creatinine_days_ago)
    assert 60 <= ckd_epi_2021(1.0, 50, "female") < 90
    assessment = assess([e, scr])
    assert assessment.gfr_category == category
    note = advisory(assessment, "egfr-computed-from-creatinine")
    if why is None:
        assert note is None
        return
    assert note is not None
    assert note.values[0].observations == (ref(scr),)
    shown = f"{comparator or ''}{egfr_value}"
    expected = why.format(c=scr["effectiveDateTime"], e=shown, d=e["effectiveDateTime"])
    assert note.note == f"eGFR computed from creatinine with race-free CKD-EPI 2021: {expected}."


def test_d14_same_day_is_decided_by_day_not_by_time() -> None:
    e = egfr(50, days_ago=10, at="08:00:00Z")
    scr = obs(CREATININE, 1.0, "mg/dL", days_ago=10, at="20:00:00Z")
    assert assess([e, scr]).gfr_category == "G3a"


def test_d14_no_usable_egfr_says_so() -> None:
    note = advisory(assess([obs(CREATININE, 1.0, "mg/dL")]), "egfr-computed-from-creatinine")
    assert note is not None
    assert note.note == "eGFR computed from creatinine with race-free CKD-EPI 2021: no usable eGFR."


def test_d14_the_reason_is_in_the_finding_too() -> None:
    e, scr = egfr(20, days_ago=30), obs(CREATININE, 1.2, "mg/dL", days_ago=2)
    finding = assess([e, scr], who=patient("female", age_years=60)).finding("reduced-kidney-function")
    assert finding is not None
    assert finding.basis == (ref(scr),)
    assert finding.note is not None
    assert finding.note.endswith(
        f"eGFR computed from creatinine (CKD-EPI 2021): the creatinine of {scr['effectiveDateTime']} is newer "
        f"than the latest eGFR 20 on {e['effectiveDateTime']}."
    )


def test_d14_a_child_keeps_the_measured_egfr_when_creatinine_is_newer() -> None:
    e, scr = egfr(50, days_ago=10), obs(CREATININE, 1.0, "mg/dL", days_ago=2)
    assessment = assess([e, scr], who=patient("female", age_years=17))
    assert assessment.gfr_category == "G3a"
    assert [n.detail for n in not_evaluable(assessment, analyte="egfr")] == [
        "eGFR from creatinine: not computed: CKD-EPI 2021 is for adults"
    ]


# --- D15: CKD-EPI 2021 only from 18 years -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("years", "months", "computed"),
    [(18, 0, True), (17, 11, False), (40, 6, True), (12, 0, False)],
)
def test_d15_ckd_epi_is_for_adults(years: int, months: int, computed: bool) -> None:
    who = patient("female", birth_date=birth_date_for(years, months))
    assessment = assess([obs(CREATININE, 1.0, "mg/dL")], who=who)
    assert ("egfr-computed-from-creatinine" in advisory_codes(assessment)) is computed
    details = [n.detail for n in not_evaluable(assessment, analyte="egfr")]
    assert details == ([] if computed else ["eGFR from creatinine: not computed: CKD-EPI 2021 is for adults"])


def test_d15_unknown_birth_date_is_not_computed() -> None:
    assessment = assess([obs(CREATININE, 1.0, "mg/dL")], who=patient("female", unknown_birth_date=True))
    assert [n.detail for n in not_evaluable(assessment, analyte="egfr")] == [
        "eGFR from creatinine: not computed: birth date unknown (CKD-EPI 2021 is for adults)"
    ]


# --- D16: dialysis evidence ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("days_ago", "status", "counts"),
    [
        (0, "completed", True),
        (89, "completed", True),
        (90, "completed", True),  # D28: day 90 included
        (91, "completed", False),
        (200, "completed", False),  # inside the 365-day window of 2026.1, outside D16's 90 days
        (90, "in-progress", True),
        (91, "in-progress", False),
        (10, "not-done", False),
        (10, "stopped", False),
        (10, "entered-in-error", False),
        (-1, "completed", False),  # after the as-of date
    ],
)
def test_d16_dialysis_procedure_within_90_days(days_ago: int, status: str, counts: bool) -> None:
    session = procedure("302497006", SNOMED, status=status, days_ago=days_ago)
    finding = assess([egfr(50)], procedures=[session]).finding("kidney-failure")
    assert (finding is not None) is counts
    if finding is not None:
        assert finding.basis == (f"Procedure/{session['id']}",)


@pytest.mark.parametrize(
    ("kind", "code", "system", "counts"),
    [
        ("Condition", "105502003", SNOMED, True),
        ("Condition", "Z99.2", ICD10CM, True),
        ("Condition", "N18.6", ICD10CM, True),
        ("Condition", "302497006", SNOMED, False),  # a procedure code as a Condition
        ("Procedure", "108241001", SNOMED, True),
        ("Procedure", "302497006", SNOMED, True),
        ("Procedure", "71192002", SNOMED, True),
        ("Procedure", "265764009", SNOMED, True),
        ("Procedure", "105502003", SNOMED, False),  # a finding code as a Procedure
        ("Procedure", "Z99.2", ICD10CM, False),
    ],
)
def test_d16_dialysis_codes_by_resource_type(kind: str, code: str, system: str, counts: bool) -> None:
    if kind == "Condition":
        assessment = assess([egfr(50)], conditions=[condition(code, system)])
    else:
        assessment = assess([egfr(50)], procedures=[procedure(code, system, days_ago=5)])
    assert (assessment.finding("kidney-failure") is not None) is counts


def test_d16_performed_period_end_then_start() -> None:
    session = procedure("302497006", SNOMED, days_ago=5)
    del session["performedDateTime"]
    session["performedPeriod"] = {"start": "2025-12-10", "end": "2025-12-16"}  # end: day 89
    assert assess([egfr(50)], procedures=[session]).finding("kidney-failure") is not None
    session["performedPeriod"] = {"start": "2025-12-10"}  # start: day 95
    assert assess([egfr(50)], procedures=[session]).finding("kidney-failure") is None
