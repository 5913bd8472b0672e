"""Which results count: selection rules S1-S5 of docs/rules.md section 1, through ``evaluate``.

Each case uses one analyte whose single threshold makes "used" visible: ferritin 10 ug/L is iron
deficiency when the result is used, and absent otherwise.
"""

from __future__ import annotations

import pytest
from engine_helpers import (
    AS_OF,
    EGFR_TIER_0,
    EGFR_TIER_1,
    EGFR_TIER_2,
    EGFR_TIER_3,
    EGFR_UNIT,
    FERRITIN,
    assess,
    day,
    not_evaluable,
    obs,
    reasons_for,
    ref,
)

pytestmark = pytest.mark.unit


def _deficient(observations: list[dict]) -> bool:
    return assess(observations).finding("iron-deficiency") is not None


# --- S1 status ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["final", "amended", "corrected"])
def test_s1_usable_statuses_are_used(status: str) -> None:
    ferritin = obs(FERRITIN, 10, "ug/L", status=status)
    assessment = assess([ferritin])
    assert assessment.finding("iron-deficiency") is not None
    assert reasons_for(assessment, ferritin) == []


@pytest.mark.parametrize("status", ["entered-in-error", "cancelled"])
def test_s1_ignored_statuses_are_not_used(status: str) -> None:
    ferritin = obs(FERRITIN, 10, "ug/L", status=status)
    assessment = assess([ferritin])
    assert assessment.finding("iron-deficiency") is None
    assert reasons_for(assessment, ferritin) == ["entered-in-error"]


@pytest.mark.parametrize("status", ["preliminary", "registered", "unknown"])
def test_s1_pending_statuses_are_not_used_and_reported_pending(status: str) -> None:
    ferritin = obs(FERRITIN, 10, "ug/L", status=status)
    assessment = assess([ferritin])
    assert assessment.finding("iron-deficiency") is None
    assert reasons_for(assessment, ferritin) == ["pending"]


@pytest.mark.parametrize("status", ["entered-in-error", "cancelled", "preliminary", "registered", "unknown"])
def test_s1_unusable_newer_result_does_not_hide_older_final_one(status: str) -> None:
    older = obs(FERRITIN, 10, "ug/L", days_ago=20)
    newer = obs(FERRITIN, 200, "ug/L", days_ago=2, status=status)
    assert _deficient([older, newer])


# --- S2 window and effective date --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("days_ago", "used", "reason"),
    [
        (0, True, None),
        (1, True, None),
        (364, True, None),
        (365, True, None),
        (366, False, "stale"),
        (1000, False, "stale"),
        (-1, False, "after-as-of"),
        (-30, False, "after-as-of"),
    ],
)
def test_s2_window_is_the_365_days_up_to_as_of(days_ago: int, used: bool, reason: str | None) -> None:
    ferritin = obs(FERRITIN, 10, "ug/L", days_ago=days_ago)
    assessment = assess([ferritin])
    assert (assessment.finding("iron-deficiency") is not None) is used
    assert reasons_for(assessment, ferritin) == ([] if reason is None else [reason])


def test_s2_stale_result_is_reported_with_its_date() -> None:
    ferritin = obs(FERRITIN, 10, "ug/L", days_ago=400)
    [entry] = not_evaluable(assess([ferritin]), observation=ref(ferritin))
    assert (entry.reason, entry.analyte, entry.effective) == ("stale", "ferritin", day(400))


def _dated(**dates: object) -> dict:
    resource = obs(FERRITIN, 10, "ug/L", effective=None, id="dated")
    resource.update(dates)
    return resource


@pytest.mark.parametrize(
    ("dates", "used"),
    [
        ({"effectiveDateTime": day(10).isoformat()}, True),
        ({"effectiveDateTime": f"{day(10).isoformat()}T09:30:00+01:00"}, True),
        ({"effectivePeriod": {"start": day(400).isoformat(), "end": day(10).isoformat()}}, True),
        ({"effectivePeriod": {"start": day(10).isoformat(), "end": day(400).isoformat()}}, False),
        ({"issued": f"{day(10).isoformat()}T10:00:00Z"}, True),
        ({"issued": f"{day(400).isoformat()}T10:00:00Z"}, False),
        # effectiveDateTime wins over effectivePeriod.end and issued
        ({"effectiveDateTime": day(400).isoformat(), "issued": f"{day(10).isoformat()}T10:00:00Z"}, False),
        ({"effectiveDateTime": day(10).isoformat(), "issued": f"{day(400).isoformat()}T10:00:00Z"}, True),
        (
            {
                "effectiveDateTime": day(10).isoformat(),
                "effectivePeriod": {"end": day(400).isoformat()},
            },
            True,
        ),
        # effectivePeriod.end wins over issued
        (
            {
                "effectivePeriod": {"end": day(400).isoformat()},
                "issued": f"{day(10).isoformat()}T10:00:00Z",
            },
            False,
        ),
        (
            {
                "effectivePeriod": {"end": day(10).isoformat()},
                "issued": f"{day(400).isoformat()}T10:00:00Z",
            },
            True,
        ),
        # D4: a period without an end is dated by its start, before issued
        (
            {
                "effectivePeriod": {"start": day(400).isoformat()},
                "issued": f"{day(10).isoformat()}T10:00:00Z",
            },
            False,
        ),
    ],
)
def test_s2_effective_date_is_datetime_else_period_end_else_start_else_issued(dates: dict, used: bool) -> None:
    assert _deficient([_dated(**dates)]) is used


