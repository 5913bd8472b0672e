"""Iron rules of docs/rules.md section 2: deficiency, insufficiency for RLS, bands, advisories.

Boundary values are tested on both sides and at the boundary itself. TSAT boundary cases use a
directly measured TSAT (2502-3) so that the only arithmetic is the engine's comparison.
"""

from __future__ import annotations

import pytest
from engine_helpers import (
    CREATININE,
    CRP,
    EGFR,
    EGFR_UNIT,
    FERRITIN,
    FERRITIN_PMOL,
    HS_CRP,
    ICD10CM,
    IRON,
    IRON_UMOL,
    TIBC,
    TIBC_UMOL,
    TSAT,
    UIBC,
    UIBC_OTHER,
    advisory,
    advisory_codes,
    assess,
    condition,
    obs,
    patient,
    reasons_for,
    ref,
)

pytestmark = pytest.mark.unit


def ferritin(value: float, *, days_ago: int = 10, **kw: object) -> dict:
    return obs(FERRITIN, value, "ug/L", days_ago=days_ago, **kw)


def tsat(value: float, *, days_ago: int = 10, **kw: object) -> dict:
    return obs(TSAT, value, "%", days_ago=days_ago, **kw)


def crp(value: float, *, days_ago: int = 10, loinc: str = CRP, unit: str = "mg/L") -> dict:
    return obs(loinc, value, unit, days_ago=days_ago)


def labs(f: float | None, t: float | None) -> list[dict]:
    return [*([ferritin(f)] if f is not None else []), *([tsat(t)] if t is not None else [])]


def codes(observations: list[dict], **kw: object) -> set[str]:
    return set(assess(observations, **kw).finding_codes)


# --- iron-deficiency ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ferritin_value", "deficient"),
    [(0, True), (14.9, True), (15, False), (15.1, False), (69, False)],
)
def test_iron_deficiency_is_ferritin_below_15(ferritin_value: float, deficient: bool) -> None:
    found = codes(labs(ferritin_value, 30))
    assert ("iron-deficiency" in found) is deficient
    # ferritin <= 75 without deficiency is insufficiency: exactly one of the two holds
    assert ("iron-insufficient-for-rls" in found) is not deficient


def test_iron_deficiency_records_threshold_and_basis() -> None:
    f = ferritin(10)
    finding = assess([f]).finding("iron-deficiency")
    assert finding is not None
    assert [(t.comparator, t.value, t.unit) for t in finding.thresholds] == [("<", 15, "ug/L")]
    assert finding.basis == (ref(f),)
    assert finding.values[0].value.value == 10


@pytest.mark.parametrize(
    ("ferritin_value", "crp_value", "crp_days_after_ferritin", "deficient"),
    [
        (69, 5.1, 0, True),
        (69.9, 5.1, 0, True),
        (70, 5.1, 0, False),
        (70.1, 5.1, 0, False),
        (69, 5, 0, False),  # CRP must be > 5
        (69, 5.01, 0, True),
        (14.9, 5, 0, True),  # plain deficiency needs no CRP
        (69, 5.1, -7, True),  # CRP 7 days before the ferritin
        (69, 5.1, -8, False),
        (69, 5.1, 7, True),  # CRP 7 days after the ferritin
        (69, 5.1, 8, False),
        (16, 100, 0, True),
    ],
)
def test_iron_deficiency_with_inflammation_is_ferritin_below_70(
    ferritin_value: float, crp_value: float, crp_days_after_ferritin: int, deficient: bool
) -> None:
    observations = [
        ferritin(ferritin_value, days_ago=20),
        tsat(30, days_ago=20),
        crp(crp_value, days_ago=20 - crp_days_after_ferritin),
    ]
    found = codes(observations)
    assert ("iron-deficiency" in found) is deficient
    assert not {"iron-deficiency", "iron-insufficient-for-rls"} <= found


