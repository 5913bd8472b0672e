"""Rule set 2026.3 (docs/rules.md section 11, W1-W13) at every boundary: B12, folate, HbA1c, dehydration,
hypernatremia, AUDIT-C and the caffeine note.

Each table row is one vignette: what the patient's data say and which section-11 finding (if any) must
come out. The findings are mimics or aggravators: they appear only when a usable result is abnormal
and are never reported as missing.
"""

from __future__ import annotations

from typing import Any

import pytest
from tests.unit.engine_helpers import (
    ADULT_FEMALE,
    ADULT_MALE,
    CREATININE,
    FERRITIN,
    HEMOGLOBIN,
    POTASSIUM,
    TSAT,
    advisory,
    advisory_codes,
    assess,
    obs,
    patient,
    pregnancy,
    ref,
)

from rls_screen.model import Assessment, Sex

pytestmark = pytest.mark.unit

B12 = "2132-9"
FOLATE = "2284-8"
HBA1C = "4548-4"
HBA1C_HPLC = "17856-6"
HBA1C_IFCC = "59261-8"
OSMOLALITY = "2692-2"
SODIUM = "2951-2"
SODIUM_BLOOD = "2947-0"
GLUCOSE = "2345-7"
UREA_NITROGEN = "3094-0"
AUDIT_C = "75626-2"
SURVEY = [
    {
        "coding": [
            {"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "survey"},
        ]
    }
]

SECTION_11 = {
    "hypernatremia",
    "possible-dehydration",
    "b12-deficiency",
    "b12-borderline",
    "folate-deficiency",
    "hba1c-diabetes-range",
    "hba1c-prediabetes-range",
    "alcohol-use-positive",
}


def section_11(assessment: Assessment) -> set[str]:
    return {f.code for f in assessment.findings} & SECTION_11


def audit_c(value: Any, *, quantity: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """A survey Observation: valueInteger by default, or the valueQuantity given."""
    resource = obs(AUDIT_C, None, None, category=SURVEY, **extra)
    if quantity is not None:
        resource["valueQuantity"] = quantity
    else:
        resource["valueInteger"] = value
    resource["id"] = f"auditc-{value}-{len(str(quantity))}"
    return resource


# --- W1, W8, W10: vitamin B12 ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "unit", "expected"),
    [
        (179, "ng/L", {"b12-deficiency"}),
        (180, "ng/L", {"b12-borderline"}),
        (350, "ng/L", {"b12-borderline"}),
        (351, "ng/L", set()),
        (179, "pg/mL", {"b12-deficiency"}),
        (0.179, "ng/mL", {"b12-deficiency"}),  # ng/mL x 1000 = ng/L
        (0.351, "ng/mL", set()),
        (132, "pmol/L", {"b12-deficiency"}),  # W8: compared with 133 pmol/L as reported
        (133, "pmol/L", {"b12-borderline"}),
        (258, "pmol/L", {"b12-borderline"}),
        (259, "pmol/L", set()),
    ],
)
def test_b12_boundaries(value: float, unit: str, expected: set[str]) -> None:
    assert section_11(assess([obs(B12, value, unit)])) == expected


def test_b12_pmol_is_compared_with_the_stated_equivalent_not_converted() -> None:
    # 133 pmol/L / 0.738 = 180.2 ng/L; 132.9 pmol/L converts to 180.08 ng/L (not < 180) yet is < 133 pmol/L
    found = assess([obs(B12, 132.9, "pmol/L")]).finding("b12-deficiency")
    assert found is not None
    assert (found.thresholds[0].value, found.thresholds[0].unit) == (133, "pmol/L")
    assert "Compared in the reported unit with the stated equivalent (D7)." in (found.note or "")


@pytest.mark.parametrize(("age", "expected"), [(15, set()), (16, {"b12-deficiency"})])
def test_b12_applies_from_16(age: int, expected: set[str]) -> None:
    assert section_11(assess([obs(B12, 100, "ng/L")], who=patient("female", age_years=age))) == expected


def test_b12_without_birth_date_is_indeterminate() -> None:
    result = assess([obs(B12, 100, "ng/L")], who=patient("female", unknown_birth_date=True))
    assert section_11(result) == set()
    assert any(n.analyte == "b12" and n.reason == "indeterminate" for n in result.not_evaluable)


@pytest.mark.parametrize(("value", "expected"), [(150, {"b12-deficiency"}), (250, set()), (400, set())])
def test_pregnancy_reports_only_b12_deficiency_with_its_caveat(value: float, expected: set[str]) -> None:
    result = assess([obs(B12, value, "ng/L"), *pregnancy(20)])
    assert section_11(result) == expected
    if expected:
        note = result.finding("b12-deficiency").note or ""  # type: ignore[union-attr]
        assert "total B12 falls in pregnancy; active B12 is the preferred test (NICE NG239)" in note


def test_the_lab_range_is_shown_and_never_decides() -> None:
    b12 = obs(B12, 300, "ng/L", referenceRange=[{"low": {"value": 200}, "high": {"value": 900}}])
    found = assess([b12]).finding("b12-borderline")
    assert found is not None  # the lab calls 300 normal; our threshold decides
    assert found.values[0].lab_reference_range == "200-900 ng/L"
    assert "Lab's own reference: 200-900 ng/L" in (found.note or "")
    low = obs(B12, 400, "ng/L", interpretation=[{"text": "L"}])
    assert section_11(assess([low])) == set()


def test_b12_bound() -> None:
    assert section_11(assess([obs(B12, 150, "ng/L", comparator="<")])) == {"b12-deficiency"}
    result = assess([obs(B12, 300, "ng/L", comparator=">")])
    assert section_11(result) == set()
    assert any(n.analyte == "b12" for n in result.not_evaluable)


# --- W2, W8: folate --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "unit", "expected"),
    [
        (3.9, "ng/mL", {"folate-deficiency"}),
        (4.0, "ng/mL", set()),
        (3.9, "ug/L", {"folate-deficiency"}),
        (9.9, "nmol/L", {"folate-deficiency"}),  # compared with 10 nmol/L as reported
        (10.0, "nmol/L", set()),
    ],
)
def test_folate_boundaries(value: float, unit: str, expected: set[str]) -> None:
    assert section_11(assess([obs(FOLATE, value, unit)])) == expected


