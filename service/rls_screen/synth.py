"""Deterministic synthetic panel of RLS patients as plain FHIR R4 JSON, with the mess of real lab feeds.

This module owns the test and demo data: Patients, Conditions (restless legs syndrome, dialysis) and
laboratory Observations for the analytes of CLINICAL_RULES.md, drawn per patient from a *scenario*
(iron deficiency, CKD G4, 2nd-trimester pregnancy, normal, ...) and then made messy the way real
feeds are: several results per analyte over two years (older ones stale), entered-in-error and
preliminary results, comparators (``<5``, ``>60``), dataAbsentReason, units the module must convert
or refuse, eGFR codes of different precedence, missing iron studies. The distributions and every
quirk are documented in docs/synthetic-panel.md.

Pure: no network, no clock (``as_of`` is an argument), no global random state. Patient ``i`` is drawn
from its own ``random.Random`` keyed by ``(seed, i)``, so it is the same whether generated alone or in
a panel of a million, and panels can be streamed (``iter_patient_records``) without holding them.
Each patient carries a ``ManifestEntry``: the scenario, the quirks applied and the findings the values
were designed to produce (with margins from every threshold), so tests and demos can cross-check the
engine against an independent statement of intent.
"""

from __future__ import annotations

import math
import os
import random
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import orjson

from rls_screen.errors import InputError

Json = dict[str, Any]

LOINC: Final = "http://loinc.org"
SNOMED: Final = "http://snomed.info/sct"
ICD10CM: Final = "http://hl7.org/fhir/sid/icd-10-cm"
UCUM: Final = "http://unitsofmeasure.org"

MAX_PATIENTS: Final = 1_000_000
ID_PREFIX_PATTERN: Final = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,30}")
MRN_SYSTEM: Final = "https://rls-screen.org/fhir/synthetic-mrn"
LOCAL_LAB_SYSTEM: Final = "https://rls-screen.org/fhir/CodeSystem/synthetic-local-lab"
OBSERVATION_CATEGORY: Final = "http://terminology.hl7.org/CodeSystem/observation-category"
CONDITION_CLINICAL: Final = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_VERIFICATION: Final = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
CONDITION_CATEGORY: Final = "http://terminology.hl7.org/CodeSystem/condition-category"
DATA_ABSENT_REASON: Final = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
INTERPRETATION: Final = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
# HL7 v3 ActReason HTEST "test health data": every resource says it is synthetic, so a shared server
# can tell (and purge) it.
TEST_DATA_TAG: Final[Json] = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
    "code": "HTEST",
    "display": "test health data",
}
_RNG_NAMESPACE: Final = "rls-screen-synth/1"
"""Part of every per-patient seed; bump it only when the generated data is meant to change."""
_STALE_AFTER_DAYS: Final = 365  # CLINICAL_RULES S2
_HISTORY_DAYS: Final = 730  # "several results per analyte spread over two years"

# --- Scenarios -----------------------------------------------------------------------------------
# Weights in per mille of an RLS clinic panel (docs/synthetic-panel.md explains each one).
SCENARIO_WEIGHTS: Final[tuple[tuple[str, int], ...]] = (
    ("normal", 100),
    ("iron-deficiency", 140),
    ("iron-deficiency-inflammation", 60),
    ("iron-insufficient", 200),
    ("iron-insufficient-tsat", 50),
    ("iron-iv-band", 50),
    ("iron-overload-risk", 20),
    ("anemia", 100),
    ("ckd-g3a", 40),
    ("ckd-g3b", 25),
    ("ckd-g4", 15),
    ("kidney-failure", 20),
    ("hypomagnesemia", 30),
    ("hypokalemia", 20),
    ("hyperkalemia", 15),
    ("hypocalcemia", 15),
    ("hypocalcemia-ionized", 10),
    ("low-total-calcium-low-albumin", 15),
    ("pregnant-t1", 15),
    ("pregnant-t2", 20),
    ("pregnant-t3", 15),
    ("multi-cause", 25),
)
SCENARIOS: Final = tuple(name for name, _ in SCENARIO_WEIGHTS)
_WEIGHT_TOTAL: Final = sum(weight for _, weight in SCENARIO_WEIGHTS)
_CHILD_SCENARIOS: Final = frozenset({"normal", "iron-deficiency", "iron-insufficient", "anemia"})
_KIDNEY_SCENARIOS: Final = frozenset({"ckd-g3a", "ckd-g3b", "ckd-g4", "kidney-failure"})
_HISTORY_SCENARIOS: Final = ("normal", "iron-deficiency", "iron-insufficient", "anemia", "hypokalemia", "ckd-g3a")
_GOLDEN: Final = (math.sqrt(5.0) - 1.0) / 2.0


# --- Units and codes -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Unit:
    """How one analyte is reported in one unit: ``reported = canonical * factor`` (CLINICAL_RULES 7)."""

    code: str
    """UCUM code."""
    loinc: str
    factor: float
    decimals: int
    text: str
    """Quantity.unit, as a lab prints it."""


def _units(*units: _Unit) -> dict[str, _Unit]:
    return {unit.code: unit for unit in units}


# Canonical units (the engine's): ferritin ug/L, TSAT %, iron/TIBC/UIBC ug/dL, CRP mg/L, Hb g/dL,
# creatinine mg/dL, eGFR mL/min/{1.73_m2}, Mg mmol/L, K mmol/L, total Ca mg/dL, ionized Ca mmol/L,
# albumin g/dL.
_UNITS: Final[dict[str, dict[str, _Unit]]] = {
    "ferritin": _units(
        _Unit("ng/mL", "2276-4", 1.0, 0, "ng/mL"),
        _Unit("ug/L", "2276-4", 1.0, 0, "µg/L"),
        _Unit("pmol/L", "14723-1", 2.247, 0, "pmol/L"),
    ),
    "tsat": _units(_Unit("%", "2502-3", 1.0, 0, "%")),
    "iron": _units(_Unit("ug/dL", "2498-4", 1.0, 0, "µg/dL"), _Unit("umol/L", "14798-3", 1 / 5.585, 1, "µmol/L")),
    "tibc": _units(_Unit("ug/dL", "2500-7", 1.0, 0, "µg/dL"), _Unit("umol/L", "14800-7", 1 / 5.585, 1, "µmol/L")),
    "uibc": _units(_Unit("ug/dL", "2501-5", 1.0, 0, "µg/dL"), _Unit("umol/L", "2501-5", 1 / 5.585, 1, "µmol/L")),
    "crp": _units(_Unit("mg/L", "1988-5", 1.0, 1, "mg/L"), _Unit("mg/dL", "1988-5", 0.1, 2, "mg/dL")),
    "hb": _units(
        _Unit("g/dL", "718-7", 1.0, 1, "g/dL"),
        _Unit("g/L", "718-7", 10.0, 0, "g/L"),
        _Unit("mmol/L", "59260-0", 1 / 1.6114, 1, "mmol/L"),
    ),
    "creatinine": _units(_Unit("mg/dL", "2160-0", 1.0, 2, "mg/dL"), _Unit("umol/L", "14682-9", 88.42, 0, "µmol/L")),
    "egfr": _units(_Unit("mL/min/{1.73_m2}", "98979-8", 1.0, 0, "mL/min/1.73m2")),
    "mg": _units(_Unit("mmol/L", "19123-9", 1.0, 2, "mmol/L"), _Unit("mg/dL", "19123-9", 2.4305, 1, "mg/dL")),
    "k": _units(_Unit("mmol/L", "2823-3", 1.0, 1, "mmol/L"), _Unit("meq/L", "2823-3", 1.0, 1, "mEq/L")),
    "ca": _units(_Unit("mg/dL", "17861-6", 1.0, 1, "mg/dL"), _Unit("mmol/L", "2000-8", 1 / 4.008, 2, "mmol/L")),
    "ca_ionized": _units(_Unit("mmol/L", "1994-3", 1.0, 2, "mmol/L")),
    "albumin": _units(_Unit("g/dL", "1751-7", 1.0, 1, "g/dL"), _Unit("g/L", "1751-7", 10.0, 0, "g/L")),
}
# Unit text without a UCUM code, as some feeds send it; each is in the spec's alias examples (section 7).
_TEXT_ONLY_UNITS: Final[dict[str, tuple[str, str]]] = {
    "ferritin": ("ug/L", "mcg/L"),
    "k": ("meq/L", "mEq/L"),
    "egfr": ("mL/min/{1.73_m2}", "mL/min/1.73m2"),
}
_US_UNITS: Final[dict[str, str]] = {
    "ferritin": "ng/mL", "iron": "ug/dL", "tibc": "ug/dL", "uibc": "ug/dL", "crp": "mg/L", "hb": "g/dL",
    "creatinine": "mg/dL", "mg": "mg/dL", "k": "mmol/L", "ca": "mg/dL", "albumin": "g/dL",
}  # fmt: skip
_SI_UNITS: Final[dict[str, str]] = {
    "ferritin": "ug/L", "iron": "umol/L", "tibc": "umol/L", "uibc": "umol/L", "crp": "mg/L", "hb": "g/L",
    "creatinine": "umol/L", "mg": "mmol/L", "k": "mmol/L", "ca": "mmol/L", "albumin": "g/L",
}  # fmt: skip

