"""Iron decisions of rule set 2026.2 (docs/rules.md section 2): D8, D9, D10, D11, D24, D25, D26.

Each boundary is tested on both sides. TSAT is a direct 2502-3 unless the case is about the computed
one; dates are days before the fixed as-of date.
"""

from __future__ import annotations

import pytest
from engine_helpers import (
    CRP,
    FERRITIN,
    ICD10CM,
    IRON,
    TIBC,
    TSAT,
    advisory_codes,
    assess,
    condition,
    obs,
    patient,
)

pytestmark = pytest.mark.unit

DIALYSIS = [condition("Z99.2", ICD10CM)]


def ferritin(value: float, *, days_ago: int = 10, **kw: object) -> dict:
    return obs(FERRITIN, value, "ug/L", days_ago=days_ago, **kw)


def tsat(value: float, *, days_ago: int = 10, **kw: object) -> dict:
    return obs(TSAT, value, "%", days_ago=days_ago, **kw)


def iron_pair(iron_ug_dl: float, tibc_ug_dl: float, *, days_ago: int) -> list[dict]:
    return [obs(IRON, iron_ug_dl, "ug/dL", days_ago=days_ago), obs(TIBC, tibc_ug_dl, "ug/dL", days_ago=days_ago)]


def labs(f: float | None, t: float | None) -> list[dict]:
    return [*([ferritin(f)] if f is not None else []), *([tsat(t)] if t is not None else [])]


def judged_tsat(observations: list[dict]) -> tuple[float, bool]:
    """(TSAT value, computed?) as the insufficiency finding reports it."""
    finding = assess([ferritin(200), *observations]).finding("iron-insufficient-for-rls")
    assert finding is not None
    [value] = [v for v in finding.values if v.analyte == "tsat"]
    return round(value.value.value, 1), value.computed is not None


# --- D8: the latest TSAT wins, direct or computed; same day, direct -----------------------------------


@pytest.mark.parametrize(
    ("direct_days_ago", "pair_days_ago", "expected"),
    [
        (20, 10, (10.0, True)),  # computed is newer: it wins
        (10, 20, (15.0, False)),  # direct is newer
        (10, 10, (15.0, False)),  # same day: direct wins
        (11, 10, (10.0, True)),  # one day apart
    ],
)
def test_d8_latest_tsat_by_date(direct_days_ago: int, pair_days_ago: int, expected: tuple[float, bool]) -> None:
    observations = [tsat(15, days_ago=direct_days_ago), *iron_pair(30, 300, days_ago=pair_days_ago)]
    assert judged_tsat(observations) == expected


def test_d8_newer_computed_tsat_decides_the_finding() -> None:
    # direct TSAT 15 % 30 days ago, computed 25 % 5 days ago: not insufficient (ferritin 200)
    observations = [ferritin(200), tsat(15, days_ago=30), *iron_pair(75, 300, days_ago=5)]
    assert "iron-insufficient-for-rls" not in assess(observations).finding_codes


# --- D25: computed TSAT from the latest day with both iron and TIBC -----------------------------------


def test_d25_older_pair_counts_when_it_is_the_latest_pair() -> None:
    observations = [
        *iron_pair(30, 300, days_ago=40),  # the latest day with both: 10 %
        obs(IRON, 90, "ug/dL", days_ago=5),  # a newer iron without a TIBC that day
        obs(TIBC, 300, "ug/dL", days_ago=3),
    ]
    assert judged_tsat(observations) == (10.0, True)


def test_d25_the_latest_pair_day_wins_over_an_older_pair() -> None:
    observations = [*iron_pair(30, 300, days_ago=40), *iron_pair(45, 300, days_ago=20)]
    assert judged_tsat(observations) == (15.0, True)