@pytest.mark.parametrize(
    ("loinc", "value", "unit", "inflamed"),
    [
        (HS_CRP, 5.1, "mg/L", True),
        (HS_CRP, 5, "mg/L", False),
        (CRP, 0.51, "mg/dL", True),
        (CRP, 0.5, "mg/dL", False),
    ],
)
def test_inflammation_accepts_hs_crp_and_mg_per_dl(loinc: str, value: float, unit: str, inflamed: bool) -> None:
    assessment = assess([ferritin(50), tsat(30), crp(value, loinc=loinc, unit=unit)])
    assert (assessment.finding("iron-deficiency") is not None) is inflamed
    assert assessment.context.inflammation is inflamed


def test_iron_deficiency_with_inflammation_names_threshold_70_and_the_crp() -> None:
    f, c = ferritin(50), crp(12)
    finding = assess([f, tsat(30), c]).finding("iron-deficiency")
    assert finding is not None
    assert [(t.comparator, t.value) for t in finding.thresholds] == [("<", 70)]
    assert set(finding.basis) == {ref(f), ref(c)}
    assert finding.note is not None
    assert "70" in finding.note


@pytest.mark.parametrize(
    ("crp_value", "crp_days_after_ferritin", "caveat"),
    [(5.1, 0, True), (5, 0, False), (40, 7, True), (40, 8, False), (40, -7, True), (40, -8, False)],
)
def test_ferritin_inflammation_caveat_whenever_inflammation_accompanies_ferritin(
    crp_value: float, crp_days_after_ferritin: int, caveat: bool
) -> None:
    # ferritin 300 is high: the caveat does not depend on a low ferritin
    assessment = assess(
        [ferritin(300, days_ago=20), tsat(30, days_ago=20), crp(crp_value, days_ago=20 - crp_days_after_ferritin)]
    )
    assert ("ferritin-inflammation-caveat" in advisory_codes(assessment)) is caveat
    assert assessment.finding("iron-deficiency") is None


def test_no_inflammation_caveat_without_a_ferritin() -> None:
    assert "ferritin-inflammation-caveat" not in advisory_codes(assess([tsat(30), crp(50)]))


# --- iron-insufficient-for-rls ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ferritin_value", "tsat_value", "insufficient"),
    [
        (15, 30, True),
        (74.9, 30, True),
        (75, 30, True),
        (75.1, 30, False),
        (200, 19.9, True),
        (200, 20, False),
        (200, 20.1, False),
        (75.1, 19.9, True),
        (50, 10, True),
    ],
)
def test_iron_insufficient_is_ferritin_at_most_75_or_tsat_below_20(
    ferritin_value: float, tsat_value: float, insufficient: bool
) -> None:
    found = codes(labs(ferritin_value, tsat_value))
    assert ("iron-insufficient-for-rls" in found) is insufficient
    assert "iron-deficiency" not in found


@pytest.mark.parametrize(
    "observations",
    [
        [ferritin(14.9), tsat(10)],
        [ferritin(5), tsat(50)],
        [ferritin(50), tsat(10), crp(20)],
        [ferritin(5, comparator="<"), tsat(10)],
    ],
)
def test_never_both_deficiency_and_insufficiency(observations: list[dict]) -> None:
    found = codes(observations)
    assert "iron-deficiency" in found
    assert "iron-insufficient-for-rls" not in found


def test_insufficiency_basis_is_what_triggered_it() -> None:
    f, t = ferritin(60), tsat(12)
    finding = assess([f, t]).finding("iron-insufficient-for-rls")
    assert finding is not None
    assert set(finding.basis) == {ref(f), ref(t)}
    assert {(th.name, th.comparator, th.value) for th in finding.thresholds} >= {
        ("ferritin", "<=", 75),
        ("tsat", "<", 20),
    }


# Section 2: iron-deficiency needs a ferritin, so TSAT < 20 alone is insufficiency (regression: fixed in a040851)
def test_tsat_below_20_without_ferritin_is_insufficient_and_missing_studies() -> None:
    found = codes([tsat(15)])
    assert found == {"iron-insufficient-for-rls", "missing-iron-studies"}