LOINC_DISPLAY: Final[dict[str, str]] = {
    "2276-4": "Ferritin [Mass/volume] in Serum or Plasma",
    "14723-1": "Ferritin [Moles/volume] in Serum or Plasma",
    "2502-3": "Iron saturation [Mass Fraction] in Serum or Plasma",
    "2498-4": "Iron [Mass/volume] in Serum or Plasma",
    "14798-3": "Iron [Moles/volume] in Serum or Plasma",
    "2500-7": "Iron binding capacity [Mass/volume] in Serum or Plasma",
    "14800-7": "Iron binding capacity [Moles/volume] in Serum or Plasma",
    "2501-5": "Iron binding capacity.unsaturated [Mass/volume] in Serum or Plasma",
    "1988-5": "C reactive protein [Mass/volume] in Serum or Plasma",
    "718-7": "Hemoglobin [Mass/volume] in Blood",
    "59260-0": "Hemoglobin [Moles/volume] in Blood",
    "2160-0": "Creatinine [Mass/volume] in Serum or Plasma",
    "14682-9": "Creatinine [Moles/volume] in Serum or Plasma",
    "98979-8": "Glomerular filtration rate/1.73 sq M.predicted [Volume Rate/Area] in Serum, Plasma or "
    "Blood by Creatinine-based formula (CKD-EPI 2021)",
    "48642-3": "Glomerular filtration rate/1.73 sq M.predicted among non-blacks [Volume Rate/Area] in "
    "Serum, Plasma or Blood by Creatinine-based formula (MDRD)",
    "19123-9": "Magnesium [Mass/volume] in Serum or Plasma",
    "2823-3": "Potassium [Moles/volume] in Serum or Plasma",
    "17861-6": "Calcium [Mass/volume] in Serum or Plasma",
    "2000-8": "Calcium [Moles/volume] in Serum or Plasma",
    "1994-3": "Calcium.ionized [Moles/volume] in Blood",
    "1751-7": "Albumin [Mass/volume] in Serum or Plasma",
    "82810-3": "Pregnancy status",
    "49051-6": "Gestational age in weeks",
}
_SHORT_NAME: Final[dict[str, str]] = {
    "ferritin": "Ferritin", "tsat": "Transferrin saturation", "iron": "Iron", "tibc": "TIBC", "uibc": "UIBC",
    "crp": "CRP", "hb": "Hemoglobin", "creatinine": "Creatinine", "egfr": "eGFR", "mg": "Magnesium",
    "k": "Potassium", "ca": "Calcium", "ca_ionized": "Calcium, ionized", "albumin": "Albumin",
}  # fmt: skip
_LOCAL_CODE: Final[dict[str, str]] = {
    "ferritin": "FERR", "tsat": "TSAT", "iron": "FE", "tibc": "TIBC", "uibc": "UIBC", "crp": "CRP",
    "hb": "HGB", "creatinine": "CREA", "egfr": "EGFR", "mg": "MG", "k": "K", "ca": "CA",
    "ca_ionized": "ICA", "albumin": "ALB",
}  # fmt: skip

# The lab's own reference interval, canonical units: (female low, high), (male low, high); None = open.
_REFERENCE: Final[dict[str, tuple[tuple[float | None, float | None], tuple[float | None, float | None]]]] = {
    "ferritin": ((15, 150), (30, 400)),
    "tsat": ((20, 50), (20, 50)),
    "iron": ((50, 170), (65, 175)),
    "tibc": ((250, 450), (250, 450)),
    "uibc": ((110, 370), (110, 370)),
    "crp": ((None, 5), (None, 5)),
    "hb": ((12.0, 15.5), (13.5, 17.5)),
    "creatinine": ((0.59, 1.04), (0.74, 1.35)),
    "egfr": ((60, None), (60, None)),
    "mg": ((0.70, 1.00), (0.70, 1.00)),
    "k": ((3.5, 5.1), (3.5, 5.1)),
    "ca": ((8.6, 10.3), (8.6, 10.3)),
    "ca_ionized": ((1.15, 1.33), (1.15, 1.33)),
    "albumin": ((3.5, 5.0), (3.5, 5.0)),
}
_GROUP_ANALYTES: Final[dict[str, tuple[str, ...]]] = {
    "iron": ("ferritin", "tsat", "iron", "tibc", "uibc", "crp"),
    "cbc": ("hb",),
    "chem": ("creatinine", "egfr", "k", "ca", "albumin", "ca_ionized", "mg"),
}
# Values that would raise an alarm if a result marked entered-in-error or pending were used.
_ALARMING: Final[dict[str, float]] = {"ferritin": 2, "hb": 5.1, "k": 7.9, "egfr": 7, "mg": 0.31, "ca": 6.2}
# UTC offsets of the labs (hours): mostly North American, some European, weighted by repetition.
_UTC_OFFSETS: Final = (-8, -7, -6, -5, -5, -5, -4, 0, 1, 1, 2)
# eGFR bands (mL/min/1.73 m2) kept 2 units clear of the KDIGO category bounds (section 4).
_EGFR_BANDS: Final[dict[str, tuple[float, float]]] = {
    "ckd-g3a": (47, 58),
    "ckd-g3b": (32, 43),
    "ckd-g4": (17, 28),
    "kidney-failure": (5, 13),
}


# --- Public types --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ManifestEntry:
    """What the generator intended for one patient (not FHIR; for tests and demos)."""

    patient_id: str
    index: int
    scenario: str
    gender: str
    age: int
    """Whole years at ``as_of``."""
    rls: bool
    """Has an active, confirmed RLS Condition."""
    trimester: int | None
    expected_findings: tuple[str, ...]
    """Findings the deciding values were designed to produce (advisories and not-evaluable reasons
    excluded, except ``missing-iron-studies``); sorted."""
    quirks: tuple[str, ...]
    """Mess and variants applied (see docs/synthetic-panel.md); sorted."""
    targets: tuple[tuple[str, float], ...]
    """Deciding values in canonical units (ferritin ug/L, Hb g/dL, eGFR, ...), before lab rounding."""

    def to_json(self) -> Json:
        return {
            "patientId": self.patient_id,
            "index": self.index,
            "scenario": self.scenario,
            "gender": self.gender,
            "age": self.age,
            "rls": self.rls,
            "trimester": self.trimester,
            "expectedFindings": list(self.expected_findings),
            "quirks": list(self.quirks),
            "targets": dict(self.targets),
        }


