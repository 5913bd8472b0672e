"""Builders shared by the rule-engine unit tests: FHIR JSON in, ``Assessment`` out.

Everything here is deterministic: the evaluation date is the constant ``AS_OF`` (never the clock),
and an Observation's id is derived from its own content, so the same arguments always build the same
resource (two identical calls build the *same* resource, which the engine counts once; pass ``id=`` to
get two distinct resources with equal content). The rule-set knowledge is loaded once per process.
LOINC codes are spelled out here once, with the docs/rules.md section they come from, so a test
reads as the spec does.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import date, timedelta
from functools import cache
from typing import Any

from rls_screen.engine import evaluate
from rls_screen.knowledge import Knowledge, load_knowledge
from rls_screen.model import Assessment, Finding, NotEvaluable, PatientFacts, Sex

AS_OF = date(2026, 3, 15)
RULE_SET_VERSION = "2026.3"

UCUM = "http://unitsofmeasure.org"
LOINC_SYSTEM = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"

# docs/rules.md section 6 (and section 4 for eGFR).
FERRITIN = "2276-4"
FERRITIN_PMOL = "14723-1"
HEMOGLOBIN = "718-7"
HEMOGLOBIN_MMOL = "59260-0"
TSAT = "2502-3"
IRON = "2498-4"
IRON_UMOL = "14798-3"
TIBC = "2500-7"
TIBC_UMOL = "14800-7"
UIBC = "22753-8"
UIBC_OTHER = "2501-5"
CRP = "1988-5"
HS_CRP = "30522-7"
ALBUMIN = "1751-7"
CREATININE = "2160-0"
CREATININE_UMOL = "14682-9"
MAGNESIUM = "19123-9"
POTASSIUM = "2823-3"
CALCIUM_TOTAL = "17861-6"
CALCIUM_IONIZED = "1994-3"
PREGNANCY_STATUS = "82810-3"
GESTATIONAL_AGE = "49051-6"
EGFR_TIER_0 = ("98980-6", "94677-2")
EGFR_TIER_1 = ("98979-8",)
EGFR_TIER_2 = ("62238-1", "77147-7", "33914-3", "69405-9", "76633-7", "50210-4")
EGFR_TIER_3 = ("48642-3", "48643-1", "88293-6", "88294-4", "50044-7", "70969-1")
EGFR = EGFR_TIER_1[0]
EGFR_PANEL = "45066-8"
COCKCROFT_GAULT = "35591-7"

# Canonical UCUM units (docs/rules.md section 7).
EGFR_UNIT = "mL/min/{1.73_m2}"

SNOMED_PREGNANT = "77386006"
SNOMED_NOT_PREGNANT = "60001007"


@cache
def knowledge() -> Knowledge:
    """The shipped rule set, terminology and unit table, read once per test process."""
    return load_knowledge()


def day(days_ago: int, as_of: date = AS_OF) -> date:
    return as_of - timedelta(days=days_ago)


def _content_id(prefix: str, resource: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(resource, sort_keys=True, default=str).encode()).hexdigest()
    return f"{prefix}-{digest[:12]}"


def _effective(resource: dict[str, Any], when: date, at: str | None, effective: str | None) -> None:
    stamp = f"{when.isoformat()}T{at}" if at else when.isoformat()
    if effective == "dateTime":
        resource["effectiveDateTime"] = stamp
    elif effective == "period":
        resource["effectivePeriod"] = {"start": stamp, "end": stamp}
    elif effective == "issued":
        resource["issued"] = f"{when.isoformat()}T{at or '12:00:00'}Z"
    elif effective is not None:
        raise ValueError(f"unknown effective kind {effective!r}")


def obs(
    loinc: str,
    value: Any,
    ucum: str | None,
    *,
    days_ago: int = 10,
    as_of: date = AS_OF,
    status: str | None = "final",
    comparator: Any = None,
    id: str | None = None,
    unit_text: str | None = None,
    system: str | None = UCUM,
    at: str | None = None,
    effective: str | None = "dateTime",
    code_system: str = LOINC_SYSTEM,
    **extra: Any,
) -> dict[str, Any]:
    """A FHIR R4 Observation with a valueQuantity (omitted when ``value`` is None).

    ``at`` adds a time of day (e.g. ``"08:00:00"`` or ``"08:00:00+02:00"``); ``effective`` chooses
    effectiveDateTime / effectivePeriod / issued (None: no date at all); ``extra`` adds or overrides
    top-level elements (``dataAbsentReason``, ``valueString``, ``referenceRange``...).
    """
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "code": {"coding": [{"system": code_system, "code": loinc}]},
    }
    if status is not None:
        resource["status"] = status
    _effective(resource, day(days_ago, as_of), at, effective)
    if value is not None:
        quantity: dict[str, Any] = {"value": value}
        if comparator is not None:
            quantity["comparator"] = comparator
        text = unit_text if unit_text is not None else ucum
        if text is not None:
            quantity["unit"] = text
        if system is not None and ucum is not None:
            quantity["system"] = system
        if ucum is not None:
            quantity["code"] = ucum
        resource["valueQuantity"] = quantity
    resource.update(extra)
    resource["id"] = id if id is not None else _content_id(f"obs-{loinc}", resource)
    return resource


def ref(observation: dict[str, Any]) -> str:
    """The reference the engine uses for an Observation (``Observation/<id>``)."""
    return f"{observation['resourceType']}/{observation['id']}"


def pregnancy_status(pregnant: bool = True, *, days_ago: int = 10, id: str | None = None) -> dict[str, Any]:
    """LOINC 82810-3 valued SNOMED 77386006 Pregnant (or 60001007 Not pregnant), S6."""
    code = SNOMED_PREGNANT if pregnant else SNOMED_NOT_PREGNANT
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": LOINC_SYSTEM, "code": PREGNANCY_STATUS}]},
        "effectiveDateTime": day(days_ago).isoformat(),
        "valueCodeableConcept": {"coding": [{"system": SNOMED, "code": code}]},
    }
    resource["id"] = id if id is not None else _content_id("pregnancy-status", resource)
    return resource


def gestational_age(weeks: float, *, days_ago: int = 10) -> dict[str, Any]:
    """LOINC 49051-6 in UCUM ``wk`` (S6)."""
    return obs(GESTATIONAL_AGE, weeks, "wk", days_ago=days_ago)


def pregnancy(weeks: float | None, *, days_ago: int = 10) -> list[dict[str, Any]]:
    """A 'Pregnant' status Observation plus, when ``weeks`` is given, a gestational age, same day."""
    out = [pregnancy_status(True, days_ago=days_ago)]
    if weeks is not None:
        out.append(gestational_age(weeks, days_ago=days_ago))
    return out


def condition(
    code: str,
    system: str = SNOMED,
    *,
    clinical_status: str | None = "active",
    verification_status: str | None = "confirmed",
    id: str | None = None,
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Condition",
        "code": {"coding": [{"system": system, "code": code}]},
        "subject": {"reference": "Patient/p1"},
    }
    if clinical_status is not None:
        resource["clinicalStatus"] = {"coding": [{"system": CONDITION_CLINICAL, "code": clinical_status}]}
    if verification_status is not None:
        resource["verificationStatus"] = {"coding": [{"system": CONDITION_VERIFICATION, "code": verification_status}]}
    resource["id"] = id if id is not None else _content_id(f"condition-{code}", resource)
    return resource


def procedure(code: str, system: str = SNOMED, *, status: str = "completed", days_ago: int = 10) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Procedure",
        "status": status,
        "code": {"coding": [{"system": system, "code": code}]},
        "subject": {"reference": "Patient/p1"},
        "performedDateTime": day(days_ago).isoformat(),
    }
    resource["id"] = _content_id(f"procedure-{code}", resource)
    return resource


def medication_request(rxnorm: str, *, status: str = "active", text: str | None = None) -> dict[str, Any]:
    concept: dict[str, Any] = {"coding": [{"system": RXNORM, "code": rxnorm}]}
    if text:
        concept["text"] = text
    resource: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "status": status,
        "intent": "order",
        "medicationCodeableConcept": concept,
        "subject": {"reference": "Patient/p1"},
    }
    resource["id"] = _content_id(f"medreq-{rxnorm}", resource)
    return resource


def birth_date_for(years: int = 0, months: int = 0, *, on: date = AS_OF) -> date:
    """A birth date making the patient exactly ``years`` years and ``months`` months old on ``on``."""
    total = on.year * 12 + (on.month - 1) - (years * 12 + months)
    return date(total // 12, total % 12 + 1, on.day)


def patient(
    sex: Sex | None = "female",
    *,
    age_years: int = 50,
    age_months: int | None = None,
    birth_date: date | None = None,
    unknown_birth_date: bool = False,
) -> PatientFacts:
    """Patient facts aged ``age_years`` on ``AS_OF``.

    Without ``age_months`` the patient is half-way through that year of age, so results drawn in the
    months before ``AS_OF`` see the same age in whole years; give ``age_months`` (or ``birth_date``)
    to place a birthday exactly.
    """
    if unknown_birth_date:
        born = None
    elif birth_date is not None:
        born = birth_date
    else:
        born = birth_date_for(age_years, 6 if age_months is None else age_months)
    return PatientFacts(reference="Patient/p1", sex=sex, birth_date=born)


ADULT_FEMALE = patient("female", age_years=50)
ADULT_MALE = patient("male", age_years=50)


def assess(
    observations: Sequence[dict[str, Any]],
    *,
    who: PatientFacts = ADULT_FEMALE,
    as_of: date = AS_OF,
    conditions: Sequence[dict[str, Any]] = (),
    procedures: Sequence[dict[str, Any]] = (),
    medications: Sequence[dict[str, Any]] = (),
) -> Assessment:
    return evaluate(
        who,
        list(observations),
        as_of=as_of,
        knowledge=knowledge(),
        conditions=list(conditions),
        procedures=list(procedures),
        medications=list(medications),
    )


def advisory(assessment: Assessment, code: str) -> Finding | None:
    return next((a for a in assessment.advisories if a.code == code), None)


def advisory_codes(assessment: Assessment) -> set[str]:
    return {a.code for a in assessment.advisories}


def not_evaluable(
    assessment: Assessment, *, analyte: str | None = None, observation: str | None = None
) -> list[NotEvaluable]:
    return [
        n
        for n in assessment.not_evaluable
        if (analyte is None or n.analyte == analyte) and (observation is None or n.observation == observation)
    ]


def reasons_for(assessment: Assessment, observation: dict[str, Any]) -> list[str]:
    return [n.reason for n in not_evaluable(assessment, observation=ref(observation))]


def outcome(assessment: Assessment) -> tuple[tuple[tuple[str, str | None], ...], str, str | None]:
    """What a clinician acts on: (finding code, severity) pairs, the iron band and the GFR category."""
    return (
        tuple((f.code, f.severity) for f in assessment.findings),
        assessment.iron_band,
        assessment.gfr_category,
    )
