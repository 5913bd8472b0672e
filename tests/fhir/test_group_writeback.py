"""Groups of patients against the real HAPI server: one read for the group, one transaction for the group.

What must hold (clinical safety first): each patient gets exactly the data a read of that patient alone
gives, however the server interleaves the patients' resources in one search answer; a patient the
server does not hold fails alone; a group transaction the server rejects costs no other patient its
write; a re-run of the group writes nothing.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from itertools import zip_longest
from typing import Any

import pytest

from rls_screen.assessment import assess
from rls_screen.errors import FhirError, FhirNotFoundError
from rls_screen.fhir_client import Allowlist, FhirClient
from rls_screen.fhir_reader import read_existing_state, read_group_data, read_group_states, read_patient_data
from rls_screen.knowledge import load_knowledge
from rls_screen.patient_data import PatientData, group_resources
from rls_screen.screening import ScreenResult, write_back_group
from rls_screen.synth import generate_panel
from rls_screen.writeback import risk_assessment_identifier

pytestmark = pytest.mark.fhir
AS_OF = date(2026, 11, 25)
RECORDED = datetime(2026, 11, 25, 12, tzinfo=UTC)
KNOWLEDGE = load_knowledge()


def _client(base_url: str) -> FhirClient:
    return FhirClient(base_url, allowlist=Allowlist((base_url,)), read_timeout_s=120)


def _load_interleaved(client: FhirClient, prefix: str, n: int) -> list[str]:
    """Load ``n`` patients in one transaction whose entries alternate between the patients, so the
    server stores (and its searches return) their resources interleaved."""
    panel = generate_panel(n, seed=5, as_of=AS_OF, id_prefix=prefix)
    entries: list[dict[str, Any]] = [
        {"resource": r.patient, "request": {"method": "PUT", "url": f"Patient/{r.patient_id}"}} for r in panel.patients
    ]
    for row in zip_longest(*(record.resources for record in panel.patients)):
        for resource in row:
            if resource is not None:
                url = f"{resource['resourceType']}/{resource['id']}"
                entries.append({"resource": resource, "request": {"method": "PUT", "url": url}})
    client.transaction({"resourceType": "Bundle", "type": "transaction", "entry": entries})
    return [record.patient_id for record in panel.patients]


def _ids(data: PatientData) -> dict[str, list[str]]:
    return {
        kind: sorted(r["id"] for r in resources)
        for kind, resources in (
            ("Observation", data.observations),
            ("Condition", data.conditions),
            ("Procedure", data.procedures),
            ("MedicationRequest", data.medications),
        )
    }


def test_a_group_read_gives_each_patient_exactly_its_own_data_when_the_server_interleaves_them(
    fhir_base_url: str, unique_prefix: str
) -> None:
    client = _client(fhir_base_url)
    ids = _load_interleaved(client, unique_prefix, 6)
    missing = f"{unique_prefix}-nobody"

    grouped = read_group_data(client, [*ids, missing], KNOWLEDGE, AS_OF)

    assert isinstance(grouped[missing], FhirNotFoundError)
    for patient_id in ids:
        alone = read_patient_data(client, patient_id, KNOWLEDGE, AS_OF)
        together = grouped[patient_id]
        assert isinstance(together, PatientData)
        assert together.patient_id == patient_id
        assert _ids(together) == _ids(alone)
        assert _ids(together)["Observation"], "the panel's patients all have lab results"
        # every resource given to the patient names it as subject, by the one resolver
        for resource in (*together.observations, *together.conditions, *together.medications):
            assert resource["subject"]["reference"] == f"Patient/{patient_id}"
        assert together.unlinked == ()
        assert assess(together, knowledge=KNOWLEDGE, as_of=AS_OF) == assess(alone, knowledge=KNOWLEDGE, as_of=AS_OF)
    client.close()


def test_a_group_is_written_once_read_back_per_patient_and_a_rerun_writes_nothing(
    fhir_base_url: str, unique_prefix: str
) -> None:
    client = _client(fhir_base_url)
    ids = _load_interleaved(client, unique_prefix, 5)
    data = read_group_data(client, ids, KNOWLEDGE, AS_OF)
    assessments = [assess(data[p], knowledge=KNOWLEDGE, as_of=AS_OF) for p in ids]  # type: ignore[arg-type]

    first = write_back_group(client, assessments, knowledge=KNOWLEDGE, recorded=RECORDED)
    assert all(isinstance(r, ScreenResult) and r.written for r in first.values())

    states = read_group_states(
        client, {p: risk_assessment_identifier(a) for p, a in zip(ids, assessments, strict=True)}
    )
    for patient_id, assessment in zip(ids, assessments, strict=True):
        alone = read_existing_state(client, patient_id, risk_assessment_identifier(assessment))
        assert states[patient_id] == alone
        assert states[patient_id].risk_assessment_exists
        assert set(states[patient_id].flags) >= set(assessment.finding_codes)

    again = write_back_group(client, assessments, knowledge=KNOWLEDGE, recorded=RECORDED)
    assert all(
        isinstance(r, ScreenResult) and not r.written and r.plan and r.plan.bundle is None for r in again.values()
    )
    client.close()


def test_a_rejected_group_transaction_falls_back_to_each_patients_own(fhir_base_url: str, unique_prefix: str) -> None:
    """A patient the server does not hold makes the group's transaction fail (its references do not
    resolve): the others are still written, that one fails alone."""
    client = _client(fhir_base_url)
    ids = _load_interleaved(client, unique_prefix, 3)
    data = read_group_data(client, ids, KNOWLEDGE, AS_OF)
    ghost_data = data[ids[0]]
    assert isinstance(ghost_data, PatientData)
    ghost_id = f"{unique_prefix}-ghost"
    ghost = group_resources(
        {**ghost_data.patient, "id": ghost_id},
        [{**r, "subject": {"reference": f"Patient/{ghost_id}"}} for r in ghost_data.observations],
    )
    assessments = [
        assess(data[ids[0]], knowledge=KNOWLEDGE, as_of=AS_OF),  # type: ignore[arg-type]
        assess(ghost, knowledge=KNOWLEDGE, as_of=AS_OF),
        *(assess(data[p], knowledge=KNOWLEDGE, as_of=AS_OF) for p in ids[1:]),  # type: ignore[arg-type]
    ]

    results = write_back_group(client, assessments, knowledge=KNOWLEDGE, recorded=RECORDED)

    assert isinstance(results[ghost_id], FhirError)
    for patient_id in ids:
        result = results[patient_id]
        assert isinstance(result, ScreenResult), patient_id
        assert result.written, patient_id
        assert read_existing_state(
            client, patient_id, risk_assessment_identifier(result.assessment)
        ).risk_assessment_exists
    client.close()