@dataclass(frozen=True, slots=True)
class PatientRecord:
    """One patient: the Patient resource and its Conditions and Observations (FHIR R4 JSON)."""

    patient: Json
    resources: tuple[Json, ...]
    manifest: ManifestEntry
    panel_id: str
    """Id of the Group the patient belongs to."""

    @property
    def patient_id(self) -> str:
        return str(self.patient["id"])

    def all_resources(self) -> Iterator[Json]:
        """The Patient first, then its resources (the order a transaction needs)."""
        yield self.patient
        yield from self.resources


@dataclass(frozen=True)
class Panel:
    """A whole generated panel: patients, the FHIR Group listing them, and the manifest."""

    patients: tuple[PatientRecord, ...]
    group: Json
    manifest: tuple[ManifestEntry, ...]

    def scenario_counts(self) -> dict[str, int]:
        return dict(sorted(Counter(entry.scenario for entry in self.manifest).items()))

    def resource_counts(self) -> dict[str, int]:
        counts: Counter[str] = Counter()
        for record in self.patients:
            counts.update(resource["resourceType"] for resource in record.all_resources())
        counts["Group"] += 1
        return dict(sorted(counts.items()))


# --- Validation ----------------------------------------------------------------------------------
def validate_arguments(n: int, seed: int, as_of: date, id_prefix: str) -> None:
    """Raise InputError with a one-line reason when the generator cannot honour the arguments."""
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_PATIENTS:
        raise InputError(f"number of patients must be an integer from 1 to {MAX_PATIENTS:,}, got {n!r}")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise InputError(f"seed must be an integer, got {seed!r}")
    if not isinstance(as_of, date) or isinstance(as_of, datetime):
        raise InputError(f"as_of must be a datetime.date (no time), got {as_of!r}")
    if not 1900 <= as_of.year <= 9000:
        raise InputError(f"as_of must be a date between the years 1900 and 9000, got {as_of.isoformat()}")
    if not isinstance(id_prefix, str) or ID_PREFIX_PATTERN.fullmatch(id_prefix) is None:
        raise InputError(f"id prefix must start with a letter and hold 1-31 letters, digits or '-', got {id_prefix!r}")


# --- Generation ----------------------------------------------------------------------------------
def generate_panel(n: int = 200, *, seed: int = 1, as_of: date, id_prefix: str = "syn") -> Panel:
    """A panel of ``n`` synthetic patients; the same arguments give byte-identical resources."""
    records = tuple(iter_patient_records(n, seed, as_of, id_prefix))
    return Panel(
        patients=records,
        group=build_group(panel_id(id_prefix), [record.patient_id for record in records]),
        manifest=tuple(record.manifest for record in records),
    )


def iter_patient_records(n: int, seed: int, as_of: date, id_prefix: str = "syn") -> Iterator[PatientRecord]:
    """Patients 1..n one at a time (arguments are checked now, not on the first ``next``)."""
    validate_arguments(n, seed, as_of, id_prefix)
    return (_PatientBuilder(index, seed, as_of, id_prefix).build() for index in range(1, n + 1))


def generate_patient(index: int, *, seed: int = 1, as_of: date, id_prefix: str = "syn") -> PatientRecord:
    """Patient ``index`` (1-based) exactly as it appears in any panel of at least ``index`` patients."""
    if not isinstance(index, int) or isinstance(index, bool) or not 1 <= index <= MAX_PATIENTS:
        raise InputError(f"patient index must be an integer from 1 to {MAX_PATIENTS:,}, got {index!r}")
    validate_arguments(index, seed, as_of, id_prefix)
    return _PatientBuilder(index, seed, as_of, id_prefix).build()


def panel_id(id_prefix: str) -> str:
    return f"{id_prefix}-panel"


def patient_id(id_prefix: str, index: int) -> str:
    return f"{id_prefix}-p{index:04d}"


def build_group(group_id: str, patient_ids: Iterable[str]) -> Json:
    """The FHIR Group (type person, actual) whose members are the given patients."""
    members = [{"entity": {"reference": f"Patient/{pid}"}} for pid in patient_ids]
    return {
        "resourceType": "Group",
        "id": group_id,
        "meta": {"tag": [dict(TEST_DATA_TAG)]},
        "active": True,
        "type": "person",
        "actual": True,
        "name": "Synthetic RLS screening panel (test data)",
        "quantity": len(members),
        "member": members,
    }


def scenario_for(seed: int, index: int) -> str:
    """The scenario of patient ``index``: a golden-ratio (Weyl) sequence over the cumulative weights.

    A low-discrepancy sequence keeps every prefix of the panel close to the target mix (200 patients
    already match within a patient or two) while still depending only on ``(seed, index)``.
    """
    position = (_scenario_offset(seed) + index * _GOLDEN) % 1.0
    cumulative = 0
    for name, weight in SCENARIO_WEIGHTS:
        cumulative += weight
        if position * _WEIGHT_TOTAL < cumulative:
            return name
    return SCENARIO_WEIGHTS[-1][0]


@lru_cache(maxsize=64)
def _scenario_offset(seed: int) -> float:
    return random.Random(f"{_RNG_NAMESPACE}/{seed}/scenario").random()  # noqa: S311 - test data


# --- Per-patient drawing -------------------------------------------------------------------------
@dataclass(slots=True)
class _Targets:
    """Values of one draw, canonical units."""

    ferritin: float
    tsat: float
    tibc: float
    crp: float
    hb: float
    egfr: float
    mg: float
    k: float
    ca: float
    albumin: float
    ca_ionized: float | None = None


@dataclass(frozen=True, slots=True)
class _LabStyle:
    units: dict[str, str]
    tz: timezone
    ferritin_loq: bool
    """Reports ferritin below 5 as '<5'."""
    crp_loq: bool
    """Reports a low CRP as '<3' mg/L or '<0.5' mg/dL."""
    egfr_cap: int | None
    """Reports eGFR above the cap as '>cap'."""
    reference_ranges: bool
    interpretation: bool
    local_codes: bool


@dataclass(slots=True)
class _Draw:
    group: str
    days_ago: int
    values: _Targets


def _clamp(value: float, low: float, high: float) -> float:
    return float(min(max(value, low), high))


