"""``from_bundle`` reads Bundles whose subjects point at the Patient by its entry's fullUrl (Synthea)."""

from __future__ import annotations

from typing import Any

import pytest

from rls_screen.patient_data import from_bundle

pytestmark = pytest.mark.unit
PATIENT_URL = "urn:uuid:0b8e7c2a-5d3e-4f7a-9c61-1f2d3e4a5b6c"
OTHER_URL = "urn:uuid:7f6e5d4c-3b2a-4190-8f7e-6d5c4b3a2918"


def _bundle(subjects: list[str]) -> dict[str, Any]:
    entries: list[dict[str, Any]] = [
        {"fullUrl": PATIENT_URL, "resource": {"resourceType": "Patient", "id": "p1", "gender": "female"}}
    ]
    kinds = ("Observation", "Condition", "Procedure", "MedicationRequest")
    for n, subject in enumerate(subjects):
        resource = {"resourceType": kinds[n % 4], "id": f"r{n}", "subject": {"reference": subject}}
        entries.append({"fullUrl": f"urn:uuid:00000000-0000-4000-8000-{n:012d}", "resource": resource})
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


def test_subjects_by_urn_uuid_belong_to_the_patient() -> None:
    data = from_bundle(_bundle([PATIENT_URL] * 4))
    assert [len(data.observations), len(data.conditions), len(data.procedures), len(data.medications)] == [1] * 4


def test_a_urn_uuid_of_another_entry_is_not_the_patient() -> None:
    data = from_bundle(_bundle([OTHER_URL, "Patient/p1", OTHER_URL, PATIENT_URL]))
    assert [r["id"] for r in data.conditions] == ["r1"]
    assert [r["id"] for r in data.medications] == ["r3"]
    assert data.observations == data.procedures == ()