# --- transferrin saturation computed from iron and TIBC -----------------------------------------------


@pytest.mark.parametrize(
    ("iron", "tibc", "insufficient"),
    [
        (obs(IRON, 50, "ug/dL"), obs(TIBC, 300, "ug/dL"), True),  # 16.7 %
        (obs(IRON, 59.7, "ug/dL"), obs(TIBC, 300, "ug/dL"), True),  # 19.9 %
        (obs(IRON, 60.3, "ug/dL"), obs(TIBC, 300, "ug/dL"), False),  # 20.1 %
        (obs(IRON, 70, "ug/dL"), obs(TIBC, 300, "ug/dL"), False),  # 23.3 %
        (obs(IRON_UMOL, 9, "umol/L"), obs(TIBC_UMOL, 54, "umol/L"), True),  # 16.7 %
        (obs(IRON_UMOL, 12.5, "umol/L"), obs(TIBC_UMOL, 54, "umol/L"), False),  # 23.1 %
        (obs(IRON, 50, "ug/dL"), obs(TIBC_UMOL, 53.715, "umol/L"), True),  # TIBC 300 ug/dL
        (obs(IRON_UMOL, 12.5, "umol/L"), obs(TIBC, 300, "ug/dL"), False),  # iron 69.8 ug/dL: 23.3 %
        (obs(IRON, 50, "ug/dL", at="07:00:00"), obs(TIBC, 300, "ug/dL", at="16:00:00"), True),
    ],
)
def test_tsat_computed_from_same_day_iron_and_tibc(iron: dict, tibc: dict, insufficient: bool) -> None:
    assessment = assess([ferritin(200), iron, tibc])
    assert "missing-iron-studies" not in assessment.finding_codes
    finding = assessment.finding("iron-insufficient-for-rls")
    assert (finding is not None) is insufficient
    if finding is not None:
        [value] = [v for v in finding.values if v.analyte == "tsat"]
        assert value.computed
        assert set(value.observations) == {ref(iron), ref(tibc)}


def test_computed_tsat_value() -> None:
    iron, tibc = obs(IRON, 50, "ug/dL"), obs(TIBC, 300, "ug/dL")
    finding = assess([ferritin(200), iron, tibc]).finding("iron-insufficient-for-rls")
    assert finding is not None
    [value] = [v for v in finding.values if v.analyte == "tsat"]
    assert value.value.value == pytest.approx(50 / 300 * 100)
    assert value.unit == "%"


def test_tsat_not_computed_from_different_days() -> None:
    assessment = assess([ferritin(200), obs(IRON, 50, "ug/dL", days_ago=10), obs(TIBC, 300, "ug/dL", days_ago=11)])
    assert "missing-iron-studies" in assessment.finding_codes
    assert "iron-insufficient-for-rls" not in assessment.finding_codes


@pytest.mark.parametrize("uibc_code", [UIBC, UIBC_OTHER])
def test_uibc_is_never_used_as_tibc(uibc_code: str) -> None:
    uibc = obs(uibc_code, 300, "ug/dL")
    assessment = assess([ferritin(200), obs(IRON, 50, "ug/dL"), uibc])
    assert "missing-iron-studies" in assessment.finding_codes
    assert "iron-insufficient-for-rls" not in assessment.finding_codes
    assert reasons_for(assessment, uibc) == ["unknown-code"]