def test_s2_result_without_any_date_is_not_used() -> None:
    ferritin = _dated()
    assessment = assess([ferritin])
    assert assessment.finding("iron-deficiency") is None
    assert reasons_for(assessment, ferritin) == ["no-effective-date"]


def test_s2_as_of_is_the_evaluation_date_not_today() -> None:
    ferritin = obs(FERRITIN, 10, "ug/L", days_ago=10)
    assert assess([ferritin]).finding("iron-deficiency") is not None
    later = assess([ferritin], as_of=day(-400))
    assert later.finding("iron-deficiency") is None
    assert reasons_for(later, ferritin) == ["stale"]


# --- S3 latest wins -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("older", "newer", "deficient"),
    [(10, 200, False), (200, 10, True)],
)
def test_s3_latest_result_wins(older: float, newer: float, deficient: bool) -> None:
    first = obs(FERRITIN, older, "ug/L", days_ago=30)
    second = obs(FERRITIN, newer, "ug/L", days_ago=3)
    assert _deficient([first, second]) is deficient
    assert _deficient([second, first]) is deficient


@pytest.mark.parametrize(
    ("morning", "evening", "deficient"),
    [(10, 200, False), (200, 10, True)],
)
def test_s3_latest_wins_within_a_day_by_time(morning: float, evening: float, deficient: bool) -> None:
    early = obs(FERRITIN, morning, "ug/L", days_ago=3, at="08:00:00")
    late = obs(FERRITIN, evening, "ug/L", days_ago=3, at="17:00:00")
    assert _deficient([late, early]) is deficient


def test_s3_latest_compares_instants_across_time_zones() -> None:
    # 08:00+02:00 is 06:00Z, earlier than 07:30Z.
    earlier = obs(FERRITIN, 10, "ug/L", days_ago=3, at="08:00:00+02:00")
    later = obs(FERRITIN, 200, "ug/L", days_ago=3, at="07:30:00Z")
    assert not _deficient([later, earlier])
    assert not _deficient([earlier, later])


TIERS = [EGFR_TIER_0, EGFR_TIER_1, EGFR_TIER_2, EGFR_TIER_3]
TIER_PAIRS = [
    (high_code, low_code)
    for high in range(4)
    for low in range(high + 1, 4)
    for high_code in TIERS[high]
    for low_code in TIERS[low]
]


@pytest.mark.parametrize(("preferred", "other"), TIER_PAIRS)
def test_s3_same_day_egfr_goes_to_the_higher_precedence_code(preferred: str, other: str) -> None:
    # The lower-precedence code is later in the day and would win on time alone.
    better = obs(preferred, 50, EGFR_UNIT, days_ago=5, at="08:00:00")
    worse = obs(other, 95, EGFR_UNIT, days_ago=5, at="20:00:00")
    assert assess([worse, better]).gfr_category == "G3a"
    # ...and the other way round: the preferred code later in the day still wins.
    better_late = obs(preferred, 95, EGFR_UNIT, days_ago=5, at="20:00:00")
    worse_early = obs(other, 50, EGFR_UNIT, days_ago=5, at="08:00:00")
    assert assess([worse_early, better_late]).gfr_category == "G1"


@pytest.mark.parametrize("tier", [1, 2, 3])
def test_s3_egfr_on_a_newer_day_wins_even_with_lower_precedence(tier: int) -> None:
    older_tier_0 = obs(EGFR_TIER_0[0], 50, EGFR_UNIT, days_ago=6, at="23:00:00")
    newer = obs(TIERS[tier][0], 95, EGFR_UNIT, days_ago=5, at="01:00:00")
    assert assess([older_tier_0, newer]).gfr_category == "G1"


# --- S4 data absent; unit not understood ------------------------------------------------------------


def test_s4_data_absent_reason_is_not_usable() -> None:
    ferritin = obs(
        FERRITIN,
        None,
        None,
        dataAbsentReason={
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/data-absent-reason", "code": "error"}]
        },
    )
    assessment = assess([ferritin])
    assert assessment.finding("iron-deficiency") is None
    assert assessment.finding("missing-iron-studies") is not None
    assert reasons_for(assessment, ferritin) == ["no-value"]


def test_s4_data_absent_newer_result_does_not_hide_older_value() -> None:
    older = obs(FERRITIN, 10, "ug/L", days_ago=30)
    absent = obs(FERRITIN, None, None, days_ago=2, dataAbsentReason={"text": "haemolysed"})
    assert _deficient([older, absent])


