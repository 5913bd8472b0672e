"""Property tests of the rule engine (hypothesis), bounded and derandomised so every run is the same.

1. Units: the same value written in another supported unit (mappings/units.json) never changes what
   a clinician acts on (findings with severities, iron band, GFR category, advisories).
2. Results that do not count (older than the 365-day window, entered-in-error, cancelled) never
   change it either, whatever their value.
3. Arbitrary Observation-shaped JSON never makes the engine raise anything but rls_screen.errors.
4. Evaluation is deterministic, and does not depend on the order the Observations arrive in.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Mapping
from datetime import date, timedelta
from typing import Any

import pytest
from engine_helpers import (
    AS_OF,
    EGFR_TIER_0,
    EGFR_TIER_1,
    EGFR_TIER_2,
    EGFR_TIER_3,
    LOINC_SYSTEM,
    SNOMED,
    UCUM,
    advisory_codes,
    assess,
    knowledge,
    obs,
    outcome,
    patient,
    pregnancy_status,
)
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from rls_screen.errors import RlsScreenError
from rls_screen.model import Assessment, PatientFacts
from rls_screen.units import load_unit_table

pytestmark = pytest.mark.unit

BOUNDED = settings(
    max_examples=200,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)

UNITS = load_unit_table()

# analyte -> (canonical LOINC, plausible canonical range)
ANALYTES: dict[str, tuple[str, float, float]] = {
    "ferritin": ("2276-4", 1, 500),
    "hemoglobin": ("718-7", 50, 180),
    "tsat": ("2502-3", 3, 80),
    "iron": ("2498-4", 10, 250),
    "tibc": ("2500-7", 150, 500),
    "crp": ("1988-5", 0.1, 60),
    "albumin": ("1751-7", 15, 55),
    "creatinine": ("2160-0", 0.3, 9),
    "magnesium": ("19123-9", 0.2, 1.5),
    "potassium": ("2823-3", 2.0, 8.0),
    "calcium-total": ("17861-6", 1.3, 3.0),
    "calcium-ionized": ("1994-3", 0.6, 1.5),
    "egfr": ("98979-8", 2, 130),
}
# LOINC codes whose property is the substance concentration, used when the unit is molar
MOLAR_LOINC = {
    ("ferritin", "pmol/L"): "14723-1",
    ("hemoglobin", "mmol/L"): "59260-0",
    ("iron", "umol/L"): "14798-3",
    ("tibc", "umol/L"): "14800-7",
    ("creatinine", "umol/L"): "14682-9",
}
# every threshold of docs/rules.md sections 2-5 (and the CTCAE grade bounds), canonical units
THRESHOLDS: dict[str, tuple[float, ...]] = {
    "ferritin": (15, 50, 70, 75, 100, 200),
    "hemoglobin": (70, 80, 95, 100, 105, 110, 115, 120, 130),
    "tsat": (20, 45),
    "crp": (5,),
    "egfr": (15, 30, 45, 60, 90),
    "magnesium": (0.3, 0.4, 0.5, 0.7),
    "potassium": (2.5, 3.0, 3.5, 5.0, 5.5, 6.0, 7.0),
    "calcium-ionized": (0.8, 0.9, 1.0, 1.15),
    "calcium-total": (1.5, 1.75, 2.0, 2.12),
}


def clear_of(value: float, thresholds: tuple[float, ...], relative: float = 1e-6) -> bool:
    return all(abs(value - t) > relative * max(abs(t), 1.0) for t in thresholds)


def ckd_epi_2021(creatinine: float, age: int, sex: str) -> float:
    kappa, alpha, factor = (0.7, -0.241, 1.012) if sex == "female" else (0.9, -0.302, 1.0)
    ratio = creatinine / kappa
    return 142 * min(ratio, 1) ** alpha * max(ratio, 1) ** -1.2 * 0.9938**age * factor


def units_of(analyte: str) -> list[str]:
    return sorted(UNITS.factors[analyte])


def aliases_of(unit: str) -> list[str]:
    return sorted(alias for alias, target in UNITS.aliases.items() if target == unit)


def lab(analyte: str, canonical: float, unit: str, days_ago: int, *, as_text: str | None = None, **kw: Any) -> dict:
    """An Observation for ``canonical`` (in the canonical unit) written in ``unit``."""
    value = UNITS.factors[analyte][unit].invert(canonical)
    loinc = MOLAR_LOINC.get((analyte, unit), ANALYTES[analyte][0])
    if as_text is not None:
        return obs(loinc, value, None, unit_text=as_text, days_ago=days_ago, **kw)
    return obs(loinc, value, unit, days_ago=days_ago, **kw)


def acted_on(assessment: Assessment) -> tuple[Any, ...]:
    return (*outcome(assessment), sorted(advisory_codes(assessment)))


patients = st.builds(
    lambda sex, age: patient(sex, age_years=age),
    st.sampled_from(["female", "male", None]),
    st.integers(min_value=18, max_value=95),
)


@st.composite
def panels(draw: st.DrawFn) -> dict[str, float]:
    """Canonical values for a random subset of analytes."""
    chosen = draw(st.sets(st.sampled_from(sorted(ANALYTES)), min_size=1))
    out = {}
    for analyte in sorted(chosen):
        _, low, high = ANALYTES[analyte]
        out[analyte] = draw(st.floats(min_value=low, max_value=high, allow_nan=False, allow_infinity=False))
    return out


def derived_values_clear(panel: dict[str, float], who: PatientFacts) -> bool:
    """True when no quantity the engine derives from the panel sits on a threshold."""
    if not all(clear_of(v, THRESHOLDS.get(a, ())) for a, v in panel.items()):
        return False
    computes_tsat = "tsat" not in panel and "iron" in panel and "tibc" in panel
    if computes_tsat and not clear_of(panel["iron"] / panel["tibc"] * 100, THRESHOLDS["tsat"]):
        return False
    if "calcium-ionized" not in panel and "calcium-total" in panel and "albumin" in panel:
        corrected = panel["calcium-total"] + 0.02 * (40 - panel["albumin"])
        if not clear_of(corrected, THRESHOLDS["calcium-total"]):
            return False
    if "egfr" not in panel and "creatinine" in panel and who.birth_date is not None:
        age = (AS_OF - who.birth_date).days // 365
        # both sexes (sex may be unknown) and neighbouring ages (age at the draw or at the as-of date)
        ages = (age - 1, age, age + 1)
        computed = [ckd_epi_2021(panel["creatinine"], y, s) for s in ("female", "male") for y in ages]
        if not all(clear_of(value, THRESHOLDS["egfr"]) for value in computed):
            return False
    return True


# --- 1. unit invariance -------------------------------------------------------------------------------


@BOUNDED
@given(panel=panels(), who=patients, days_ago=st.integers(min_value=0, max_value=365), data=st.data())
def test_units_never_change_the_outcome(
    panel: dict[str, float], who: PatientFacts, days_ago: int, data: st.DataObject
) -> None:
    assume(derived_values_clear(panel, who))
    canonical = [lab(a, v, UNITS.canonical_unit[a], days_ago) for a, v in sorted(panel.items())]
    converted = []
    for analyte, value in sorted(panel.items()):
        unit = data.draw(st.sampled_from(units_of(analyte)), label=f"{analyte} unit")
        text = data.draw(st.sampled_from([None, *aliases_of(unit)]), label=f"{analyte} written as")
        converted.append(lab(analyte, value, unit, days_ago, as_text=text))
    expected = assess(canonical, who=who)
    actual = assess(converted, who=who)
    assert acted_on(actual) == acted_on(expected)
    assert not [n for n in actual.not_evaluable if n.reason == "unit-not-understood"]


# --- 2. results that do not count ---------------------------------------------------------------------

NUMERIC = sorted(ANALYTES)


@st.composite
def uncounted_results(draw: st.DrawFn) -> dict:
    """A result S1/S2 says not to use: stale (> 365 days), entered-in-error or cancelled; any value."""
    kind = draw(st.sampled_from(["stale", "entered-in-error", "cancelled", "pregnancy"]))
    if kind == "stale":
        days_ago = draw(st.integers(min_value=366, max_value=20 * 365))
        status = draw(st.sampled_from(["final", "amended", "corrected"]))
    else:
        days_ago = draw(st.integers(min_value=0, max_value=365))
        status = draw(st.sampled_from(["entered-in-error", "cancelled"]))
    if kind == "pregnancy":  # a withdrawn 'Pregnant' status must not change the Hb cut-off
        resource = pregnancy_status(True, days_ago=days_ago, id="extra")
        resource["status"] = draw(st.sampled_from(["entered-in-error", "cancelled"]))
        return resource
    analyte = draw(st.sampled_from(NUMERIC))
    unit = draw(st.sampled_from(units_of(analyte)))
    value = draw(st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False))
    comparator = draw(st.sampled_from([None, "<", "<=", ">", ">="]))
    loinc = MOLAR_LOINC.get((analyte, unit), ANALYTES[analyte][0])
    if analyte == "egfr":
        loinc = draw(st.sampled_from([*EGFR_TIER_0, *EGFR_TIER_1, *EGFR_TIER_2, *EGFR_TIER_3]))
    return obs(loinc, value, unit, days_ago=days_ago, status=status, comparator=comparator, id="extra")


@BOUNDED
@given(
    panel=panels(),
    who=patients,
    days=st.lists(st.integers(min_value=0, max_value=365), min_size=len(ANALYTES), max_size=len(ANALYTES)),
    extra=uncounted_results(),
    position=st.integers(min_value=0, max_value=len(ANALYTES)),
)
def test_uncounted_results_never_change_the_outcome(
    panel: dict[str, float], who: PatientFacts, days: list[int], extra: dict, position: int
) -> None:
    base = [
        lab(a, v, UNITS.canonical_unit[a], days[i], id=f"base-{i}") for i, (a, v) in enumerate(sorted(panel.items()))
    ]
    with_extra = [*base[:position], extra, *base[position:]]
    assert acted_on(assess(with_extra, who=who)) == acted_on(assess(base, who=who))


# --- 3. arbitrary Observation-shaped JSON -------------------------------------------------------------

# Junk of every JSON type (cheap to draw: generating deep random JSON costs more than evaluating it).
JUNK: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    7,
    10**20,
    0.5,
    -0.0,
    math.nan,
    math.inf,
    -math.inf,
    "",
    "x",
    "final",
    "2026-01-01",
    "<",
    "mg/dL",
    [],
    [None],
    [{}],
    ["<"],
    {},
    {"coding": []},
    {"coding": [{"system": 1, "code": []}]},
    {"value": 1},
    {"text": "x"},
]
junk = st.sampled_from(JUNK).map(copy.deepcopy)  # a fresh copy: a test must never change JUNK
json_values = (
    junk
    | st.text(alphabet="az09-/<>.", max_size=5)
    | st.floats()
    | st.lists(junk, max_size=2)
    | st.dictionaries(st.sampled_from(["code", "system", "value", "coding", "end", "x"]), junk, max_size=2)
)
KNOWN_CODES = sorted(
    {code for (system, code) in knowledge().terminology.analyte_by_coding if system == LOINC_SYSTEM}
    | {"22753-8", "2501-5", "45066-8", "35591-7", "1234-5"}
)
ALL_UNITS = sorted({u for table in UNITS.factors.values() for u in table} | set(UNITS.aliases) | {"mL/min", "mg", ""})
UNITS_OF_CODE = {
    code: sorted(UNITS.factors[analyte])
    for (system, code), analyte in knowledge().terminology.analyte_by_coding.items()
    if system == LOINC_SYSTEM and analyte in UNITS.factors
}
STATUSES = ["final", "amended", "corrected", "entered-in-error", "cancelled", "preliminary", "registered", "unknown"]


@st.composite
def fhir_dates(draw: st.DrawFn) -> str:
    moment = draw(st.dates(min_value=date(1900, 1, 1), max_value=date(2100, 12, 31)))
    if draw(st.booleans()):
        return moment.isoformat()
    hour, minute = draw(st.integers(0, 23)), draw(st.integers(0, 59))
    zone = draw(st.sampled_from(["", "Z", "+00:00", "+14:00", "-12:00", "+05:30"]))
    return f"{moment.isoformat()}T{hour:02d}:{minute:02d}:00{zone}"


near_dates = st.integers(min_value=-30, max_value=400).map(lambda n: (AS_OF - timedelta(days=n)).isoformat())
in_window = st.integers(min_value=0, max_value=365).map(lambda n: (AS_OF - timedelta(days=n)).isoformat())
MUTABLE = [
    ("id",),
    ("status",),
    ("code",),
    ("code", "coding"),
    ("code", "coding", 0, "system"),
    ("code", "coding", 0, "code"),
    ("valueQuantity",),
    ("valueQuantity", "value"),
    ("valueQuantity", "unit"),
    ("valueQuantity", "system"),
    ("valueQuantity", "code"),
    ("valueQuantity", "comparator"),
    ("effectiveDateTime",),
]


@st.composite
def observations(draw: st.DrawFn) -> dict[str, Any]:
    """Observation-shaped JSON: a plausible result with a few elements dropped or garbled."""
    loinc = draw(st.sampled_from(KNOWN_CODES))
    fitting = UNITS_OF_CODE.get(loinc) or ALL_UNITS
    unit = draw(st.sampled_from(fitting) if draw(st.integers(0, 9)) else st.sampled_from(ALL_UNITS))
    quantity: dict[str, Any] = {
        "value": draw(
            st.floats(min_value=0, max_value=1e4)
            | st.integers(min_value=-5, max_value=10**6)
            | st.floats(allow_nan=True, allow_infinity=True)
        ),
        "unit": unit,
        "system": UCUM,
        "code": unit,
    }
    comparator = draw(st.sampled_from([None, None, None, "<", "<=", ">", ">=", "ad"]))
    if comparator is not None:
        quantity["comparator"] = comparator
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": draw(st.sampled_from(["a", "b", "c", "d", "e"])),
        "status": draw(st.sampled_from(["final"] * 8 + STATUSES)),
        "code": {"coding": [{"system": LOINC_SYSTEM, "code": loinc}]},
        "valueQuantity": quantity,
        "effectiveDateTime": draw(in_window if draw(st.integers(0, 4)) else near_dates | fhir_dates()),
    }
    for path in draw(st.lists(st.sampled_from(MUTABLE), max_size=3, unique=True)):
        parent: Any = resource
        for step in path[:-1]:
            parent = parent[step] if isinstance(parent, dict | list) and _has(parent, step) else None
        if isinstance(parent, dict | list) and _has(parent, path[-1]):
            if draw(st.booleans()) and isinstance(parent, dict):
                del parent[path[-1]]
            else:
                parent[path[-1]] = draw(json_values)
    optional = {
        "effectivePeriod": st.fixed_dictionaries({}, optional={"start": dates_or_junk, "end": dates_or_junk}),
        "issued": dates_or_junk,
        "valueCodeableConcept": pregnant_concept | json_values,
        "valueString": json_values,
        "dataAbsentReason": json_values,
        "referenceRange": st.lists(
            st.fixed_dictionaries({}, optional={"low": json_values, "high": json_values, "text": json_values}),
            max_size=2,
        ),
        "interpretation": st.lists(codes | json_values, max_size=2),
        "meta": st.fixed_dictionaries({}, optional={"versionId": json_values}),
    }
    for key in draw(st.lists(st.sampled_from(sorted(optional)), max_size=2, unique=True)):
        resource[key] = draw(optional[key])
    return resource


def _has(container: dict | list, step: str | int) -> bool:
    if isinstance(container, dict):
        return step in container
    return isinstance(step, int) and 0 <= step < len(container)


dates_or_junk = near_dates | fhir_dates() | json_values
codings = st.fixed_dictionaries(
    {},
    optional={
        "system": st.sampled_from([LOINC_SYSTEM, "http://example.org"]) | json_values,
        "code": st.sampled_from(KNOWN_CODES) | json_values,
        "display": json_values,
    },
)
codes = st.fixed_dictionaries({}, optional={"coding": st.lists(codings | json_values, max_size=3), "text": json_values})
pregnant_concept = st.just({"coding": [{"system": SNOMED, "code": "77386006"}]})
any_patient = st.builds(
    PatientFacts,
    reference=st.just("Patient/p1"),
    sex=st.sampled_from(["female", "male", None]),
    birth_date=st.none() | st.dates(min_value=date(1900, 1, 1), max_value=date(2030, 1, 1)),
)


def _uniterable_coding(concept: object) -> bool:
    if not isinstance(concept, Mapping):
        return False
    coding = concept.get("coding")
    return bool(coding) and not isinstance(coding, str | list | dict | tuple)


@BOUNDED
@given(resources=st.lists(observations(), max_size=4), who=any_patient)
def test_arbitrary_observation_json_never_raises_unexpected_errors(resources: list[dict], who: PatientFacts) -> None:
    try:
        assessment = assess(resources, who=who)
    except RlsScreenError:
        return
    json.dumps(assessment.to_json(), allow_nan=True)
    assert assessment.iron_band in ("oral-or-iv", "iv-only", "not-indicated", "indeterminate")
    assert assessment.gfr_category in (None, "G1", "G2", "G3a", "G3b", "G4", "G5")
    assert_codes_are_in_the_code_system(assessment)


def assert_codes_are_in_the_code_system(assessment: Assessment) -> None:
    """Section 9: our codes (findings, advisories, not-evaluable reasons) live in CodeSystem rls-finding."""
    concepts = knowledge().terminology.concepts
    for item in (*assessment.findings, *assessment.advisories):
        assert concepts[item.code].kind == item.kind
    for entry in assessment.not_evaluable:
        assert concepts[entry.reason].kind == "not-evaluable"


@BOUNDED
@given(value=st.floats(min_value=0, max_value=1e308), analyte=st.sampled_from(NUMERIC), data=st.data())
def test_extreme_but_finite_values_never_raise(value: float, analyte: str, data: st.DataObject) -> None:
    unit = data.draw(st.sampled_from(units_of(analyte)))
    loinc = MOLAR_LOINC.get((analyte, unit), ANALYTES[analyte][0])
    companions = [obs("2498-4", 50, "ug/dL"), obs("2500-7", value, "ug/dL"), obs("1751-7", value, "g/L")]
    assessment = assess([obs(loinc, value, unit), *companions], who=patient("female", age_years=60))
    json.dumps(assessment.to_json(), allow_nan=True)


# --- 4. determinism -----------------------------------------------------------------------------------


def canonical_json(assessment: Assessment) -> str:
    return json.dumps(assessment.to_json(), sort_keys=True, allow_nan=True, default=str)


@BOUNDED
@given(resources=st.lists(observations(), max_size=2), panel=panels(), who=any_patient)
def test_evaluation_is_deterministic(resources: list[dict], panel: dict[str, float], who: PatientFacts) -> None:
    labs = [lab(a, v, UNITS.canonical_unit[a], 5, id=f"p{i}") for i, (a, v) in enumerate(sorted(panel.items()))]
    inputs = [*labs, *resources]
    try:
        first = canonical_json(assess(inputs, who=who))
    except RlsScreenError:
        return
    assert canonical_json(assess(json.loads(json.dumps(inputs, allow_nan=True)), who=who)) == first


@BOUNDED
@given(
    panel=panels(),
    who=patients,
    days=st.lists(st.integers(0, 30), min_size=2 * len(ANALYTES), max_size=2 * len(ANALYTES)),
    data=st.data(),
)
def test_outcome_does_not_depend_on_input_order(
    panel: dict[str, float], who: PatientFacts, days: list[int], data: st.DataObject
) -> None:
    # two results per analyte on random days, each with its own id
    resources = []
    for i, (analyte, value) in enumerate(sorted(panel.items())):
        resources.append(lab(analyte, value, UNITS.canonical_unit[analyte], days[2 * i], id=f"a{i}"))
        resources.append(lab(analyte, value * 0.7, UNITS.canonical_unit[analyte], days[2 * i + 1], id=f"b{i}"))
    shuffled = data.draw(st.permutations(resources))
    first, second = assess(resources, who=who), assess(shuffled, who=who)
    assert_codes_are_in_the_code_system(first)
    assert acted_on(first) == acted_on(second)
    assert [sorted(f.basis) for f in first.findings] == [sorted(f.basis) for f in second.findings]
    assert sorted(map(str, first.not_evaluable)) == sorted(map(str, second.not_evaluable))