# --- W3, W8, W9: HbA1c -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "value", "unit", "expected"),
    [
        (HBA1C, 5.6, "%", set()),
        (HBA1C, 5.7, "%", {"hba1c-prediabetes-range"}),
        (HBA1C, 6.4, "%", {"hba1c-prediabetes-range"}),
        (HBA1C, 6.5, "%", {"hba1c-diabetes-range"}),
        (HBA1C_HPLC, 6.5, "%", {"hba1c-diabetes-range"}),
        (HBA1C_IFCC, 38, "mmol/mol", set()),
        (HBA1C_IFCC, 39, "mmol/mol", {"hba1c-prediabetes-range"}),
        (HBA1C_IFCC, 47, "mmol/mol", {"hba1c-prediabetes-range"}),
        (HBA1C_IFCC, 48, "mmol/mol", {"hba1c-diabetes-range"}),
        # W8: the unit decides, not the code: mmol/mol under a % code is compared with 48 / 39 mmol/mol
        (HBA1C, 47, "mmol/mol", {"hba1c-prediabetes-range"}),
        (HBA1C, 48, "mmol/mol", {"hba1c-diabetes-range"}),
        (HBA1C, 38, "mmol/mol", set()),
        (HBA1C_IFCC, 6.5, "%", {"hba1c-diabetes-range"}),
    ],
)
def test_hba1c_boundaries(code: str, value: float, unit: str, expected: set[str]) -> None:
    assert section_11(assess([obs(code, value, unit)])) == expected


def test_hba1c_says_one_value_is_not_a_diagnosis() -> None:
    found = assess([obs(HBA1C, 7.0, "%")]).finding("hba1c-diabetes-range")
    assert found is not None
    assert "One HbA1c does not make a diagnosis" in (found.note or "")
    assert "can be unreliable" not in (found.note or "")