def test_s4_unit_that_cannot_be_converted_is_not_used() -> None:
    ferritin = obs(FERRITIN, 10, "mg/dL")
    assessment = assess([ferritin])
    assert assessment.finding("iron-deficiency") is None
    assert reasons_for(assessment, ferritin) == ["unit-not-understood"]


# --- S5 comparators -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("comparator", "value", "deficient", "reason"),
    [
        ("<", 5, True, None),  # S5's own example: "ferritin <5" is below 15
        ("<", 15, True, None),  # true value < 15
        ("<=", 14.9, True, None),
        ("<=", 15, False, "comparator-indeterminate"),  # could be exactly 15
        ("<", 20, False, "comparator-indeterminate"),
        (">", 15, False, None),
        (">=", 15, False, None),
        (">", 10, False, "comparator-indeterminate"),
        (">=", 14.9, False, "comparator-indeterminate"),
    ],
)
def test_s5_comparator_decides_or_is_indeterminate(
    comparator: str, value: float, deficient: bool, reason: str | None
) -> None:
    ferritin = obs(FERRITIN, value, "ug/L", comparator=comparator)
    assessment = assess([ferritin])
    assert (assessment.finding("iron-deficiency") is not None) is deficient
    reasons = [n.reason for n in not_evaluable(assessment, analyte="ferritin")]
    if reason is None:
        assert "comparator-indeterminate" not in reasons
    else:
        assert reason in reasons


@pytest.mark.parametrize(
    ("comparator", "value", "category"),
    [
        (">", 90, "G1"),
        (">=", 90, "G1"),
        (">", 60, None),  # S5's own example: >60 cannot tell G1 from G2
        (">=", 60, None),
        ("<", 15, "G5"),
        ("<", 10, "G5"),
        ("<=", 15, None),
        ("<", 20, None),
    ],
)
def test_s5_egfr_comparator(comparator: str, value: float, category: str | None) -> None:
    egfr = obs(EGFR_TIER_1[0], value, EGFR_UNIT, comparator=comparator)
    assessment = assess([egfr])
    assert assessment.gfr_category == category
    if category is None:
        assert {n.reason for n in not_evaluable(assessment, analyte="egfr")} & {
            "comparator-indeterminate",
            "indeterminate",
        }
        assert assessment.finding("reduced-kidney-function") is None


def test_s5_egfr_above_60_is_not_a_number() -> None:
    assessment = assess([obs(EGFR_TIER_1[0], 60, EGFR_UNIT, comparator=">")])
    assert assessment.gfr_category is None
    assert assessment.finding("kidney-failure") is None
    assert assessment.finding("reduced-kidney-function") is None


def test_selection_uses_as_of_argument_for_every_day_count() -> None:
    # The module never reads the clock: an as-of date far in the past judges the same data.
    as_of = AS_OF.replace(year=2001)
    ferritin = obs(FERRITIN, 10, "ug/L", days_ago=365, as_of=as_of)
    assessment = assess([ferritin], as_of=as_of)
    assert assessment.finding("iron-deficiency") is not None
    assert assessment.as_of == as_of


def test_duplicate_resource_counts_once() -> None:
    ferritin = obs(FERRITIN, 10, "ug/L")
    assessment = assess([ferritin, dict(ferritin)])
    [finding] = [f for f in assessment.findings if f.code == "iron-deficiency"]
    assert finding.basis == (ref(ferritin),)


# --- section 6: local lab codes count only through an exact ConceptMap mapping -------------------------

LOCAL = "https://lab.example-hospital.org/codes"


@pytest.mark.parametrize(
    ("local_code", "deficient"),
    [
        ("FERR", True),  # equivalent to LOINC 2276-4
        ("FERR-POC", False),  # mapped 'inexact': a guess, not used
        ("UNKNOWN", False),
    ],
)
def test_local_code_maps_through_conceptmap(local_code: str, deficient: bool) -> None:
    ferritin = obs(local_code, 10, "ug/L", code_system=LOCAL)
    assessment = assess([ferritin])
    assert (assessment.finding("iron-deficiency") is not None) is deficient
    if not deficient:
        assert reasons_for(assessment, ferritin) == ["unknown-code"]


def test_local_egfr_code_keeps_its_loinc_precedence() -> None:
    # EGFR21 maps to 98979-8 (tier 1): on the same day it beats a tier-3 code, and loses to tier 0
    local = obs("EGFR21", 50, EGFR_UNIT, code_system=LOCAL, days_ago=5, at="08:00:00")
    assert assess([local, obs(EGFR_TIER_3[0], 95, EGFR_UNIT, days_ago=5, at="20:00:00")]).gfr_category == "G3a"
    assert assess([local, obs(EGFR_TIER_0[0], 95, EGFR_UNIT, days_ago=5, at="07:00:00")]).gfr_category == "G1"