# --- D9: children under 5 -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("age", "ferritin_value", "crp_value", "deficient"),
    [
        (4, 11.9, 1, True),
        (4, 12, 1, False),
        (4, 14.9, 1, False),  # 5 years and over this would be deficient
        (4, 29.9, 20, True),
        (4, 30, 20, False),
        (4, 69, 20, False),
        (5, 12, 1, True),  # from 5 years: 15
        (5, 14.9, 1, True),
        (5, 15, 1, False),
        (5, 69.9, 20, True),
        (5, 70, 20, False),
    ],
)
def test_d9_young_child_ferritin_thresholds(age: int, ferritin_value: float, crp_value: float, deficient: bool) -> None:
    who = patient("male", age_years=age)
    assessment = assess([ferritin(ferritin_value), tsat(30), obs(CRP, crp_value, "mg/L")], who=who)
    assert (assessment.finding("iron-deficiency") is not None) is deficient


def test_d9_young_child_threshold_is_stated() -> None:
    finding = assess([ferritin(11), tsat(30)], who=patient("male", age_years=3)).finding("iron-deficiency")
    assert finding is not None
    assert [(t.comparator, t.value) for t in finding.thresholds] == [("<", 12)]
    assert finding.note == "Under 5 years (WHO 2020): ferritin threshold 12 ug/L, 30 ug/L with inflammation."


# --- D10: the adult band and its advisories (boundaries in test_engine_iron.test_iron_band_adult) ------


@pytest.mark.parametrize(
    ("ferritin_value", "tsat_value", "advised"),
    [(300.1, 19.9, True), (300, 19.9, False), (300.1, 20, False), (1600, 8, True), (200, 10, False)],
)
def test_d10_high_ferritin_low_tsat_advisory(ferritin_value: float, tsat_value: float, advised: bool) -> None:
    assessment = assess(labs(ferritin_value, tsat_value))
    assert ("high-ferritin-low-tsat" in advisory_codes(assessment)) is advised
    if advised:
        assert assessment.iron_band == "not-indicated"


def test_d10_findings_unchanged_but_advice_never_suggests_therapy_when_not_indicated() -> None:
    assessment = assess(labs(40, 50))
    assert assessment.iron_band == "not-indicated"
    assert "tsat-iron-overload-risk" in advisory_codes(assessment)
    finding = assessment.finding("iron-insufficient-for-rls")
    assert finding is not None
    assert finding.advice_key == "iron-insufficient-for-rls.not-indicated"
    deficiency = assess(labs(10, 45)).finding("iron-deficiency")
    assert deficiency is not None
    assert deficiency.advice_key == "iron-deficiency.not-indicated"


# --- D11 and D26: children ----------------------------------------------------------------------------

CHILD = patient("female", age_years=10)


@pytest.mark.parametrize(
    ("ferritin_value", "tsat_value", "band"),
    [
        (49.9, 25, "oral-only"),
        (49.9, None, "oral-only"),
        (49.9, 19.9, "oral-only"),
        (50, 20, "not-indicated"),
        (50, 19.9, "indeterminate"),
        (50, None, "indeterminate"),
        (80, 25, "not-indicated"),  # an adult would be iv-only
        (None, 19.9, "indeterminate"),
        # D26: TSAT >= 45 % first, for children too
        (10, 45, "not-indicated"),
        (10, 44.9, "oral-only"),
    ],
)
def test_d11_d26_child_band(ferritin_value: float | None, tsat_value: float | None, band: str) -> None:
    assert assess(labs(ferritin_value, tsat_value), who=CHILD).iron_band == band


@pytest.mark.parametrize(("age", "band"), [(17, "not-indicated"), (18, "iv-only")])
def test_d11_child_band_stops_at_18(age: int, band: str) -> None:
    assert assess(labs(80, 25), who=patient("female", age_years=age)).iron_band == band


def test_d11_no_dialysis_iv_advisory_for_a_child() -> None:
    assessment = assess(labs(40, 10), who=CHILD, conditions=DIALYSIS)
    assert "dialysis-iv-iron-consideration" not in advisory_codes(assessment)
    assert assessment.iron_band == "oral-only"


def test_d26_high_ferritin_low_tsat_at_any_age() -> None:
    assert "high-ferritin-low-tsat" in advisory_codes(assess(labs(400, 10), who=CHILD))