UNRELIABLE = "HbA1c can be unreliable here (iron deficiency, kidney failure, pregnancy, recent transfusion or IV iron)"


@pytest.mark.parametrize(
    ("context", "conditions"),
    [
        ([obs(FERRITIN, 8, "ug/L"), obs(TSAT, 10, "%")], []),  # iron deficiency
        ([obs(HEMOGLOBIN, 100, "g/L")], []),  # anaemia
        ([obs(CREATININE, 9, "mg/dL")], []),  # kidney failure (computed eGFR < 15)
        (pregnancy(20), []),
    ],
)
def test_hba1c_caveat_when_it_can_be_unreliable(context: list[dict[str, Any]], conditions: list[Any]) -> None:
    result = assess([obs(HBA1C, 5.9, "%"), *context], conditions=conditions)
    found = result.finding("hba1c-prediabetes-range")
    assert found is not None
    assert UNRELIABLE in (found.note or "")


# --- W4, W11: possible dehydration -----------------------------------------------------------------


def chemistry(
    na: float, k: float = 4.0, glucose: float = 5.0, urea: float = 5.0, *, days_ago: int = 10
) -> list[dict[str, Any]]:
    """Same-day sodium, potassium, glucose and urea nitrogen, all in mmol/L."""
    return [
        obs(SODIUM, na, "mmol/L", days_ago=days_ago),
        obs(POTASSIUM, k, "mmol/L", days_ago=days_ago),
        obs(GLUCOSE, glucose, "mmol/L", days_ago=days_ago),
        obs(UREA_NITROGEN, urea, "mmol/L", days_ago=days_ago),
    ]


def osmolarity(na: float, k: float = 4.0, glucose: float = 5.0, urea: float = 5.0) -> float:
    return 1.86 * (na + k) + 1.15 * glucose + urea + 14


def sodium_for(target: float) -> float:
    """The sodium that, with K 4, glucose 5 and urea 5 mmol/L, makes the calculated osmolarity ``target``."""
    return (target - 14 - 5 - 1.15 * 5) / 1.86 - 4


@pytest.mark.parametrize(("value", "expected"), [(300, set()), (301, {"possible-dehydration"})])
def test_measured_osmolality_boundary(value: float, expected: set[str]) -> None:
    found = assess([obs(OSMOLALITY, value, "mosm/kg")])
    assert section_11(found) == expected
    if expected:
        assert "Method: measured osmolality" in (found.finding("possible-dehydration").note or "")  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("target", "expected"), [(295.0, set()), (295.01, {"possible-dehydration"}), (296, {"possible-dehydration"})]
)
def test_calculated_osmolarity_boundary(target: float, expected: set[str]) -> None:
    na = sodium_for(target)
    assert na < 145  # sodium alone would not decide
    assert osmolarity(na) == pytest.approx(target)
    result = assess(chemistry(na))
    assert section_11(result) == expected
    if expected:
        found = result.finding("possible-dehydration")
        assert found is not None
        assert "Method: calculated osmolarity" in (found.note or "")
        assert found.values[0].analyte == "osmolarity"
        assert len(found.basis) == 4


def test_a_missing_input_falls_to_sodium() -> None:
    no_potassium = [o for o in chemistry(146) if o["code"]["coding"][0]["code"] != POTASSIUM]
    result = assess(no_potassium)
    found = result.finding("possible-dehydration")
    assert found is not None
    assert "Method: sodium alone" in (found.note or "")
    assert "hypernatremia" in section_11(result)
    assert section_11(assess([o for o in chemistry(140) if o["code"]["coding"][0]["code"] != POTASSIUM])) == set()


def test_inputs_must_share_one_day() -> None:
    # joined across days these would give 1.86 x 152 + 1.15 x 30 + 30 + 14 = 361 mOsm/L; no day has all four
    spread = [
        obs(SODIUM, 144, "mmol/L"),
        obs(POTASSIUM, 8.0, "mmol/L"),
        obs(GLUCOSE, 30, "mmol/L", days_ago=11),
        obs(UREA_NITROGEN, 30, "mmol/L", days_ago=11),
    ]
    assert "possible-dehydration" not in section_11(assess(spread))