@pytest.mark.parametrize(
    ("iron", "tibc", "insufficient"),
    [
        (obs(IRON, 10, "ug/dL", comparator="<"), obs(TIBC, 300, "ug/dL"), True),  # TSAT < 3.3 %
        (obs(IRON, 50, "ug/dL"), obs(TIBC, 300, "ug/dL", comparator=">"), True),  # TSAT < 16.7 %
        (obs(IRON, 70, "ug/dL"), obs(TIBC, 300, "ug/dL", comparator="<"), False),  # TSAT > 23.3 %
        (obs(IRON, 70, "ug/dL", comparator="<"), obs(TIBC, 300, "ug/dL"), None),  # TSAT < 23.3 %: undecided
    ],
)
def test_computed_tsat_from_one_bound(iron: dict, tibc: dict, insufficient: bool | None) -> None:
    assessment = assess([ferritin(200), iron, tibc])
    found = "iron-insufficient-for-rls" in assessment.finding_codes
    if insufficient is None:
        assert not found
        assert {n.reason for n in assessment.not_evaluable} & {"comparator-indeterminate", "indeterminate"}
    else:
        assert found is insufficient


def test_computed_tsat_from_two_bounds_that_agree() -> None:
    iron, tibc = obs(IRON, 45, "ug/dL", comparator="<"), obs(TIBC, 300, "ug/dL", comparator=">")
    assessment = assess([ferritin(150), iron, tibc])
    assert "iron-insufficient-for-rls" in assessment.finding_codes
    assert assessment.iron_band == "iv-only"  # D10: TSAT < 15 % with ferritin 150


def test_measured_tsat_is_preferred_to_computed() -> None:
    observations = [ferritin(200), tsat(30), obs(IRON, 50, "ug/dL"), obs(TIBC, 300, "ug/dL")]
    assert "iron-insufficient-for-rls" not in codes(observations)
    observations = [ferritin(200), tsat(15), obs(IRON, 70, "ug/dL"), obs(TIBC, 300, "ug/dL")]
    assert "iron-insufficient-for-rls" in codes(observations)


# --- missing-iron-studies -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("observations", "missing"),
    [
        ([ferritin(200), tsat(30)], False),
        ([ferritin(200)], True),
        ([tsat(30)], True),
        ([], True),
        ([ferritin(200), obs(IRON, 70, "ug/dL"), obs(TIBC, 300, "ug/dL")], False),
        ([ferritin(200), obs(IRON, 70, "ug/dL")], True),
        ([ferritin(200, status="preliminary"), tsat(30)], True),
        ([ferritin(200, days_ago=366), tsat(30)], True),
        ([ferritin(200), tsat(30, status="entered-in-error")], True),
    ],
)
def test_missing_iron_studies_when_ferritin_or_tsat_is_missing(observations: list[dict], missing: bool) -> None:
    assert ("missing-iron-studies" in codes(observations)) is missing


# --- iron band (AASM 2024) ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ferritin_value", "tsat_value", "band"),
    [
        # D10 step 1: TSAT >= 45 % first, whatever the ferritin
        (10, 45, "not-indicated"),
        (10, 44.9, "oral-or-iv"),
        (90, 45, "not-indicated"),
        (None, 45, "not-indicated"),
        # step 2: ferritin > 300
        (300.1, 30, "not-indicated"),
        (300.1, 19.9, "not-indicated"),
        (300.1, None, "not-indicated"),
        (300, 19.9, "iv-only"),
        # step 3: ferritin <= 75
        (75, 25, "oral-or-iv"),
        (75, 19.9, "oral-or-iv"),
        (75, None, "oral-or-iv"),
        # step 4: 75 < ferritin <= 100, or TSAT < 20 with ferritin <= 300
        (75.1, 25, "iv-only"),
        (75.1, None, "iv-only"),
        (90, 20, "iv-only"),
        (90, 19.9, "iv-only"),
        (100, 25, "iv-only"),
        (100, None, "iv-only"),
        (100.1, 19.9, "iv-only"),
        (200, 19.9, "iv-only"),
        # step 5: ferritin > 100 and TSAT >= 20
        (100.1, 20, "not-indicated"),
        (100.1, 25, "not-indicated"),
        (300, 20, "not-indicated"),
        (500, 45, "not-indicated"),
        # otherwise indeterminate
        (100.1, None, "indeterminate"),
        (None, 19.9, "indeterminate"),
        (None, 20, "indeterminate"),
        (None, None, "indeterminate"),
    ],
)
def test_iron_band_adult(ferritin_value: float | None, tsat_value: float | None, band: str) -> None:
    assert assess(labs(ferritin_value, tsat_value)).iron_band == band


