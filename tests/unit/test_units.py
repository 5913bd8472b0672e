"""Unit conversion (docs/rules.md section 7, ``mappings/units.json``, ``rls_screen.units``).

The expected factors are written here from the spec's own sentences, independently of the JSON file,
and every conversion the file declares must be one of them. Then the alias rules: convert from
``Quantity.code`` when the system is UCUM; fall back to ``Quantity.unit`` text only through the
explicit alias table; anything else is "unit not understood", never guessed.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import pytest

from rls_screen.units import Converted, UnitProblem, load_unit_table

pytestmark = pytest.mark.unit

UCUM = "http://unitsofmeasure.org"
UNITS = load_unit_table()

# (analyte, UCUM unit) -> canonical value of 1 unit, from docs/rules.md section 7 (and S6 for weeks)
SPEC: dict[tuple[str, str], float] = {
    ("ferritin", "ug/L"): 1,
    ("ferritin", "ng/mL"): 1,  # ng/mL = ug/L
    ("ferritin", "pmol/L"): 1 / 2.247,  # ug/L = pmol/L / 2.247
    ("hemoglobin", "g/L"): 1,
    ("hemoglobin", "g/dL"): 10,  # g/L = g/dL x 10
    ("hemoglobin", "mmol/L"): 16.114,  # g/dL = mmol/L x 1.6114
    ("tsat", "%"): 1,
    ("iron", "ug/dL"): 1,
    ("iron", "umol/L"): 5.585,  # ug/dL = umol/L x 5.585
    ("tibc", "ug/dL"): 1,
    ("tibc", "umol/L"): 5.585,
    ("crp", "mg/L"): 1,
    ("crp", "mg/dL"): 10,  # mg/L = mg/dL x 10
    ("albumin", "g/L"): 1,
    ("albumin", "g/dL"): 10,  # g/L = g/dL x 10
    ("creatinine", "mg/dL"): 1,
    ("creatinine", "umol/L"): 1 / 88.42,  # umol/L = mg/dL x 88.42
    ("magnesium", "mmol/L"): 1,
    ("magnesium", "mg/dL"): 1 / 2.4305,  # mmol/L = mg/dL / 2.4305
    ("magnesium", "meq/L"): 1 / 2,  # mEq/L = mmol/L x 2
    ("potassium", "mmol/L"): 1,
    ("potassium", "meq/L"): 1,  # mmol/L = mEq/L
    ("calcium-total", "mmol/L"): 1,
    ("calcium-total", "mg/dL"): 1 / 4.008,  # mmol/L = mg/dL / 4.008
    ("calcium-total", "meq/L"): 1 / 2,  # mEq/L = mmol/L x 2
    ("calcium-ionized", "mmol/L"): 1,
    ("calcium-ionized", "mg/dL"): 1 / 4.008,
    ("calcium-ionized", "meq/L"): 1 / 2,
    ("egfr", "mL/min/{1.73_m2}"): 1,
    ("gestational-age", "wk"): 1,  # S6: weeks, UCUM wk
    ("gestational-age", "d"): 1 / 7,
    # docs/rules.md section 11 (W4, W8, W13); HbA1c mmol/mol is affine: see test_hba1c_affine_conversion
    ("b12", "ng/L"): 1,
    ("b12", "pg/mL"): 1,  # ng/L = pg/mL
    ("b12", "ng/mL"): 1000,  # ng/mL x 1000 = ng/L
    ("b12", "pmol/L"): 1 / 0.738,  # pmol/L = ng/L x 0.738
    ("folate", "ng/mL"): 1,
    ("folate", "ug/L"): 1,  # ug/L = ng/mL
    ("folate", "nmol/L"): 1 / 2.266,  # nmol/L = ng/mL x 2.266
    ("hba1c", "%"): 1,
    ("hba1c", "mmol/mol"): 1 / 10.929 + 2.15,  # the value of 1 mmol/mol in %: (1 / 10.929) + 2.15
    ("osmolality", "mosm/kg"): 1,
    ("sodium", "mmol/L"): 1,
    ("sodium", "meq/L"): 1,
    ("glucose", "mmol/L"): 1,
    ("glucose", "mg/dL"): 1 / 18.016,  # mg/dL = mmol/L x 18.016
    ("urea-nitrogen", "mmol/L"): 1,  # urea nitrogen in mmol/L is urea in mmol/L
    ("urea-nitrogen", "mg/dL"): 0.357,  # urea nitrogen mg/dL x 0.357 = urea mmol/L
    ("audit-c", "{score}"): 1,
    ("audit-c", "1"): 1,
}

CANONICAL = {
    "ferritin": "ug/L",
    "hemoglobin": "g/L",
    "tsat": "%",
    "iron": "ug/dL",
    "tibc": "ug/dL",
    "crp": "mg/L",
    "albumin": "g/L",
    "creatinine": "mg/dL",
    "magnesium": "mmol/L",
    "potassium": "mmol/L",
    "calcium-total": "mmol/L",
    "calcium-ionized": "mmol/L",
    "egfr": "mL/min/{1.73_m2}",
    "gestational-age": "wk",
    "b12": "ng/L",
    "folate": "ng/mL",
    "hba1c": "%",
    "osmolality": "mosm/kg",
    "sodium": "mmol/L",
    "glucose": "mmol/L",
    "urea-nitrogen": "mmol/L",
    "audit-c": "{score}",
}


def quantity(code: str | None = None, *, unit: str | None = None, system: str | None = UCUM) -> dict[str, Any]:
    out: dict[str, Any] = {"value": 1}
    if code is not None:
        out["code"] = code
        if system is not None:
            out["system"] = system
    if unit is not None:
        out["unit"] = unit
    return out


def convert(analyte: str, value: float, q: dict[str, Any]) -> Converted | UnitProblem:
    return UNITS.to_canonical(analyte, value, q)


def file_conversions() -> list[tuple[str, str]]:
    raw = json.loads(resources.files("rls_screen.mappings").joinpath("units.json").read_text(encoding="utf-8"))
    return [(analyte, c["from"]) for analyte, spec in raw["analytes"].items() for c in spec["conversions"]]


def test_every_conversion_in_the_file_is_one_the_spec_gives() -> None:
    declared = file_conversions()
    assert len(declared) == len(set(declared))
    assert set(declared) == set(SPEC)


@pytest.mark.parametrize(("analyte", "unit"), sorted(SPEC))
def test_conversion_factor_matches_the_spec(analyte: str, unit: str) -> None:
    converted = convert(analyte, 1.0, quantity(unit))
    assert isinstance(converted, Converted)
    assert converted.value == pytest.approx(SPEC[(analyte, unit)], rel=1e-12)
    assert converted.unit == CANONICAL[analyte]
    assert converted.source_unit == unit
    assert converted.via == "ucum-code"


@pytest.mark.parametrize(("analyte", "unit"), sorted(SPEC))
def test_invert_is_the_inverse(analyte: str, unit: str) -> None:
    factor = UNITS.factors[analyte][unit]
    for value in (0.5, 1.0, 42.0, 1234.5):
        assert factor.apply(factor.invert(value)) == pytest.approx(value, rel=1e-12)


@pytest.mark.parametrize(("analyte", "unit"), sorted(CANONICAL.items()))
def test_canonical_units(analyte: str, unit: str) -> None:
    assert UNITS.canonical_unit[analyte] == unit


@pytest.mark.parametrize(
    ("analyte", "value", "unit", "expected"),
    [
        ("ferritin", 100, "pmol/L", 44.5),  # section 7 worked numbers
        ("hemoglobin", 1, "mmol/L", 16.114),
        ("hemoglobin", 12.9, "g/dL", 129),
        ("magnesium", 2.4305, "mg/dL", 1),
        ("magnesium", 1.4, "meq/L", 0.7),
        ("calcium-total", 8.5, "mg/dL", 2.1208),
        ("calcium-ionized", 4.6, "mg/dL", 1.1477),
        ("creatinine", 88.42, "umol/L", 1),
        ("iron", 9, "umol/L", 50.265),
        ("crp", 0.5, "mg/dL", 5),
        ("albumin", 3.0, "g/dL", 30),
        ("potassium", 3.5, "meq/L", 3.5),
        ("gestational-age", 98, "d", 14),
    ],
)
def test_worked_values(analyte: str, value: float, unit: str, expected: float) -> None:
    converted = convert(analyte, value, quantity(unit))
    assert isinstance(converted, Converted)
    assert converted.value == pytest.approx(expected, abs=0.005)  # to the decimals written above


# --- aliases and free text ----------------------------------------------------------------------------


def alias_cases() -> list[tuple[str, str, str]]:
    cases = []
    for alias, target in sorted(UNITS.aliases.items()):
        analytes = sorted(a for a, table in UNITS.factors.items() if target in table)
        cases.extend((alias, target, analyte) for analyte in analytes)
    return cases


def test_every_alias_targets_a_declared_unit() -> None:
    declared = {unit for table in UNITS.factors.values() for unit in table}
    assert set(UNITS.aliases.values()) <= declared


@pytest.mark.parametrize(
    "alias",
    ["mL/min/1.73m2", "mEq/L", "mcg/L"],  # the spec's own examples
)
def test_spec_alias_examples_are_in_the_table(alias: str) -> None:
    assert alias in UNITS.aliases


@pytest.mark.parametrize(("alias", "target", "analyte"), alias_cases())
def test_free_text_alias_converts_like_its_ucum_code(alias: str, target: str, analyte: str) -> None:
    via_alias = convert(analyte, 3.0, quantity(unit=alias))
    via_code = convert(analyte, 3.0, quantity(target))
    assert isinstance(via_alias, Converted)
    assert isinstance(via_code, Converted)
    assert via_alias.via == "unit-alias"
    assert via_alias.source_unit == target
    assert via_alias.value == via_code.value


@pytest.mark.parametrize(
    ("analyte", "q"),
    [
        ("egfr", quantity("mL/min")),  # plain mL/min is a clearance, not an eGFR
        ("egfr", quantity(unit="mL/min")),
        ("egfr", quantity(unit="ml/min")),
        ("hemoglobin", quantity("mg/dL")),  # a UCUM unit this analyte does not use
        ("ferritin", quantity("mg")),
        ("ferritin", quantity("UG/L")),  # UCUM is case-sensitive
        ("ferritin", quantity(unit="nanograms per millilitre")),  # free text outside the alias table
        ("ferritin", quantity(unit="NG/ML")),
        ("ferritin", quantity(unit="ug / L")),
        ("hemoglobin", quantity(unit="mEq/L")),  # an alias whose target this analyte does not use
        ("ferritin", quantity()),  # no unit at all
        ("ferritin", quantity("", unit="")),
        ("tsat", quantity(unit="percent")),
    ],
)
def test_units_not_understood_are_never_guessed(analyte: str, q: dict[str, Any]) -> None:
    assert isinstance(convert(analyte, 1.0, q), UnitProblem)


def test_ucum_code_wins_over_unit_text() -> None:
    converted = convert("hemoglobin", 12.0, {"value": 12.0, "system": UCUM, "code": "g/dL", "unit": "g/L"})
    assert isinstance(converted, Converted)
    assert converted.value == pytest.approx(120)
    assert converted.via == "ucum-code"


def test_unknown_ucum_code_is_not_rescued_by_unit_text() -> None:
    # units.json: the alias table is a fallback only when Quantity.code carries no UCUM code
    q = {"value": 1.0, "system": UCUM, "code": "mEq/L", "unit": "mEq/L"}
    assert isinstance(convert("potassium", 1.0, q), UnitProblem)


def test_ucum_code_without_unit_text() -> None:
    converted = convert("potassium", 4.0, {"value": 4.0, "system": UCUM, "code": "meq/L"})
    assert isinstance(converted, Converted)
    assert converted.value == 4.0


def test_code_from_another_system_is_not_ucum() -> None:
    q = {"value": 0.6, "system": "http://example.org/lab-units", "code": "mmol/L", "unit": "millimoles per litre"}
    assert isinstance(convert("magnesium", 0.6, q), UnitProblem)


def test_problem_says_which_unit_and_analyte() -> None:
    problem = convert("egfr", 1.0, quantity("mL/min"))
    assert isinstance(problem, UnitProblem)
    assert "mL/min" in problem.detail
    assert "egfr" in problem.detail


@pytest.mark.parametrize(("mmol_mol", "percent"), [(48, 6.54), (39, 5.72), (47, 6.45), (0, 2.15)])
def test_hba1c_affine_conversion(mmol_mol: float, percent: float) -> None:
    """W8: % = mmol/mol / 10.929 + 2.15 (an offset too); 48 mmol/mol is 6.54 %, hence the stated equivalents."""
    converted = convert("hba1c", mmol_mol, quantity("mmol/mol"))
    assert isinstance(converted, Converted)
    assert converted.value == pytest.approx(percent, abs=0.01)
    assert converted.unit == "%"
    assert UNITS.factors["hba1c"]["mmol/mol"].invert(converted.value) == pytest.approx(mmol_mol)


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ({"value": 4}, ("{score}", "unitless")),
        (quantity("{score}"), ("{score}", "ucum-code")),
        (quantity("1"), ("1", "ucum-code")),
        (quantity(unit="score", system=None), ("{score}", "unit-alias")),
    ],
)
def test_audit_c_scores_without_a_unit_are_usable(q: dict[str, Any], expected: tuple[str, str]) -> None:
    """W13: no unit at all, {score} or UCUM 1 is a score; an analyte without ``unitless`` still needs a unit."""
    assert UNITS.resolve_unit("audit-c", q) == expected
    assert isinstance(UNITS.resolve_unit("ferritin", {"value": 4}), UnitProblem)
    assert isinstance(UNITS.resolve_unit("audit-c", quantity("mg/dL")), UnitProblem)
