"""Pure builders of the non-laboratory resources around a patient: Patient, Condition, Group.

Every resource carries the HTEST tag, so a shared server can tell (and purge) synthetic data.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

from rls_screen.synth.codes import (
    CONDITION_CATEGORY,
    CONDITION_CLINICAL,
    CONDITION_VERIFICATION,
    ICD10CM,
    MRN_SYSTEM,
    SNOMED,
    TEST_DATA_TAG,
    Json,
)

MR_TYPE_CODING: Json = {
    "system": "http://terminology.hl7.org/CodeSystem/v2-0203",
    "code": "MR",
    "display": "Medical record number",
}


def mrn(id_prefix: str, index: int) -> str:
    """The medical record number of patient ``index`` (system ``MRN_SYSTEM``)."""
    return f"{id_prefix}-{index:07d}"


def patient_resource(pid: str, id_prefix: str, index: int, gender: str, birth_date: date) -> Json:
    return {
        "resourceType": "Patient",
        "id": pid,
        "meta": {"tag": [dict(TEST_DATA_TAG)]},
        "identifier": [
            {
                "use": "usual",
                "type": {"coding": [dict(MR_TYPE_CODING)]},
                "system": MRN_SYSTEM,
                "value": mrn(id_prefix, index),
            }
        ],
        "active": True,
        "name": [{"use": "official", "text": f"Test Patient {index:04d}", "family": "Patient", "given": ["Test"]}],
        "gender": gender,
        "birthDate": birth_date.isoformat(),
    }


def condition_resource(
    pid: str, suffix: str, snomed: tuple[str, str], icd: tuple[str, str], onset: date, recorded: date
) -> Json:
    """An active, confirmed problem-list Condition coded in SNOMED CT and ICD-10-CM."""
    return {
        "resourceType": "Condition",
        "id": f"{pid}-{suffix}",
        "meta": {"tag": [dict(TEST_DATA_TAG)]},
        "clinicalStatus": {"coding": [{"system": CONDITION_CLINICAL, "code": "active", "display": "Active"}]},
        "verificationStatus": {
            "coding": [{"system": CONDITION_VERIFICATION, "code": "confirmed", "display": "Confirmed"}]
        },
        "category": [
            {"coding": [{"system": CONDITION_CATEGORY, "code": "problem-list-item", "display": "Problem List Item"}]}
        ],
        "code": {
            "coding": [
                {"system": SNOMED, "code": snomed[0], "display": snomed[1]},
                {"system": ICD10CM, "code": icd[0], "display": icd[1]},
            ],
            "text": snomed[1],
        },
        "subject": {"reference": f"Patient/{pid}"},
        "onsetDateTime": onset.isoformat(),
        "recordedDate": recorded.isoformat(),
    }


def build_group(group_id: str, patient_ids: Iterable[str]) -> Json:
    """The FHIR Group (type person, actual) whose members are the given patients."""
    return group_of(group_id, [{"reference": f"Patient/{pid}"} for pid in patient_ids])


def group_of(group_id: str, references: list[Json]) -> Json:
    """The panel's Group with these member references (``Patient/<id>``, or conditional ones)."""
    return {
        "resourceType": "Group",
        "id": group_id,
        "meta": {"tag": [dict(TEST_DATA_TAG)]},
        "active": True,
        "type": "person",
        "actual": True,
        "name": "Synthetic RLS screening panel (test data)",
        "quantity": len(references),
        "member": [{"entity": reference} for reference in references],
    }