@pytest.mark.parametrize(
    ("ferritin_kw", "tsat_value", "band"),
    [
        ({"value": 5, "comparator": "<"}, 30, "oral-or-iv"),
        ({"value": 80, "comparator": "<"}, 30, "indeterminate"),  # may be <= 75 or in 75-80
        ({"value": 100, "comparator": ">"}, 30, "not-indicated"),  # > 300 or 100-300: both not-indicated
        ({"value": 100, "comparator": ">"}, 10, "indeterminate"),  # > 300 or iv-only
        ({"value": 80, "comparator": ">"}, 30, "indeterminate"),  # may be 80-100 or > 100
    ],
)
def test_iron_band_with_ferritin_bound(ferritin_kw: dict, tsat_value: float, band: str) -> None:
    f = obs(FERRITIN, ferritin_kw["value"], "ug/L", comparator=ferritin_kw["comparator"])
    assert assess([f, tsat(tsat_value)]).iron_band == band


# --- children (< 18 y) --------------------------------------------------------------------------------

CHILD = patient("female", age_years=10)


@pytest.mark.parametrize(
    ("ferritin_value", "tsat_value", "insufficient", "band_is_oral"),
    [
        (15, 25, True, True),
        (49.9, 25, True, True),
        (50, 25, False, False),
        (60, 25, False, False),  # an adult would be insufficient (<= 75)
        (90, 25, False, False),
        (60, 19.9, True, False),  # D11: TSAT < 20 with ferritin >= 50 is indeterminate for a child
        (101, 25, False, False),
    ],
)
def test_child_ferritin_threshold_is_below_50(
    ferritin_value: float, tsat_value: float, insufficient: bool, band_is_oral: bool
) -> None:
    assessment = assess(labs(ferritin_value, tsat_value), who=CHILD)
    assert ("iron-insufficient-for-rls" in assessment.finding_codes) is insufficient
    assert (assessment.iron_band == "oral-only") is band_is_oral
    assert assessment.iron_band not in ("iv-only", "oral-or-iv")


@pytest.mark.parametrize(("ferritin_value", "tsat_value"), [(75.1, 25), (90, 25), (100, 25), (90, None)])
def test_child_has_no_iv_only_band(ferritin_value: float, tsat_value: float | None) -> None:
    assert assess(labs(ferritin_value, tsat_value), who=patient("male", age_years=12)).iron_band != "iv-only"
    assert assess(labs(ferritin_value, tsat_value), who=patient("male", age_years=18)).iron_band == "iv-only"


def test_child_not_indicated_above_100() -> None:
    assert assess(labs(101, 25), who=CHILD).iron_band == "not-indicated"


def test_child_deficiency_threshold_unchanged() -> None:
    assert "iron-deficiency" in codes(labs(14.9, 25), who=CHILD)
    assert "iron-deficiency" not in codes(labs(15, 25), who=CHILD)


@pytest.mark.parametrize(("age", "insufficient"), [(17, False), (18, True)])
def test_pediatric_threshold_stops_at_18(age: int, insufficient: bool) -> None:
    assessment = assess(labs(60, 25), who=patient("female", age_years=age))
    assert ("iron-insufficient-for-rls" in assessment.finding_codes) is insufficient
    assert ("pediatric-iron-threshold" in advisory_codes(assessment)) is (age < 18)


def test_child_age_is_taken_at_the_evaluation_date() -> None:
    # 18 on the as-of date, 17 when the ferritin was drawn 30 days earlier: adult thresholds apply.
    who = patient("female", age_years=18, age_months=0)
    assessment = assess([ferritin(60, days_ago=30), tsat(25, days_ago=30)], who=who)
    assert "iron-insufficient-for-rls" in assessment.finding_codes