def test_the_latest_complete_day_is_used() -> None:
    old_high = chemistry(sodium_for(310), days_ago=30)
    new_normal = chemistry(sodium_for(290), days_ago=5)
    assert "possible-dehydration" not in section_11(assess([*old_high, *new_normal]))
    assert "possible-dehydration" in section_11(assess(old_high))


def test_newest_evidence_decides_between_measured_and_calculated() -> None:
    calculated_high_newer = [obs(OSMOLALITY, 290, "mosm/kg", days_ago=20), *chemistry(sodium_for(300), days_ago=5)]
    assert "possible-dehydration" in section_11(assess(calculated_high_newer))
    measured_normal_newer = [obs(OSMOLALITY, 290, "mosm/kg", days_ago=5), *chemistry(sodium_for(300), days_ago=20)]
    assert "possible-dehydration" not in section_11(assess(measured_normal_newer))
    same_day = [obs(OSMOLALITY, 290, "mosm/kg", days_ago=5), *chemistry(sodium_for(300), days_ago=5)]
    assert "possible-dehydration" not in section_11(assess(same_day))  # same day: measured wins


@pytest.mark.parametrize(
    "context",
    [
        [obs(CREATININE, 9, "mg/dL")],  # kidney failure
        [obs(CREATININE, 1.6, "mg/dL")],  # reduced kidney function (G3a/G3b for a 50-year-old woman)
    ],
)
def test_kidney_findings_exclude_osmolality_and_sodium_decides(context: list[dict[str, Any]]) -> None:
    result = assess([obs(OSMOLALITY, 320, "mosm/kg"), obs(SODIUM, 140, "mmol/L"), *context])
    assert "possible-dehydration" not in section_11(result)
    note = advisory(result, "osmolality-not-dehydration")
    assert note is not None
    assert "raised osmolality may reflect urea or glucose, not dehydration" in (note.note or "")
    with_high_sodium = assess([obs(OSMOLALITY, 320, "mosm/kg"), obs(SODIUM, 146, "mmol/L"), *context])
    found = with_high_sodium.finding("possible-dehydration")
    assert found is not None
    assert "Method: sodium alone" in (found.note or "")


@pytest.mark.parametrize(
    ("glucose", "unit", "excluded"),
    [(13.9, "mmol/L", False), (14.0, "mmol/L", True), (250, "mg/dL", False), (251, "mg/dL", True)],
)
def test_glucose_that_day_excludes(glucose: float, unit: str, excluded: bool) -> None:
    observations = [obs(OSMOLALITY, 305, "mosm/kg"), obs(GLUCOSE, glucose, unit)]
    result = assess(observations)
    assert ("possible-dehydration" in section_11(result)) is not excluded
    assert ("osmolality-not-dehydration" in advisory_codes(result)) is excluded
    other_day = assess([obs(OSMOLALITY, 305, "mosm/kg"), obs(GLUCOSE, glucose, unit, days_ago=11)])
    assert "possible-dehydration" in section_11(other_day)


def test_an_excluded_calculation_falls_to_sodium() -> None:
    high_glucose = chemistry(140, glucose=20)  # osmolarity raised by glucose
    result = assess(high_glucose)
    assert "possible-dehydration" not in section_11(result)
    assert "osmolality-not-dehydration" in advisory_codes(result)


def test_no_advisory_when_the_excluded_value_is_not_raised() -> None:
    result = assess([obs(OSMOLALITY, 290, "mosm/kg"), obs(CREATININE, 9, "mg/dL")])
    assert "osmolality-not-dehydration" not in advisory_codes(result)


@pytest.mark.parametrize(("age", "expected"), [(17, set()), (18, {"possible-dehydration"})])
def test_dehydration_is_for_adults(age: int, expected: set[str]) -> None:
    assert section_11(assess([obs(OSMOLALITY, 310, "mosm/kg")], who=patient("male", age_years=age))) == expected