def test_d26_insufficiency_still_reported_with_not_indicated_wording() -> None:
    assessment = assess(labs(30, 50), who=CHILD)
    assert assessment.iron_band == "not-indicated"
    finding = assessment.finding("iron-insufficient-for-rls")
    assert finding is not None
    assert finding.advice_key == "iron-insufficient-for-rls.not-indicated"


@pytest.mark.parametrize(
    ("observations", "missing"),
    [
        ([ferritin(200), obs(FERRITIN, 10, "ug/L", comparator=">"), tsat(30)], False),
        ([ferritin(200), *iron_pair(50, 300, days_ago=10)], False),
        ([ferritin(200), obs(IRON, 50, "ug/dL", comparator="<"), obs(TIBC, 300, "ug/dL", comparator="<")], False),
        ([ferritin(200)], True),
    ],
)
def test_d26_an_indeterminate_result_counts_as_done(observations: list[dict], missing: bool) -> None:
    assert ("missing-iron-studies" in assess(observations).finding_codes) is missing


# --- D24: dialysis band -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ferritin_value", "tsat_value", "band"),
    [
        (199.9, 19.9, "iv-only"),
        (10, 10, "iv-only"),
        (200, 19.9, "not-indicated"),
        (199.9, 20, "not-indicated"),
        (50, 25, "not-indicated"),  # would be oral-or-iv without dialysis
        (199.9, None, "indeterminate"),
        (None, 19.9, "indeterminate"),
        (250, None, "not-indicated"),
        (None, 25, "not-indicated"),
        (150, 45, "not-indicated"),  # TSAT >= 45 % first
        (150, 44.9, "not-indicated"),
    ],
)
def test_d24_dialysis_band(ferritin_value: float | None, tsat_value: float | None, band: str) -> None:
    assessment = assess(labs(ferritin_value, tsat_value), conditions=DIALYSIS)
    assert assessment.iron_band == band
    if band == "iv-only":
        assert assessment.iron_band_advice == "iron-band.dialysis.iv-only"


def test_d24_kidney_failure_by_egfr_alone_keeps_the_adult_band() -> None:
    from engine_helpers import EGFR, EGFR_UNIT

    assessment = assess([*labs(50, 25), obs(EGFR, 10, EGFR_UNIT)])
    assert "kidney-failure" in assessment.finding_codes
    assert assessment.iron_band == "oral-or-iv"


def test_every_advice_entry_the_engine_can_pick_exists() -> None:
    from engine_helpers import knowledge

    advice = knowledge().ruleset.advice
    for code in ("iron-deficiency", "iron-insufficient-for-rls"):
        for variant in ("child", "pregnancy", "dialysis", "not-indicated", "indeterminate"):
            assert f"{code}.{variant}" in advice
    for band in ("oral-or-iv", "iv-only", "not-indicated", "indeterminate"):
        assert f"iron-band.{band}" in advice
    assert {"iron-band.child.oral-only", "iron-band.dialysis.iv-only", "iron-band.pregnancy.oral-or-iv"} <= set(advice)


@pytest.mark.parametrize(("analyte", "missing"), [("ferritin", False), ("tsat", False), ("crp", True)])
def test_d26_a_same_time_conflict_counts_as_done(analyte: str, missing: bool) -> None:
    """D3 leaves conflicting same-time results indeterminate; for D26 the study was still done."""
    from engine_helpers import ADULT_FEMALE, AS_OF, knowledge

    from rls_screen.engine import evaluate
    from rls_screen.model import NotEvaluable

    present = [tsat(30)] if analyte == "ferritin" else [ferritin(200)]
    conflict = NotEvaluable("indeterminate", "conflicting results at the same time", analyte)
    assessment = evaluate(ADULT_FEMALE, present, as_of=AS_OF, knowledge=knowledge(), not_evaluable=[conflict])
    assert ("missing-iron-studies" in assessment.finding_codes) is missing