# --- advisories ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tsat_kw", "overload"),
    [
        ({"value": 44.9}, False),
        ({"value": 45}, True),
        ({"value": 45.1}, True),
        ({"value": 90}, True),
        ({"value": 45, "comparator": ">="}, True),
        ({"value": 44, "comparator": ">"}, False),  # may be 44.5: undecided, no advisory
        ({"value": 50, "comparator": "<"}, False),
    ],
)
def test_tsat_overload_advisory_at_45(tsat_kw: dict, overload: bool) -> None:
    t = obs(TSAT, tsat_kw["value"], "%", comparator=tsat_kw.get("comparator"))
    assessment = assess([ferritin(200), t])
    assert ("tsat-iron-overload-risk" in advisory_codes(assessment)) is overload


def test_tsat_overload_advisory_from_computed_tsat() -> None:
    assessment = assess([ferritin(200), obs(IRON, 150, "ug/dL"), obs(TIBC, 300, "ug/dL")])
    assert "tsat-iron-overload-risk" in advisory_codes(assessment)


@pytest.mark.parametrize(
    ("egfr", "ferritin_value", "tsat_value", "advised"),
    [
        (10, 150, 15, True),
        (10, 199.9, 19.9, True),
        (10, 200, 15, False),
        (10, 150, 20, False),
        (14.9, 10, 10, True),
        (15, 150, 15, False),  # G4: not kidney failure
        (50, 150, 15, False),
    ],
)
def test_dialysis_iv_iron_advisory_when_kidney_failure(
    egfr: float, ferritin_value: float, tsat_value: float, advised: bool
) -> None:
    assessment = assess([obs(EGFR, egfr, EGFR_UNIT), ferritin(ferritin_value), tsat(tsat_value)])
    assert ("dialysis-iv-iron-consideration" in advisory_codes(assessment)) is advised


def test_dialysis_iv_iron_advisory_with_dialysis_condition() -> None:
    dialysis = condition("Z99.2", ICD10CM)
    assessment = assess([ferritin(150), tsat(15)], conditions=[dialysis])
    assert "kidney-failure" in assessment.finding_codes
    note = advisory(assessment, "dialysis-iv-iron-consideration")
    assert note is not None


def test_dialysis_iv_iron_advisory_with_creatinine_computed_kidney_failure() -> None:
    # female 50 y, creatinine 5 mg/dL: CKD-EPI 2021 about 9 -> G5
    assessment = assess([obs(CREATININE, 5, "mg/dL"), ferritin(150), tsat(15)])
    assert assessment.gfr_category == "G5"
    assert "dialysis-iv-iron-consideration" in advisory_codes(assessment)


# --- units of ferritin --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("loinc", "value", "unit", "unit_text", "deficient", "insufficient"),
    [
        (FERRITIN_PMOL, 100, "pmol/L", None, False, True),  # 44.5 ug/L
        (FERRITIN_PMOL, 33, "pmol/L", None, True, False),  # 14.69 ug/L
        (FERRITIN_PMOL, 34, "pmol/L", None, False, True),  # 15.13 ug/L
        (FERRITIN_PMOL, 168, "pmol/L", None, False, True),  # 74.77 ug/L
        (FERRITIN_PMOL, 169, "pmol/L", None, False, False),  # 75.21 ug/L
        (FERRITIN, 14.9, "ng/mL", None, True, False),
        (FERRITIN, 15, "ng/mL", None, False, True),
        (FERRITIN, 75.1, "ng/mL", None, False, False),
        (FERRITIN, 14.9, None, "mcg/L", True, False),
        (FERRITIN, 75.1, None, "mcg/L", False, False),
    ],
)
def test_ferritin_units(
    loinc: str, value: float, unit: str | None, unit_text: str | None, deficient: bool, insufficient: bool
) -> None:
    found = codes([obs(loinc, value, unit, unit_text=unit_text), tsat(30)])
    assert ("iron-deficiency" in found) is deficient
    assert ("iron-insufficient-for-rls" in found) is insufficient
    assert "missing-iron-studies" not in found
