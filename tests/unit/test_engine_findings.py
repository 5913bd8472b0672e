"""What every finding carries (docs/rules.md: the rule-set version, citations, the Observations it rests
on), the lab's own reference range beside ours (section 5), the JSON shape, and medication advisories
(section 8).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from engine_helpers import (
    ALBUMIN,
    CALCIUM_TOTAL,
    CREATININE,
    EGFR,
    EGFR_UNIT,
    FERRITIN,
    HEMOGLOBIN,
    ICD10CM,
    MAGNESIUM,
    POTASSIUM,
    RULE_SET_VERSION,
    RXNORM,
    TSAT,
    assess,
    condition,
    knowledge,
    medication_request,
    obs,
    patient,
    ref,
)

from rls_screen.ruleset import RuleSet

pytestmark = pytest.mark.unit

FERRITIN_10 = obs(FERRITIN, 10, "ug/L")
FERRITIN_60 = obs(FERRITIN, 60, "ug/L")
FERRITIN_200 = obs(FERRITIN, 200, "ug/L")
TSAT_30 = obs(TSAT, 30, "%")
HB_100 = obs(HEMOGLOBIN, 100, "g/L")
EGFR_50 = obs(EGFR, 50, EGFR_UNIT)
EGFR_10 = obs(EGFR, 10, EGFR_UNIT)
MG_LOW = obs(MAGNESIUM, 0.6, "mmol/L")
K_LOW = obs(POTASSIUM, 3.0, "mmol/L")
K_HIGH = obs(POTASSIUM, 5.8, "mmol/L")
CA_LOW = obs(CALCIUM_TOTAL, 1.9, "mmol/L")
ALB_35 = obs(ALBUMIN, 35, "g/L")

# finding code -> (observations, rule id in the rule set, words one citation must contain, expected basis)
CASES: dict[str, tuple[list[dict], Callable[[RuleSet], str], str, list[dict]]] = {
    "iron-deficiency": ([FERRITIN_10, TSAT_30], lambda r: r.iron.deficiency.rule_id, "ferritin", [FERRITIN_10]),
    "iron-insufficient-for-rls": (
        [FERRITIN_60, TSAT_30],
        lambda r: r.iron.insufficient_for_rls.rule_id,
        "restless legs",
        [FERRITIN_60],
    ),
    "missing-iron-studies": (
        [FERRITIN_200],
        lambda r: r.iron.missing_studies.rule_id,
        "restless legs",
        [FERRITIN_200],
    ),
    "anemia": ([HB_100], lambda r: r.anemia.rule_id, "haemoglobin", [HB_100]),
    "reduced-kidney-function": ([EGFR_50], lambda r: r.kidney.reduced_function.rule_id, "KDIGO", [EGFR_50]),
    "kidney-failure": ([EGFR_10], lambda r: r.kidney.failure.rule_id, "KDIGO", [EGFR_10]),
    "hypomagnesemia": ([MG_LOW], lambda r: r.electrolytes.hypomagnesemia.rule_id, "CTCAE", [MG_LOW]),
    "hypokalemia": ([K_LOW], lambda r: r.electrolytes.hypokalemia.rule_id, "CTCAE", [K_LOW]),
    "hyperkalemia": ([K_HIGH], lambda r: r.electrolytes.hyperkalemia.rule_id, "CTCAE", [K_HIGH]),
    "hypocalcemia": ([CA_LOW, ALB_35], lambda r: r.electrolytes.hypocalcemia.rule_id, "CTCAE", [CA_LOW, ALB_35]),
}


@pytest.mark.parametrize("code", sorted(CASES))
def test_every_finding_carries_rule_version_thresholds_citations_and_basis(code: str) -> None:
    observations, rule_id_of, cited, basis = CASES[code]
    found = assess(observations, who=patient("male")).finding(code)
    assert found is not None
    assert found.kind == "finding"
    assert found.rule_set_version == RULE_SET_VERSION
    assert found.rule_id
    assert found.rule_id == rule_id_of(knowledge().ruleset)
    assert found.display
    assert found.citations
    assert any(cited.lower() in citation.lower() for citation in found.citations)
    assert set(found.basis) == {ref(o) for o in basis}
    if code != "missing-iron-studies":  # an absence has no numeric threshold
        assert found.thresholds
        for threshold in found.thresholds:
            assert threshold.comparator in ("<", "<=", ">", ">=")
            assert threshold.unit


def test_dialysis_kidney_failure_rests_on_the_condition() -> None:
    dialysis = condition("N18.6", ICD10CM)
    found = assess([], conditions=[dialysis]).finding("kidney-failure")
    assert found is not None
    assert found.basis == (f"Condition/{dialysis['id']}",)
    assert found.rule_set_version == RULE_SET_VERSION


def test_every_advisory_carries_rule_and_version() -> None:
    observations = [
        obs(FERRITIN, 50, "ug/L"),
        obs(TSAT, 50, "%"),
        obs("1988-5", 20, "mg/L"),
        HB_100,
        obs(CREATININE, 5, "mg/dL"),
        MG_LOW,
    ]
    assessment = assess(observations, medications=[medication_request("5093")])
    assert {a.code for a in assessment.advisories} >= {
        "ferritin-inflammation-caveat",
        "tsat-iron-overload-risk",
        "hemoglobin-altitude-smoking-caveat",
        "egfr-chronicity-caveat",
        "egfr-computed-from-creatinine",
        "electrolyte-not-established-cause",
        "aggravating-medication",
    }
    for item in assessment.advisories:
        assert item.kind == "advisory"
        assert item.rule_id
        assert item.rule_set_version == RULE_SET_VERSION
        # W6: "caffeine intake was not assessed" states what the data lack, no clinical claim to source
        assert item.citations or item.code == "caffeine-not-assessed"


def test_assessment_json_shape() -> None:
    assessment = assess([FERRITIN_10, TSAT_30, EGFR_50, obs(FERRITIN, 10, "ug/L", days_ago=400)])
    out = assessment.to_json()
    assert {
        "patient",
        "asOf",
        "ruleSetVersion",
        "findings",
        "gfrCategory",
        "ironBand",
        "advisories",
        "notEvaluable",
    } <= set(out)
    assert out["patient"] == "Patient/p1"
    assert out["asOf"] == "2026-03-15"
    assert out["ruleSetVersion"] == RULE_SET_VERSION
    assert out["gfrCategory"] == "G3a"
    assert out["ironBand"] == "oral-or-iv"
    for item in out["findings"]:
        assert {"code", "severity", "ruleId", "basis"} <= set(item)
    assert [f["code"] for f in out["findings"]] == ["iron-deficiency", "reduced-kidney-function"]
    assert out["findings"][0]["basis"] == [ref(FERRITIN_10)]
    assert any(n["reason"] == "stale" for n in out["notEvaluable"])
    assert assessment.rule_set_version == RULE_SET_VERSION


def test_lab_reference_range_and_interpretation_shown_beside_ours() -> None:
    potassium = obs(
        POTASSIUM,
        3.0,
        "mmol/L",
        referenceRange=[{"low": {"value": 3.6}, "high": {"value": 5.2}}],
        interpretation=[
            {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": "L"}]}
        ],
    )
    found = assess([potassium]).finding("hypokalemia")
    assert found is not None
    [value] = found.values
    assert value.lab_reference_range is not None
    assert "3.6" in value.lab_reference_range
    assert "5.2" in value.lab_reference_range
    assert value.lab_interpretation == "L"
    assert [t.value for t in found.thresholds] == [3.5]  # ours, beside the lab's


# --- section 8: medications ---------------------------------------------------------------------------

AGGRAVATING = {
    "5093": "haloperidol",
    "61381": "olanzapine",
    "51272": "quetiapine",
    "35636": "risperidone",
    "2626": "clozapine",
    "89013": "aripiprazole",
    "8076": "perphenazine",
    "2403": "chlorpromazine",
    "6915": "metoclopramide",
    "8704": "prochlorperazine",
    "8745": "promethazine",
    "3498": "diphenhydramine",
    "5553": "hydroxyzine",
    "2400": "chlorpheniramine",
    "4493": "fluoxetine",
    "36437": "sertraline",
    "32937": "paroxetine",
    "2556": "citalopram",
    "321988": "escitalopram",
    "39786": "venlafaxine",
    "72625": "duloxetine",
    "15996": "mirtazapine",
    "704": "amitriptyline",
    "6448": "lithium",
}


@pytest.mark.parametrize(("rxnorm", "name"), sorted(AGGRAVATING.items()))
def test_aggravating_medication_advisory(rxnorm: str, name: str) -> None:
    request = medication_request(rxnorm, text=name)
    assessment = assess([], medications=[request])
    [item] = [a for a in assessment.advisories if a.code == "aggravating-medication"]
    assert item.basis == (f"MedicationRequest/{request['id']}",)
    assert item.note is not None
    assert name in item.note
    assert "aggravating-medication" not in assessment.finding_codes  # an advisory, not a finding


@pytest.mark.parametrize("rxnorm", ["42347", "161"])  # bupropion (section 8: not an aggravator), acetaminophen
def test_non_aggravating_medication_gives_no_advisory(rxnorm: str) -> None:
    assessment = assess([], medications=[medication_request(rxnorm)])
    assert "aggravating-medication" not in {a.code for a in assessment.advisories}


@pytest.mark.parametrize("status", ["stopped", "completed", "cancelled", "entered-in-error"])
def test_inactive_medication_request_gives_no_advisory(status: str) -> None:
    assessment = assess([], medications=[medication_request("5093", status=status)])
    assert "aggravating-medication" not in {a.code for a in assessment.advisories}


def test_medication_matches_rxnorm_system_only() -> None:
    request = medication_request("5093")
    assert request["medicationCodeableConcept"]["coding"][0]["system"] == RXNORM
    request["medicationCodeableConcept"]["coding"][0]["system"] = "http://example.org/drugs"
    assessment = assess([], medications=[request])
    assert "aggravating-medication" not in {a.code for a in assessment.advisories}


# --- D21: medicines named by ingredient display, never by RxNorm code ---------------------------------

CATEGORY_TITLES = {
    "5093": "Dopamine-blocking antipsychotics",
    "6915": "Dopamine-blocking antiemetics",
    "3498": "Sedating antihistamines",
    "36437": "SSRIs and SNRIs",
    "6448": "Lithium",
}


@pytest.mark.parametrize("text", [None, "Zoloft 50 mg oral tablet"])
def test_d21_sertraline_is_named_by_ingredient_and_its_category_as_titled(text: str | None) -> None:
    request = medication_request("36437", text=text)
    [item] = [a for a in assess([], medications=[request]).advisories if a.code == "aggravating-medication"]
    assert item.note == "sertraline (SSRIs and SNRIs) may aggravate RLS symptoms."
    assert "36437" not in item.note


@pytest.mark.parametrize(("rxnorm", "name"), sorted(AGGRAVATING.items()))
def test_d21_no_medicine_is_named_by_its_code(rxnorm: str, name: str) -> None:
    [item] = [
        a for a in assess([], medications=[medication_request(rxnorm)]).advisories if a.code == "aggravating-medication"
    ]
    assert item.note is not None
    assert item.note.startswith(f"{name} (")
    assert rxnorm not in item.note
    if rxnorm in CATEGORY_TITLES:
        assert f"({CATEGORY_TITLES[rxnorm]})" in item.note