# --- W12: hypernatremia ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "severity"),
    [
        (145, None),
        (146, "grade-1"),
        (150, "grade-1"),
        (151, "grade-2"),
        (155, "grade-2"),
        (156, "grade-3"),
        (160, "grade-3"),
        (161, "grade-4"),
    ],
)
def test_hypernatremia_grades(value: float, severity: str | None) -> None:
    result = assess([obs(SODIUM_BLOOD, value, "mmol/L")], who=patient("female", age_years=12))
    found = result.finding("hypernatremia")
    assert (found.severity if found else None) == severity
    if severity in ("grade-3", "grade-4"):
        assert "potentially dangerous: act on it now" in (found.note or "")  # type: ignore[union-attr]
    # under 18: hypernatremia only, never possible-dehydration
    assert "possible-dehydration" not in section_11(result)


def test_hypernatremia_whatever_w11_used() -> None:
    result = assess([obs(OSMOLALITY, 295, "mosm/kg"), obs(SODIUM, 147, "mmol/L", days_ago=20)])
    assert section_11(result) == {"hypernatremia"}


def test_hypernatremia_from_a_bound() -> None:
    found = assess([obs(SODIUM, 155, "mmol/L", comparator=">")]).finding("hypernatremia")
    assert found is not None
    assert (found.severity, found.severity_at_least) == ("grade-3", True)


# --- W5, W13: AUDIT-C ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sex", "score", "positive"),
    [
        ("male", 3, False),
        ("male", 4, True),
        ("female", 2, False),
        ("female", 3, True),
        (None, 3, False),  # other or unknown sex: >= 4
        (None, 4, True),
    ],
)
def test_audit_c_by_sex(sex: Sex | None, score: int, positive: bool) -> None:
    result = assess([audit_c(score)], who=patient(sex, age_years=40))
    assert ("alcohol-use-positive" in section_11(result)) is positive


@pytest.mark.parametrize(
    ("quantity", "usable"),
    [
        ({"value": 5}, True),
        ({"value": 5, "unit": "{score}", "system": "http://unitsofmeasure.org", "code": "{score}"}, True),
        ({"value": 5, "unit": "score", "system": "http://unitsofmeasure.org", "code": "1"}, True),
        ({"value": 5, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"}, False),
    ],
)
def test_audit_c_value_shapes(quantity: dict[str, Any], usable: bool) -> None:
    observation = audit_c(5, quantity=quantity)
    result = assess([observation], who=ADULT_MALE)
    assert ("alcohol-use-positive" in section_11(result)) is usable
    if not usable:
        assert [n.reason for n in result.not_evaluable if n.observation == ref(observation)] == ["unit-not-understood"]


def test_value_integer_is_read() -> None:
    found = assess([audit_c(6)], who=ADULT_FEMALE).finding("alcohol-use-positive")
    assert found is not None
    assert found.values[0].value.value == 6


# --- W6 and the wording ----------------------------------------------------------------------------


def test_caffeine_note_is_once_and_never_a_finding() -> None:
    for observations in ([], [obs(B12, 100, "ng/L"), audit_c(8)]):
        result = assess(observations, who=ADULT_MALE)
        assert [a.code for a in result.advisories].count("caffeine-not-assessed") == 1
        assert "caffeine-not-assessed" not in {f.code for f in result.findings}


def test_no_missing_reports_for_section_11_tests() -> None:
    result = assess([obs(FERRITIN, 50, "ug/L"), obs(TSAT, 30, "%")])
    section_11_analytes = {"b12", "folate", "hba1c", "osmolality", "sodium", "glucose", "urea-nitrogen", "audit-c"}
    assert not [n for n in result.not_evaluable if n.analyte in section_11_analytes]
    assert section_11(result) == set()
    assert "mimic-not-established-cause" not in advisory_codes(result)


def test_mimics_say_they_are_not_established_causes() -> None:
    result = assess([obs(B12, 100, "ng/L"), obs(SODIUM, 150, "mmol/L")])
    caveat = advisory(result, "mimic-not-established-cause")
    assert caveat is not None
    assert caveat.citations
