"""The synthetic panel's fixed data: code systems, lab units and LOINC codes, reference intervals.

Tables only, no logic: how each analyte is reported in each unit (``reported = canonical * factor``,
docs/rules.md section 7), the LOINC displays, the labs' own reference intervals and which analytes
one blood draw holds. ``test_every_rule_relevant_code_synth_writes_is_in_its_value_set`` checks the
codes against terminology/.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

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
RNG_NAMESPACE: Final = "rls-screen-synth/1"
"""Part of every per-patient seed; bump it only when the generated data is meant to change."""
STALE_AFTER_DAYS: Final = 365  # docs/rules.md S2
HISTORY_DAYS: Final = 730  # "several results per analyte spread over two years"


# --- Units and codes -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class LabUnit:
    """How one analyte is reported in one unit: ``reported = canonical * factor`` (docs/rules.md 7)."""

    code: str
    """UCUM code."""
    loinc: str
    factor: float
    decimals: int
    text: str
    """Quantity.unit, as a lab prints it."""


def _units(*units: LabUnit) -> dict[str, LabUnit]:
    return {unit.code: unit for unit in units}


# Canonical units (the engine's): ferritin ug/L, TSAT %, iron/TIBC/UIBC ug/dL, CRP mg/L, Hb g/dL,
# creatinine mg/dL, eGFR mL/min/{1.73_m2}, Mg mmol/L, K mmol/L, total Ca mg/dL, ionized Ca mmol/L,
# albumin g/dL.
UNITS: Final[dict[str, dict[str, LabUnit]]] = {
    "ferritin": _units(
        LabUnit("ng/mL", "2276-4", 1.0, 0, "ng/mL"),
        LabUnit("ug/L", "2276-4", 1.0, 0, "µg/L"),
        LabUnit("pmol/L", "14723-1", 2.247, 0, "pmol/L"),
    ),
    "tsat": _units(LabUnit("%", "2502-3", 1.0, 0, "%")),
    "iron": _units(LabUnit("ug/dL", "2498-4", 1.0, 0, "µg/dL"), LabUnit("umol/L", "14798-3", 1 / 5.585, 1, "µmol/L")),
    "tibc": _units(LabUnit("ug/dL", "2500-7", 1.0, 0, "µg/dL"), LabUnit("umol/L", "14800-7", 1 / 5.585, 1, "µmol/L")),
    "uibc": _units(LabUnit("ug/dL", "2501-5", 1.0, 0, "µg/dL"), LabUnit("umol/L", "2501-5", 1 / 5.585, 1, "µmol/L")),
    "crp": _units(LabUnit("mg/L", "1988-5", 1.0, 1, "mg/L"), LabUnit("mg/dL", "1988-5", 0.1, 2, "mg/dL")),
    "hb": _units(
        LabUnit("g/dL", "718-7", 1.0, 1, "g/dL"),
        LabUnit("g/L", "718-7", 10.0, 0, "g/L"),
        LabUnit("mmol/L", "59260-0", 1 / 1.6114, 1, "mmol/L"),
    ),
    "creatinine": _units(LabUnit("mg/dL", "2160-0", 1.0, 2, "mg/dL"), LabUnit("umol/L", "14682-9", 88.42, 0, "µmol/L")),
    "egfr": _units(LabUnit("mL/min/{1.73_m2}", "98979-8", 1.0, 0, "mL/min/1.73m2")),
    "mg": _units(LabUnit("mmol/L", "19123-9", 1.0, 2, "mmol/L"), LabUnit("mg/dL", "19123-9", 2.4305, 1, "mg/dL")),
    "k": _units(LabUnit("mmol/L", "2823-3", 1.0, 1, "mmol/L"), LabUnit("meq/L", "2823-3", 1.0, 1, "mEq/L")),
    "ca": _units(LabUnit("mg/dL", "17861-6", 1.0, 1, "mg/dL"), LabUnit("mmol/L", "2000-8", 1 / 4.008, 2, "mmol/L")),
    "ca_ionized": _units(LabUnit("mmol/L", "1994-3", 1.0, 2, "mmol/L")),
    "albumin": _units(LabUnit("g/dL", "1751-7", 1.0, 1, "g/dL"), LabUnit("g/L", "1751-7", 10.0, 0, "g/L")),
}
# Unit text without a UCUM code, as some feeds send it; each is in the spec's alias examples (section 7).
TEXT_ONLY_UNITS: Final[dict[str, tuple[str, str]]] = {
    "ferritin": ("ug/L", "mcg/L"),
    "k": ("meq/L", "mEq/L"),
    "egfr": ("mL/min/{1.73_m2}", "mL/min/1.73m2"),
}
US_UNITS: Final[dict[str, str]] = {
    "ferritin": "ng/mL", "iron": "ug/dL", "tibc": "ug/dL", "uibc": "ug/dL", "crp": "mg/L", "hb": "g/dL",
    "creatinine": "mg/dL", "mg": "mg/dL", "k": "mmol/L", "ca": "mg/dL", "albumin": "g/dL",
}  # fmt: skip
SI_UNITS: Final[dict[str, str]] = {
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
SHORT_NAME: Final[dict[str, str]] = {
    "ferritin": "Ferritin", "tsat": "Transferrin saturation", "iron": "Iron", "tibc": "TIBC", "uibc": "UIBC",
    "crp": "CRP", "hb": "Hemoglobin", "creatinine": "Creatinine", "egfr": "eGFR", "mg": "Magnesium",
    "k": "Potassium", "ca": "Calcium", "ca_ionized": "Calcium, ionized", "albumin": "Albumin",
}  # fmt: skip
LOCAL_CODE: Final[dict[str, str]] = {
    "ferritin": "FERR", "tsat": "TSAT", "iron": "FE", "tibc": "TIBC", "uibc": "UIBC", "crp": "CRP",
    "hb": "HGB", "creatinine": "CREA", "egfr": "EGFR", "mg": "MG", "k": "K", "ca": "CA",
    "ca_ionized": "ICA", "albumin": "ALB",
}  # fmt: skip

# The lab's own reference interval, canonical units: (female low, high), (male low, high); None = open.
REFERENCE: Final[dict[str, tuple[tuple[float | None, float | None], tuple[float | None, float | None]]]] = {
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
GROUP_ANALYTES: Final[dict[str, tuple[str, ...]]] = {
    "iron": ("ferritin", "tsat", "iron", "tibc", "uibc", "crp"),
    "cbc": ("hb",),
    "chem": ("creatinine", "egfr", "k", "ca", "albumin", "ca_ionized", "mg"),
}
# Values that would raise an alarm if a result marked entered-in-error or pending were used.
ALARMING: Final[dict[str, float]] = {"ferritin": 2, "hb": 5.1, "k": 7.9, "egfr": 7, "mg": 0.31, "ca": 6.2}
# UTC offsets of the labs (hours): mostly North American, some European, weighted by repetition.
UTC_OFFSETS: Final = (-8, -7, -6, -5, -5, -5, -4, 0, 1, 1, 2)