def _years_before(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February
        return day.replace(year=day.year - years, day=28)


def age_on(birth: date, on: date) -> int:
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


def ckd_epi_2021(creatinine_mg_dl: float, age: int, female: bool) -> float:
    """CKD-EPI 2021 race-free creatinine equation (Inker 2021; CLINICAL_RULES section 4)."""
    kappa, alpha = (0.7, -0.241) if female else (0.9, -0.302)
    ratio = creatinine_mg_dl / kappa
    egfr: float = 142 * min(ratio, 1.0) ** alpha * max(ratio, 1.0) ** -1.200 * 0.9938**age
    return egfr * 1.012 if female else egfr


def creatinine_for_egfr(egfr: float, age: int, female: bool) -> float:
    """The serum creatinine (mg/dL) for which CKD-EPI 2021 gives ``egfr``."""
    kappa, alpha = (0.7, -0.241) if female else (0.9, -0.302)
    base = 142 * 0.9938**age * (1.012 if female else 1.0)
    if egfr >= base:
        return float(kappa * (egfr / base) ** (1 / alpha))
    return float(kappa * (egfr / base) ** (-1 / 1.200))


def hb_cutoffs(gender: str, age: int, trimester: int | None) -> tuple[float, ...]:
    """WHO 2024 anemia cut-offs (g/dL) that apply; both sexes' when gender is neither male nor female."""
    if trimester is not None:
        return (10.5,) if trimester == 2 else (11.0,)
    if age < 12:
        return (11.5,)
    if age < 15:
        return (12.0,)
    if gender == "male":
        return (13.0,)
    if gender == "female":
        return (12.0,)
    return (12.0, 13.0)


def _round(value: float, decimals: int) -> float | int:
    if decimals == 0:
        return round(value)
    return round(value, decimals)


class _PatientBuilder:
    """Draws one patient. Every random call happens in a fixed order, so the output is reproducible."""

    def __init__(self, index: int, seed: int, as_of: date, id_prefix: str) -> None:
        self.index = index
        self.as_of = as_of
        self.id_prefix = id_prefix
        self.pid = patient_id(id_prefix, index)
        self.scenario = scenario_for(seed, index)
        self.rng = random.Random(f"{_RNG_NAMESPACE}/{seed}/{index}")  # noqa: S311 - test data
        self.quirks: set[str] = set()
        self.observations: list[tuple[datetime, int, Json]] = []
        self.deciding: dict[str, Json] = {}
        """Analyte -> the Observation meant to decide it (latest usable)."""
        self.conditions: list[Json] = []
        self.trimester: int | None = None
        self.ga_weeks = 0
        self.ga_days_ago = 0
        self.crp_distant = False

    # -- drawing helpers ------------------------------------------------------------------------
    def _draw(self, low: float, high: float) -> float:
        """Around the middle of [low, high] with noise, never outside it (the bounds keep margins)."""
        return _clamp(self.rng.gauss((low + high) / 2, (high - low) / 4), low, high)

    def _chance(self, probability: float) -> bool:
        return self.rng.random() < probability

    def _int(self, low: int, high: int) -> int:
        """Uniform integer in [low, high]; cheaper than ``randint`` (this is the hot path)."""
        return low + int(self.rng.random() * (high - low + 1))

    # -- the patient ----------------------------------------------------------------------------
    def build(self) -> PatientRecord:
        rng = self.rng
        scenario = self.scenario
        self.gender, self.age, self.birth_date = self._demographics()
        if scenario.startswith("pregnant-t"):
            self.trimester = int(scenario[-1])
            self.ga_weeks = self._int(*{1: (7, 11), 2: (16, 25), 3: (29, 37)}[self.trimester])
            self.ga_days_ago = self._int(2, 14)
        self.style = self._lab_style()
        targets = self._scenario_targets(scenario)
        if targets.ca_ionized is None and scenario != "hypocalcemia" and self._chance(0.05):
            targets.ca_ionized = self._draw(1.18, 1.32)
            self.quirks.add("ionized-calcium")
        presence = self._presence(targets)
        if self._chance(0.05):
            options = [analyte for analyte in _TEXT_ONLY_UNITS if presence[analyte] != "none"]
            self.quirks.add(f"unit-text-only-{rng.choice(options)}")
        if scenario == "iron-insufficient" and self._chance(0.1):
            self.crp_distant = True
            self.quirks.add("crp-distant-high")
        draws = self._schedule(presence, targets)
        self._emit_draws(draws, presence, targets)
        self._add_mess(targets)
        self._add_pregnancy()
        self._add_conditions()
        expected = self._expected_findings(targets, presence)
        observations = [obs for _, _, obs in sorted(self.observations, key=lambda item: (item[0], item[1]))]
        for number, observation in enumerate(observations, start=1):
            observation["id"] = f"{self.pid}-obs-{number:04d}"
        manifest = ManifestEntry(
            patient_id=self.pid,
            index=self.index,
            scenario=scenario,
            gender=self.gender,
            age=self.age,
            rls="no-rls-condition" not in self.quirks,
            trimester=self.trimester,
            expected_findings=tuple(sorted(expected)),
            quirks=tuple(sorted(self.quirks)),
            targets=self._target_summary(targets, presence),
        )
        return PatientRecord(
            patient=self._patient_resource(),
            resources=(*self.conditions, *observations),
            manifest=manifest,
            panel_id=panel_id(self.id_prefix),
        )

    def _demographics(self) -> tuple[str, int, date]:
        rng = self.rng
        scenario = self.scenario
        roll = rng.random()
        # RLS is about twice as common in women; a few records carry other/unknown gender.
        gender = "female" if roll < 0.62 else "male" if roll < 0.98 else "other" if roll < 0.99 else "unknown"
        if scenario.startswith("pregnant-t"):
            gender, age = "female", self._int(19, 43)
        elif scenario in _KIDNEY_SCENARIOS or scenario == "multi-cause":
            age = round(rng.triangular(45, 90, 74))
        elif scenario in _CHILD_SCENARIOS and rng.random() < 0.08:
            age = self._int(8, 17)
        else:
            age = round(rng.triangular(18, 90, 58))
        # A birth date giving exactly `age` at as_of, kept 3 days clear of a birthday.
        latest = _years_before(self.as_of, age)
        earliest = _years_before(self.as_of, age + 1) + timedelta(days=1)
        birth = earliest + timedelta(days=self._int(3, (latest - earliest).days - 3))
        return gender, age_on(birth, self.as_of), birth

    def _lab_style(self) -> _LabStyle:
        rng = self.rng
        roll = rng.random()
        if roll < 0.65:
            units = dict(_US_UNITS)
            if rng.random() < 0.3:
                units["crp"] = "mg/dL"
            if rng.random() < 0.25:
                units["k"] = "meq/L"
        elif roll < 0.9:
            units = dict(_SI_UNITS)
            if rng.random() < 0.3:
                units["ferritin"] = "pmol/L"
            if rng.random() < 0.2:
                units["hb"] = "mmol/L"
        else:  # a patient whose results come from several labs
            units = {analyte: rng.choice((_US_UNITS[analyte], _SI_UNITS[analyte])) for analyte in _US_UNITS}
        cap_roll = rng.random()
        return _LabStyle(
            units=units,
            tz=timezone(timedelta(hours=rng.choice(_UTC_OFFSETS))),
            ferritin_loq=rng.random() < 0.5,
            crp_loq=rng.random() < 0.4,
            egfr_cap=60 if cap_roll < 0.25 else 90 if cap_roll < 0.4 else None,
            reference_ranges=rng.random() < 0.6,
            interpretation=rng.random() < 0.5,
            local_codes=rng.random() < 0.2,
        )

    def _normal_targets(self, trimester: int | None) -> _Targets:
        age = self.age
        hb_low = max(hb_cutoffs(self.gender, age, trimester)) + 0.6
        if age < 18:
            egfr_band = (95.0, 130.0)
        elif age < 40:
            egfr_band = (92.0, 125.0)
        elif age < 65:
            egfr_band = (72.0, 108.0)
        else:
            egfr_band = (63.0, 92.0)
        return _Targets(
            ferritin=self._draw(105, 180) if age < 18 else self._draw(105, 380),
            tsat=self._draw(23, 40),
            tibc=self._draw(250, 380),
            crp=self._draw(0.3, 4.0),
            hb=self._draw(hb_low, hb_low + 2.8),
            egfr=self._draw(*egfr_band),
            mg=self._draw(0.76, 1.00),
            k=self._draw(3.7, 4.9),
            ca=self._draw(9.2, 10.2),
            albumin=self._draw(3.5, 4.5),
        )

    def _anemic_hb(self, trimester: int | None) -> float:
        high = min(hb_cutoffs(self.gender, self.age, trimester)) - 0.5
        return self._draw(max(high - 3.5, 6.5), high)

    def _scenario_targets(self, scenario: str) -> _Targets:
        t = self._normal_targets(self.trimester)
        adult = self.age >= 18
        if scenario == "iron-deficiency":
            t.ferritin, t.tsat, t.tibc = self._draw(3, 13), self._draw(4, 16), self._draw(360, 480)
        elif scenario == "iron-deficiency-inflammation":
            t.ferritin, t.tsat, t.tibc = self._draw(20, 65), self._draw(8, 18), self._draw(230, 320)
            t.crp = self._draw(8, 80)
        elif scenario == "iron-insufficient":
            t.ferritin = self._draw(17, 72) if adult else self._draw(17, 46)
        elif scenario == "iron-insufficient-tsat":
            t.ferritin, t.tsat = self._draw(85, 220), self._draw(9, 18)
        elif scenario == "iron-iv-band":
            t.ferritin = self._draw(78, 98)
        elif scenario == "iron-overload-risk":
            t.ferritin, t.tsat, t.tibc = self._draw(180, 600), self._draw(47, 75), self._draw(220, 300)
        elif scenario == "anemia":
            t.hb = self._anemic_hb(None)
            if self._chance(0.5):  # iron-deficiency anemia
                t.ferritin, t.tsat, t.tibc = self._draw(3, 13), self._draw(3, 12), self._draw(380, 480)
        elif scenario in _KIDNEY_SCENARIOS:
            t.egfr = self._draw(*_EGFR_BANDS[scenario])
            if self._chance({"ckd-g4": 0.3, "kidney-failure": 0.6}.get(scenario, 0.1)):  # renal anemia
                t.hb = self._anemic_hb(None)
            if scenario == "kidney-failure" and self._chance(0.3):
                t.k = self._draw(5.3, 6.2)
        elif scenario == "hypomagnesemia":
            t.mg = self._draw(0.45, 0.64)
        elif scenario == "hypokalemia":
            t.k = self._draw(2.7, 3.3)
        elif scenario == "hyperkalemia":
            t.k = self._draw(5.3, 6.4)
        elif scenario == "hypocalcemia":
            t.ca, t.albumin = self._draw(7.0, 7.9), self._draw(3.6, 4.4)
        elif scenario == "hypocalcemia-ionized":
            # Total Ca corrects to normal; the ionized result decides (CLINICAL_RULES section 5).
            t.ca, t.ca_ionized = self._draw(9.2, 9.8), self._draw(0.92, 1.08)
        elif scenario == "low-total-calcium-low-albumin":
            # Low total Ca that albumin correction (Payne) brings back to normal: no hypocalcemia.
            t.ca, t.albumin = self._draw(7.9, 8.3), self._draw(2.3, 2.9)
            if self._chance(0.3):
                t.ca_ionized = self._draw(1.18, 1.28)
        elif scenario.startswith("pregnant-t"):
            roll = self.rng.random()
            if roll < 0.15:
                t.ferritin, t.tsat = self._draw(4, 13), self._draw(5, 15)
            elif roll < 0.65:
                t.ferritin = self._draw(17, 60)
            if self._chance(0.25):
                t.hb = self._anemic_hb(self.trimester)
        elif scenario == "multi-cause":
            t.ferritin, t.tsat, t.tibc = self._draw(3, 13), self._draw(4, 14), self._draw(380, 480)
            t.hb = self._anemic_hb(None)
            t.egfr = self._draw(*_EGFR_BANDS["ckd-g3a" if self._chance(0.5) else "ckd-g3b"])
            if self._chance(0.5):
                t.mg = self._draw(0.45, 0.64)
        return t

    def _history_targets(self) -> _Targets:
        """Values of an older draw: the patient's own profile, or another one (e.g. before treatment)."""
        scenario = self.scenario if self._chance(0.5) else self.rng.choice(_HISTORY_SCENARIOS)
        if scenario.startswith("pregnant-t"):
            scenario = "normal"
        trimester, self.trimester = self.trimester, None
        try:
            return self._scenario_targets(scenario)
        finally:
            self.trimester = trimester

    def _presence(self, t: _Targets) -> dict[str, str]:
        """Per analyte: in 'all' draws of its group, 'none', or 'stale-only'.

        Never only the latest removed: an older, still-usable result would then decide.
        """
        scenario = self.scenario
        presence = dict.fromkeys(("ferritin", "crp", "hb", "creatinine", "egfr", "k", "ca", "albumin", "mg"), "all")
        presence.update(tsat="none", iron="none", tibc="none", uibc="none", ca_ionized="none")
        if t.ca_ionized is not None:
            presence["ca_ionized"] = "all"
        needs_ferritin = scenario == "normal" or scenario.startswith(("iron-", "pregnant-")) or t.ferritin < 75
        needs_tsat = scenario in ("normal", "iron-insufficient-tsat", "iron-iv-band", "iron-overload-risk")
        if not needs_ferritin:
            roll = self.rng.random()
            if roll < 0.12:
                presence["ferritin"] = "none"
                self.quirks.add("no-ferritin")
            elif roll < 0.2:
                presence["ferritin"] = "stale-only"
                self.quirks.add("ferritin-stale-only")
        roll = self.rng.random()
        if roll < 0.45:
            presence["tsat"] = "all"
        elif roll < 0.6:
            presence.update(tsat="all", iron="all", tibc="all")
            self.quirks.add("tsat-and-iron-tibc")
        elif roll < 0.87 or needs_tsat:
            presence.update(iron="all", tibc="all")
            self.quirks.add("iron-tibc-only")
        elif roll < 0.94:
            self.quirks.add("no-tsat")
        else:  # iron with UIBC, not TIBC: no TSAT can be computed (CLINICAL_RULES section 2)
            presence.update(iron="all", uibc="all")
            self.quirks.update(("no-tsat", "iron-uibc-only"))
        # CRP matters only while ferritin < 70 (inflammation threshold); otherwise it may be missing.
        if scenario != "normal" and (t.ferritin >= 75 or presence["ferritin"] != "all") and self._chance(0.15):
            presence["crp"] = "none"
            self.quirks.add("no-crp")
        if scenario != "normal" and self.gender in ("male", "female"):
            roll = self.rng.random()
            if self.age >= 18 and roll < 0.12:
                presence["egfr"] = "none"
                self.quirks.add("no-egfr")
            elif roll < 0.2:
                self.quirks.add("egfr-race-specific-only")
            elif roll < 0.26:
                self.quirks.add("egfr-same-day-twin")
        calcium_scenario = scenario in ("hypocalcemia", "low-total-calcium-low-albumin")
        if not calcium_scenario and t.ca_ionized is None and self._chance(0.06):
            presence["albumin"] = "none"
            self.quirks.add("no-albumin")
        if scenario == "hypocalcemia" and self._chance(0.2):
            t.ca = self._draw(7.0, 8.1)  # uncorrected total Ca decides
            presence["albumin"] = "none"
            self.quirks.add("no-albumin")
        return presence

    def _schedule(self, presence: Mapping[str, str], targets: _Targets) -> dict[str, list[_Draw]]:
        """Draw days per group (iron, cbc, chem): the latest gets the targets, older ones history."""
        rng = self.rng
        draws: dict[str, list[_Draw]] = {}
        for group in _GROUP_ANALYTES:
            if self.trimester is not None:
                latest = self.ga_days_ago + self._int(1, 14)
            elif group == "iron" and self.crp_distant:
                latest = self._int(25, 200)
            else:
                latest = self._int(3, 200)
            days = [latest]
            for _ in range(rng.choice((0, 1, 1, 2, 2, 3))):
                following = days[-1] + self._int(30, 260)
                if 355 <= following <= 375:  # keep clear of the 365-day staleness boundary
                    following = 380
                if following > _HISTORY_DAYS:
                    break
                days.append(following)
            if group == "iron" and presence["ferritin"] == "stale-only" and days[-1] < 380:
                days.append(self._int(max(days[-1] + 30, 400), _HISTORY_DAYS))
            draws[group] = [
                _Draw(group, day, targets if n == 0 else self._history_targets()) for n, day in enumerate(days)
            ]
        return draws

    # -- observations ---------------------------------------------------------------------------
    def _when(self, days_ago: int) -> datetime:
        day = self.as_of - timedelta(days=days_ago)
        moment = time(self._int(7, 16), self._int(0, 59), tzinfo=self.style.tz)
        return datetime.combine(day, moment)

    def _emit_draws(self, draws: Mapping[str, list[_Draw]], presence: Mapping[str, str], t: _Targets) -> None:
        for group, group_draws in draws.items():
            for position, draw in enumerate(group_draws):
                when = self._when(draw.days_ago)
                stale = draw.days_ago > _STALE_AFTER_DAYS
                deciding = position == 0
                for analyte in _GROUP_ANALYTES[group]:
                    rule = presence[analyte]
                    if rule == "none" or (rule == "stale-only" and not stale) or analyte == "egfr":
                        continue
                    if analyte == "ca_ionized" and draw.values.ca_ionized is None:
                        continue
                    if analyte == "creatinine":
                        self._emit_kidney(draw, when, deciding=deciding, with_egfr=presence["egfr"] == "all")
                    elif analyte == "crp" and deciding:
                        self._emit_deciding_crp(draw, when, t)
                    else:
                        self._add_lab(analyte, self._value(analyte, draw.values), when, deciding=deciding)

    def _emit_deciding_crp(self, draw: _Draw, when: datetime, t: _Targets) -> None:
        if self.scenario == "iron-deficiency-inflammation" and self._chance(0.3):
            # CRP drawn on another day, still within 7 days of the ferritin (CLINICAL_RULES section 2).
            shift = self._int(1, 6)
            days = draw.days_ago - shift if draw.days_ago - shift >= 1 else draw.days_ago + shift
            self._add_lab("crp", t.crp, self._when(days), deciding=True)
            self.quirks.add("crp-other-day")
            return
        self._add_lab("crp", t.crp, when, deciding=True)
        if self.crp_distant:
            # A newer, high CRP 10-20 days after the ferritin: outside the 7-day window, no inflammation.
            days = draw.days_ago - self._int(10, 20)
            self._add_lab("crp", self._draw(12, 40), self._when(days))

    def _emit_kidney(self, draw: _Draw, when: datetime, *, deciding: bool, with_egfr: bool) -> None:
        """Creatinine and the eGFR the lab computed from it (CKD-EPI 2021) in the same draw."""
        values = draw.values
        female = self.gender != "male"
        creatinine = creatinine_for_egfr(values.egfr, self.age, female)
        self._add_lab("creatinine", creatinine, when, deciding=deciding)
        values.egfr = ckd_epi_2021(round(creatinine, 2), self.age, female)
        if not with_egfr:
            return
        if "egfr-race-specific-only" in self.quirks:
            self._add_lab("egfr", values.egfr, when, loinc="48642-3", deciding=deciding)
            return
        self._add_lab("egfr", values.egfr, when, deciding=deciding)
        if "egfr-same-day-twin" in self.quirks:
            # Same draw, lower-precedence code, different value: 98979-8 must win (section 4).
            self._add_lab("egfr", values.egfr * self.rng.uniform(0.85, 0.97), when, loinc="48642-3")

    def _value(self, analyte: str, values: _Targets) -> float:
        if analyte == "iron":
            return values.tsat * values.tibc / 100
        if analyte == "uibc":
            return values.tibc * (1 - values.tsat / 100)
        value = getattr(values, analyte)
        if not isinstance(value, float):
            raise TypeError(f"no value for {analyte}")  # pragma: no cover - callers check ca_ionized
        return value

    def _unit(self, analyte: str) -> tuple[_Unit, bool]:
        """The unit this patient's lab reports the analyte in, and whether it sends only unit text."""
        units = _UNITS[analyte]
        if f"unit-text-only-{analyte}" in self.quirks:
            return units[_TEXT_ONLY_UNITS[analyte][0]], True
        code = self.style.units.get(analyte)
        return (units[code] if code is not None else next(iter(units.values()))), False

    def _add_lab(
        self,
        analyte: str,
        value: float | None,
        when: datetime,
        *,
        status: str = "final",
        loinc: str | None = None,
        deciding: bool = False,
        quantity: Json | None = None,
    ) -> Json:
        """One laboratory Observation; ``value`` in canonical units (None: no value)."""
        unit, text_only = self._unit(analyte)
        code = loinc or unit.loinc
        codings: list[Json] = [{"system": LOINC, "code": code, "display": LOINC_DISPLAY[code]}]
        if self.style.local_codes:
            local = {"system": LOCAL_LAB_SYSTEM, "code": _LOCAL_CODE[analyte], "display": _SHORT_NAME[analyte]}
            codings.insert(self.index % 2, local)
        issued = when + timedelta(hours=self._int(1, 30), minutes=self._int(0, 59))
        observation: Json = {
            "resourceType": "Observation",
            "id": "",
            "meta": {"tag": [dict(TEST_DATA_TAG)]},
            "status": status,
            "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": "laboratory", "display": "Laboratory"}]}],
            "code": {"coding": codings, "text": _SHORT_NAME[analyte]},
            "subject": {"reference": f"Patient/{self.pid}"},
            "effectiveDateTime": when.isoformat(),
            "issued": issued.isoformat(),
        }
        if quantity is not None:
            observation["valueQuantity"] = quantity
        elif value is not None:
            observation["valueQuantity"] = self._quantity(analyte, value, unit, text_only)
            if self.style.interpretation and status == "final":
                observation["interpretation"] = [self._interpretation(analyte, value)]
            if self.style.reference_ranges:
                observation["referenceRange"] = [self._reference_range(analyte, unit, text_only)]
        self.observations.append((when, len(self.observations), observation))
        if deciding:
            self.deciding[analyte] = observation
        return observation

    def _quantity(self, analyte: str, value: float, unit: _Unit, text_only: bool) -> Json:
        style = self.style
        quantity: Json
        if analyte == "ferritin" and style.ferritin_loq and value < 5 and unit.factor == 1.0:
            quantity = {"value": 5, "comparator": "<"}
            self.quirks.add("comparator-ferritin")
        elif analyte == "crp" and style.crp_loq and value < 3:
            quantity = {"value": 3 if unit.code == "mg/L" else 0.5, "comparator": "<"}
            self.quirks.add("comparator-crp")
        elif analyte == "egfr" and style.egfr_cap is not None and value > style.egfr_cap + 0.5:
            quantity = {"value": style.egfr_cap, "comparator": ">"}
            self.quirks.add(f"comparator-egfr-{style.egfr_cap}")
        else:
            quantity = {"value": _round(value * unit.factor, unit.decimals)}
        if text_only:
            quantity["unit"] = _TEXT_ONLY_UNITS[analyte][1]
        else:
            quantity.update(unit=unit.text, system=UCUM, code=unit.code)
        return quantity

    def _reference_range(self, analyte: str, unit: _Unit, text_only: bool) -> Json:
        low, high = _REFERENCE[analyte][1 if self.gender == "male" else 0]
        reference: Json = {}
        for key, bound in (("low", low), ("high", high)):
            if bound is None:
                continue
            value = _round(bound * unit.factor, unit.decimals)
            if text_only:
                reference[key] = {"value": value, "unit": _TEXT_ONLY_UNITS[analyte][1]}
            else:
                reference[key] = {"value": value, "unit": unit.text, "system": UCUM, "code": unit.code}
        return reference

    def _interpretation(self, analyte: str, value: float) -> Json:
        low, high = _REFERENCE[analyte][1 if self.gender == "male" else 0]
        if low is not None and value < low:
            code, display = "L", "Low"
        elif high is not None and value > high:
            code, display = "H", "High"
        else:
            code, display = "N", "Normal"
        return {"coding": [{"system": INTERPRETATION, "code": code, "display": display}]}

    # -- mess -----------------------------------------------------------------------------------
    def _add_mess(self, t: _Targets) -> None:
        """Results that must not decide (entered-in-error, pending, absent, unit not understood), all
        newer than the deciding one, plus harmless variants of the deciding one (amended, period)."""
        rng = self.rng
        candidates = [analyte for analyte in _ALARMING if analyte in self.deciding]

        def newer_than(analyte: str) -> datetime:
            deciding = datetime.fromisoformat(self.deciding[analyte]["effectiveDateTime"])
            return self._when(self._int(1, (self.as_of - deciding.date()).days - 1))

        if candidates and self._chance(0.12):
            analyte = rng.choice(candidates)
            value = _ALARMING[analyte] if self._chance(0.6) else self._value(analyte, t)
            self._add_lab(analyte, value, newer_than(analyte), status="entered-in-error")
            self.quirks.add("entered-in-error")
        if candidates and self._chance(0.10):
            analyte = rng.choice(candidates)
            if self._chance(0.8):
                self._add_lab(analyte, _ALARMING[analyte], newer_than(analyte), status="preliminary")
                self.quirks.add("preliminary")
            else:
                self._add_lab(analyte, None, newer_than(analyte), status="registered")
                self.quirks.add("registered")
        if candidates and self._chance(0.04):
            analyte = rng.choice(candidates)
            observation = self._add_lab(analyte, None, newer_than(analyte))
            observation["dataAbsentReason"] = {
                "coding": [{"system": DATA_ABSENT_REASON, "code": "error", "display": "Error"}],
                "text": "Specimen hemolyzed",
            }
            self.quirks.add("data-absent-reason")
        if "ferritin" in self.deciding and self._chance(0.03):
            self._add_lab("ferritin", None, newer_than("ferritin"), quantity={"value": 3, "unit": "units"})
            self.quirks.add("unit-not-understood")
        if candidates and self._chance(0.06):
            # The deciding result was amended or corrected: still usable (CLINICAL_RULES S1).
            self.deciding[rng.choice(candidates)]["status"] = rng.choice(("amended", "corrected"))
            self.quirks.add("amended-or-corrected")
        if "hb" in self.deciding and self._chance(0.03):
            # effectivePeriod instead of effectiveDateTime: its end is the effective date (S2).
            observation = self.deciding["hb"]
            end = datetime.fromisoformat(observation["effectiveDateTime"])
            period = {"start": (end - timedelta(minutes=self._int(5, 40))).isoformat(), "end": end.isoformat()}
            replaced = {
                ("effectivePeriod" if key == "effectiveDateTime" else key): (
                    period if key == "effectiveDateTime" else value
                )
                for key, value in observation.items()
            }
            observation.clear()
            observation.update(replaced)
            self.quirks.add("effective-period")

    # -- pregnancy and conditions ---------------------------------------------------------------
    def _coded_observation(self, when: datetime, category: tuple[str, str], loinc: str) -> Json:
        return {
            "resourceType": "Observation",
            "id": "",
            "meta": {"tag": [dict(TEST_DATA_TAG)]},
            "status": "final",
            "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": category[0], "display": category[1]}]}],
            "code": {"coding": [{"system": LOINC, "code": loinc, "display": LOINC_DISPLAY[loinc]}]},
            "subject": {"reference": f"Patient/{self.pid}"},
            "effectiveDateTime": when.isoformat(),
        }

    def _pregnancy_observations(self, days_ago: int, pregnant: bool, weeks: int | None) -> None:
        """Pregnancy status 82810-3 (SNOMED answer) and, when pregnant, gestational age 49051-6 (S6)."""
        when = self._when(days_ago)
        status = self._coded_observation(when, ("social-history", "Social History"), "82810-3")
        answer = ("77386006", "Pregnant") if pregnant else ("60001007", "Not pregnant")
        status["valueCodeableConcept"] = {"coding": [{"system": SNOMED, "code": answer[0], "display": answer[1]}]}
        self.observations.append((when, len(self.observations), status))
        if weeks is not None:
            gestation = self._coded_observation(when, ("exam", "Exam"), "49051-6")
            gestation["valueQuantity"] = {"value": weeks, "unit": "wk", "system": UCUM, "code": "wk"}
            self.observations.append((when, len(self.observations), gestation))

    def _add_pregnancy(self) -> None:
        if self.trimester is not None:
            self._pregnancy_observations(self.ga_days_ago, True, self.ga_weeks)
            self.quirks.add("pregnant")
            return
        if self.gender != "female" or not 18 <= self.age <= 50:
            return
        roll = self.rng.random()
        if roll < 0.10:  # a recorded "not pregnant": the value decides, not the code
            self._pregnancy_observations(self._int(1, 300), False, None)
            self.quirks.add("pregnancy-status-not-pregnant")
        elif roll < 0.13:  # a past pregnancy, stale now
            self._pregnancy_observations(self._int(420, _HISTORY_DAYS), True, self._int(8, 36))
            self.quirks.add("stale-pregnancy")

    def _condition(self, suffix: str, snomed: tuple[str, str], icd: tuple[str, str], onset: date) -> Json:
        return {
            "resourceType": "Condition",
            "id": f"{self.pid}-{suffix}",
            "meta": {"tag": [dict(TEST_DATA_TAG)]},
            "clinicalStatus": {"coding": [{"system": CONDITION_CLINICAL, "code": "active", "display": "Active"}]},
            "verificationStatus": {
                "coding": [{"system": CONDITION_VERIFICATION, "code": "confirmed", "display": "Confirmed"}]
            },
            "category": [
                {
                    "coding": [
                        {"system": CONDITION_CATEGORY, "code": "problem-list-item", "display": "Problem List Item"}
                    ]
                }
            ],
            "code": {
                "coding": [
                    {"system": SNOMED, "code": snomed[0], "display": snomed[1]},
                    {"system": ICD10CM, "code": icd[0], "display": icd[1]},
                ],
                "text": snomed[1],
            },
            "subject": {"reference": f"Patient/{self.pid}"},
            "onsetDateTime": onset.isoformat(),
            "recordedDate": min(onset + timedelta(days=self._int(0, 90)), self.as_of).isoformat(),
        }

    def _add_conditions(self) -> None:
        rng = self.rng
        if rng.random() < 0.85:
            years_ago = rng.uniform(0.3, min(15.0, max(self.age - 6.0, 1.0)))
            onset = self.as_of - timedelta(days=int(years_ago * 365.25) + 91)
            onset = max(onset, _years_before(self.birth_date, -5))
            label = "Restless legs syndrome"
            self.conditions.append(self._condition("rls", ("32914008", label), ("G25.81", label), onset))
        else:
            self.quirks.add("no-rls-condition")
        if self.scenario == "kidney-failure" and rng.random() < 0.5:
            onset = self.as_of - timedelta(days=self._int(120, 1500))
            label = "Dependence on renal dialysis"
            self.conditions.append(self._condition("dialysis", ("105502003", label), ("Z99.2", label), onset))
            self.quirks.add("dialysis-condition")

    # -- the manifest ---------------------------------------------------------------------------
    def _expected_findings(self, t: _Targets, presence: Mapping[str, str]) -> set[str]:
        """The findings the deciding values were drawn to produce (CLINICAL_RULES 2-5, margins kept)."""
        found: set[str] = set()
        ferritin = t.ferritin if presence["ferritin"] == "all" else None
        tsat = t.tsat if presence["tsat"] == "all" or presence["tibc"] == "all" else None
        inflamed = presence["crp"] == "all" and t.crp > 5
        deficient = ferritin is not None and (ferritin < 15 or (inflamed and ferritin < 70))
        if deficient:
            found.add("iron-deficiency")
        low_ferritin = ferritin is not None and (ferritin < 50 if self.age < 18 else ferritin <= 75)
        if not deficient and (low_ferritin or (tsat is not None and tsat < 20)):
            found.add("iron-insufficient-for-rls")
        if ferritin is None or tsat is None:
            found.add("missing-iron-studies")
        if t.hb < min(hb_cutoffs(self.gender, self.age, self.trimester)):
            found.add("anemia")
        if t.egfr < 15:
            found.add("kidney-failure")
        elif t.egfr < 60:
            found.add("reduced-kidney-function")
        if t.mg < 0.70:
            found.add("hypomagnesemia")
        if t.k < 3.5:
            found.add("hypokalemia")
        if t.k > 5.0:
            found.add("hyperkalemia")
        if t.ca_ionized is not None:
            low_calcium = t.ca_ionized < 1.15
        elif presence["albumin"] == "all":
            low_calcium = t.ca + 0.8 * (4.0 - t.albumin) < 8.5
        else:
            low_calcium = t.ca < 8.5
        if low_calcium:
            found.add("hypocalcemia")
        return found

    def _target_summary(self, t: _Targets, presence: Mapping[str, str]) -> tuple[tuple[str, float], ...]:
        summary: list[tuple[str, float]] = []
        for name in ("ferritin", "tsat", "crp", "hb", "egfr", "mg", "k", "ca", "albumin", "ca_ionized"):
            present = (
                presence["tsat"] == "all" or presence["tibc"] == "all" if name == "tsat" else presence[name] == "all"
            )
            if name == "egfr":
                present = True  # measured, or computable from creatinine
            value = getattr(t, name)
            if present and value is not None:
                summary.append((name, round(float(value), 2)))
        return tuple(summary)

    def _patient_resource(self) -> Json:
        return {
            "resourceType": "Patient",
            "id": self.pid,
            "meta": {"tag": [dict(TEST_DATA_TAG)]},
            "identifier": [
                {
                    "use": "usual",
                    "type": {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                                "code": "MR",
                                "display": "Medical record number",
                            }
                        ]
                    },
                    "system": MRN_SYSTEM,
                    "value": f"{self.id_prefix}-{self.index:07d}",
                }
            ],
            "active": True,
            "name": [
                {"use": "official", "text": f"Test Patient {self.index:04d}", "family": "Patient", "given": ["Test"]}
            ],
            "gender": self.gender,
            "birthDate": self.birth_date.isoformat(),
        }


