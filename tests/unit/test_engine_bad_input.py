"""Bad input inside Observations: each becomes a ``not_evaluable`` entry with the right reason, is never
used, and never makes the engine raise (docs/rules.md S4, S5, section 6 "match on code, never on
display text", section 7 "never guessed").

Every case starts from a ferritin of 10 ug/L, which would be iron deficiency if it were used.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
from engine_helpers import (
    CREATININE,
    CREATININE_UMOL,
    FERRITIN,
    LOINC_SYSTEM,
    UCUM,
    assess,
    day,
    not_evaluable,
    obs,
    patient,
    ref,
)

pytestmark = pytest.mark.unit


def _ferritin(**changes: Any) -> dict[str, Any]:
    resource = obs(FERRITIN, 10, "ug/L", id="bad")
    for key, value in changes.items():
        if value is _DROP:
            resource.pop(key, None)
        else:
            resource[key] = value
    return resource


def _quantity(**changes: Any) -> dict[str, Any]:
    quantity: dict[str, Any] = {"value": 10, "unit": "ug/L", "system": UCUM, "code": "ug/L"}
    for key, value in changes.items():
        if value is _DROP:
            quantity.pop(key, None)
        else:
            quantity[key] = value
    return _ferritin(valueQuantity=quantity)


_DROP = object()

CASES: list[tuple[str, Callable[[], dict[str, Any]], str]] = [
    ("no code", lambda: _ferritin(code=_DROP), "unknown-code"),
    ("code without coding", lambda: _ferritin(code={"text": "Ferritin"}), "unknown-code"),
    (
        "display text only",
        lambda: _ferritin(code={"coding": [{"system": LOINC_SYSTEM, "display": "Ferritin [Mass/volume]"}]}),
        "unknown-code",
    ),
    (
        "unknown LOINC with a ferritin display",
        lambda: _ferritin(code={"coding": [{"system": LOINC_SYSTEM, "code": "1234-5", "display": "Ferritin"}]}),
        "unknown-code",
    ),
    (
        "ferritin code in another system",
        lambda: _ferritin(code={"coding": [{"system": "http://example.org/lab", "code": FERRITIN}]}),
        "unknown-code",
    ),
    ("no value at all", lambda: _ferritin(valueQuantity=_DROP), "no-value"),
    ("valueString", lambda: _ferritin(valueQuantity=_DROP, valueString="10"), "no-value"),
    ("valueString non-numeric", lambda: _ferritin(valueQuantity=_DROP, valueString="see note"), "no-value"),
    ("quantity without value", lambda: _quantity(value=_DROP), "no-value"),
    ("value as text", lambda: _quantity(value="10"), "no-value"),
    ("value NaN", lambda: _quantity(value=math.nan), "no-value"),
    ("value 'NaN'", lambda: _quantity(value="NaN"), "no-value"),
    ("value +inf", lambda: _quantity(value=math.inf), "no-value"),
    ("value -inf", lambda: _quantity(value=-math.inf), "no-value"),
    ("value boolean", lambda: _quantity(value=True), "no-value"),
    ("value null", lambda: _quantity(value=None), "no-value"),
    ("negative value", lambda: _quantity(value=-10), "no-value"),
    ("negative tiny value", lambda: _quantity(value=-1e-9), "no-value"),
    ("unknown UCUM unit", lambda: _quantity(code="mg", unit="mg"), "unit-not-understood"),
    ("UCUM unit of another analyte", lambda: _quantity(code="mmol/L", unit="mmol/L"), "unit-not-understood"),
    ("UCUM unit in the wrong case", lambda: _quantity(code="UG/L", unit="UG/L"), "unit-not-understood"),
    (
        "free text not in the alias table",
        lambda: _quantity(code=_DROP, system=_DROP, unit="nanograms per millilitre"),
        "unit-not-understood",
    ),
    ("free text in the wrong case", lambda: _quantity(code=_DROP, system=_DROP, unit="NG/ML"), "unit-not-understood"),
    ("no unit at all", lambda: _quantity(code=_DROP, system=_DROP, unit=_DROP), "unit-not-understood"),
    ("comparator not understood", lambda: _quantity(comparator="~"), "comparator-indeterminate"),
    ("comparator 'ad'", lambda: _quantity(comparator="ad"), "comparator-indeterminate"),
    ("year-only date", lambda: _ferritin(effectiveDateTime="2026"), "date-too-imprecise"),  # D4
    ("month-only date", lambda: _ferritin(effectiveDateTime="2026-03"), "date-too-imprecise"),  # D4
    ("date not a date", lambda: _ferritin(effectiveDateTime="yesterday"), "no-effective-date"),
    ("impossible date", lambda: _ferritin(effectiveDateTime="2026-02-30"), "no-effective-date"),
    ("date as a number", lambda: _ferritin(effectiveDateTime=20260301), "no-effective-date"),
    ("status missing", lambda: _ferritin(status=_DROP), "pending"),
    ("status not a FHIR status", lambda: _ferritin(status="done"), "pending"),
]


@pytest.mark.parametrize(("build", "reason"), [(b, r) for _, b, r in CASES], ids=[c[0] for c in CASES])
def test_bad_observation_is_not_evaluable_with_reason(build: Callable[[], dict[str, Any]], reason: str) -> None:
    observation = build()
    assessment = assess([observation])
    assert assessment.finding("iron-deficiency") is None
    assert assessment.finding("missing-iron-studies") is not None
    entries = not_evaluable(assessment, observation=ref(observation))
    assert [e.reason for e in entries] == [reason]
    assert entries[0].detail


def test_bad_observation_does_not_hide_a_good_one() -> None:
    good = obs(FERRITIN, 10, "ug/L", days_ago=20)
    bad = [build() for _, build, _ in CASES]
    for index, resource in enumerate(bad):
        resource["id"] = f"bad-{index}"
    assessment = assess([*bad, good])
    assert assessment.finding("iron-deficiency") is not None
    assert assessment.finding("iron-deficiency").basis == (ref(good),)  # type: ignore[union-attr]
    assert len([n for n in assessment.not_evaluable if (n.observation or "").startswith("Observation/bad-")]) == len(
        bad
    )


def test_not_evaluable_entry_names_analyte_and_date_when_known() -> None:
    observation = _quantity(code="mg", unit="mg")
    [entry] = not_evaluable(assess([observation]), observation=ref(observation))
    assert entry.analyte == "ferritin"
    assert entry.effective == day(10)


def test_zero_value_is_a_value() -> None:
    assert assess([obs(FERRITIN, 0, "ug/L")]).finding("iron-deficiency") is not None


def test_coded_observation_with_several_codings_uses_the_known_one() -> None:
    observation = _ferritin(
        code={
            "coding": [{"system": "http://example.org/lab", "code": "FER"}, {"system": LOINC_SYSTEM, "code": FERRITIN}]
        }
    )
    assert assess([observation]).finding("iron-deficiency") is not None


# regression: an unhashable comparator raised TypeError before a040851
@pytest.mark.parametrize("comparator", [["<"], {"value": "<"}])
def test_malformed_comparator_is_not_evaluable(comparator: object) -> None:
    observation = _quantity(comparator=comparator)
    assessment = assess([observation])
    assert [e.reason for e in not_evaluable(assessment, observation=ref(observation))] == ["comparator-indeterminate"]


# regression: an unhashable Quantity.code with system UCUM raised TypeError before a040851
@pytest.mark.parametrize("code", [["ug/L"], {"code": "ug/L"}, 7, True])
@pytest.mark.parametrize(
    ("unit", "used"),
    [
        (_DROP, False),  # nothing to read: not understood
        ("nanograms per millilitre", False),  # free text outside the alias table: never guessed
        ("mcg/L", True),  # the alias table applies when the code carries no UCUM code
    ],
)
def test_malformed_ucum_code_never_raises(code: object, unit: object, used: bool) -> None:
    observation = _quantity(code=code, unit=unit)
    assessment = assess([observation])
    assert (assessment.finding("iron-deficiency") is not None) is used
    reasons = [e.reason for e in not_evaluable(assessment, observation=ref(observation))]
    assert reasons == ([] if used else ["unit-not-understood"])


# regression: a zero creatinine raised ZeroDivisionError in CKD-EPI before a040851
@pytest.mark.parametrize(
    ("loinc", "value", "unit"),
    [
        (CREATININE, 0, "mg/dL"),
        (CREATININE, 0.0, "mg/dL"),
        (CREATININE_UMOL, 0, "umol/L"),
        (CREATININE_UMOL, 5e-324, "umol/L"),  # converts to 0.0 mg/dL
    ],
)
def test_zero_creatinine_does_not_raise(loinc: str, value: float, unit: str) -> None:
    assessment = assess([obs(loinc, value, unit)], who=patient("female", age_years=60))
    assert assessment.gfr_category is None  # an impossible creatinine is not turned into a category
    assert not_evaluable(assessment, analyte="egfr") or not_evaluable(assessment, analyte="creatinine")


@pytest.mark.parametrize("coding", [True, 7, 1.5])
def test_malformed_coding_list_is_not_evaluable(coding: object) -> None:
    observation = _ferritin(code={"coding": coding})
    assessment = assess([observation])
    assert [e.reason for e in not_evaluable(assessment, observation=ref(observation))] == ["unknown-code"]


# --- bad input in Conditions, Procedures and MedicationRequests ---------------------------------------


@pytest.mark.parametrize(
    "record",
    [
        {"resourceType": "Condition", "id": "c1", "code": {"coding": True}},
        {
            "resourceType": "Condition",
            "id": "c2",
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "Z99.2"}]},
            "clinicalStatus": {"coding": 1},
        },
    ],
)
def test_malformed_condition_does_not_raise(record: dict[str, Any]) -> None:
    assessment = assess([], conditions=[record])
    assert assessment.finding("kidney-failure") is None


# regression: a non-object performedPeriod raised AttributeError in _dialysis_basis (fixed after a040851)
@pytest.mark.parametrize("period", [True, "2026-03-01", ["2026-03-01"]])
def test_malformed_procedure_period_does_not_raise(period: object) -> None:
    record = {
        "resourceType": "Procedure",
        "id": "p1",
        "status": "completed",
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "302497006"}]},
        "performedPeriod": period,
    }
    assessment = assess([], procedures=[record])
    assert assessment.finding("kidney-failure") is None  # no usable date: not evidence of dialysis


# regression: an unhashable MedicationRequest.status raised TypeError (fixed after a040851)
@pytest.mark.parametrize("status", [["active"], {"code": "active"}])
def test_malformed_medication_status_does_not_raise(status: object) -> None:
    request = {
        "resourceType": "MedicationRequest",
        "id": "m1",
        "status": status,
        "medicationCodeableConcept": {
            "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "5093"}]
        },
    }
    assessment = assess([], medications=[request])
    assert "aggravating-medication" not in {a.code for a in assessment.advisories}


@pytest.mark.parametrize("entry", [None, "Observation/1", 7, [], [{"resourceType": "Observation"}]])
def test_entry_that_is_not_a_resource_does_not_raise(entry: object) -> None:
    good = obs(FERRITIN, 10, "ug/L")
    assessment = assess([entry, good])  # type: ignore[list-item]
    assert assessment.finding("iron-deficiency") is not None