# --- Output: NDJSON and transaction Bundles ------------------------------------------------------
PanelSource = Panel | Iterable[PatientRecord]
"""A generated panel, or a stream of records (``iter_patient_records``) for panels too big to hold."""

NDJSON_TYPES: Final = ("Patient", "Condition", "Observation", "Group")


def _records(source: PanelSource) -> Iterable[PatientRecord]:
    return source.patients if isinstance(source, Panel) else source


class NdjsonWriter:
    """Streams records into one NDJSON file per resource type, as Bulk ``$export`` lays them out.

    Files are written as ``<Type>.ndjson.part`` and renamed on ``close()``; the Group (all members)
    is written last. ``manifest=True`` adds ``manifest.jsonl`` (one ManifestEntry per line; not
    ``.ndjson`` so a Bulk loader globbing ``*.ndjson`` skips it).
    """

    def __init__(self, out_dir: Path, *, manifest: bool = False) -> None:
        self.out_dir = Path(out_dir)
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise InputError(f"cannot create output directory {self.out_dir}: {error.strerror}") from error
        names = [*NDJSON_TYPES, "manifest"] if manifest else list(NDJSON_TYPES)
        self.paths = {
            name: self.out_dir / ("manifest.jsonl" if name == "manifest" else f"{name}.ndjson") for name in names
        }
        self._files = {name: path.with_name(path.name + ".part").open("wb") for name, path in self.paths.items()}
        self._patient_ids: list[str] = []
        self._panel_id: str | None = None
        self.counts: Counter[str] = Counter()

    def add(self, record: PatientRecord) -> None:
        self._panel_id = self._panel_id or record.panel_id
        self._patient_ids.append(record.patient_id)
        for resource in record.all_resources():
            kind = resource["resourceType"]
            self._files[kind].write(orjson.dumps(resource) + b"\n")
            self.counts[kind] += 1
        if "manifest" in self._files:
            self._files["manifest"].write(orjson.dumps(record.manifest.to_json()) + b"\n")

    def close(self) -> dict[str, Path]:
        if self._panel_id is None:
            self.abort()
            raise InputError("no patients to write")
        self._files["Group"].write(orjson.dumps(build_group(self._panel_id, self._patient_ids)) + b"\n")
        self.counts["Group"] += 1
        for name, handle in self._files.items():
            handle.close()
            os.replace(handle.name, self.paths[name])
        return dict(self.paths)

    def abort(self) -> None:
        for handle in self._files.values():
            handle.close()
            Path(str(handle.name)).unlink(missing_ok=True)

    def __enter__(self) -> NdjsonWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if kind is not None:
            self.abort()


def write_ndjson(source: PanelSource, out_dir: Path, *, manifest: bool = False) -> dict[str, Path]:
    """Write Patient/Condition/Observation/Group.ndjson (one compact resource per line); streams."""
    with NdjsonWriter(out_dir, manifest=manifest) as writer:
        for record in _records(source):
            writer.add(record)
        return writer.close()


def _entry(resource: Json) -> Json:
    return {
        "resource": resource,
        "request": {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"},
    }


def _transaction(entries: list[Json]) -> Json:
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def transaction_bundles(source: PanelSource) -> Iterator[Json]:
    """One transaction Bundle per patient (PUT by id, so reloading is idempotent), then the Group's."""
    return chunked_transaction_bundles(source, patients_per_bundle=1)


def chunked_transaction_bundles(source: PanelSource, patients_per_bundle: int = 20) -> Iterator[Json]:
    """Transaction Bundles of several patients each (each Patient before its resources); the Group
    comes alone in the last Bundle, after every member exists."""
    if not isinstance(patients_per_bundle, int) or not 1 <= patients_per_bundle <= 10_000:
        raise InputError(f"patients per bundle must be from 1 to 10,000, got {patients_per_bundle!r}")
    return _chunks(_records(source), patients_per_bundle)


def _chunks(records: Iterable[PatientRecord], size: int) -> Iterator[Json]:
    entries: list[Json] = []
    in_chunk = 0
    patient_ids: list[str] = []
    group_id: str | None = None
    for record in records:
        group_id = group_id or record.panel_id
        patient_ids.append(record.patient_id)
        entries.extend(_entry(resource) for resource in record.all_resources())
        in_chunk += 1
        if in_chunk == size:
            yield _transaction(entries)
            entries, in_chunk = [], 0
    if entries:
        yield _transaction(entries)
    if group_id is not None:
        yield _transaction([_entry(build_group(group_id, patient_ids))])
