"""What the summary page shows, read with the user's token: the one ``assess`` over the contract's data,
and what the module wrote back for this patient (its Flags, RiskAssessments, iron-studies proposal).

Reads go through the one FHIR seam (``FhirClient``) and the data contract (``read_patient_data``);
the write-back resources are found by the module's identifier systems, read fresh (no-cache).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from rls_screen import bundles
from rls_screen.assessment import assess
from rls_screen.fhir_client import FhirClient
from rls_screen.fhir_reader import FRESH_READ_HEADERS, read_patient_data
from rls_screen.knowledge import Knowledge
from rls_screen.model import Assessment
from rls_screen.patient_data import PatientData
from rls_screen.writeback import FLAG_ID_SYSTEM, RISK_ASSESSMENT_ID_SYSTEM, SERVICE_REQUEST_ID_SYSTEM


@dataclass(frozen=True)
class Summary:
    patient: Mapping[str, Any]
    data: PatientData
    assessment: Assessment
    flags: tuple[dict[str, Any], ...]
    risk_assessments: tuple[dict[str, Any], ...]
    """Newest first."""
    proposals: tuple[dict[str, Any], ...]
    orders: dict[str, tuple[dict[str, Any], ...]]
    """Proposal id -> the orders based on it (a clinician accepted it in the app)."""


def written(client: FhirClient, resource_type: str, patient_id: str, system: str) -> list[dict[str, Any]]:
    """The module's resources of one type for the patient (by its identifier system), read fresh."""
    params = {"subject": f"Patient/{patient_id}", "identifier": f"{system}|", "_count": "100"}
    bundle = client.request_json("GET", resource_type, params=params, headers=FRESH_READ_HEADERS, idempotent=True)
    return [r for r in bundles.resources(bundle) if r.get("resourceType") == resource_type]


def orders_based_on(client: FhirClient, proposal_id: str) -> list[dict[str, Any]]:
    """The ServiceRequests based on the proposal that are still live (not revoked or entered in error)."""
    params = {"based-on": f"ServiceRequest/{proposal_id}", "_count": "20"}
    bundle = client.request_json("GET", "ServiceRequest", params=params, headers=FRESH_READ_HEADERS, idempotent=True)
    return [
        r
        for r in bundles.resources(bundle)
        if r.get("resourceType") == "ServiceRequest" and r.get("status") not in ("revoked", "entered-in-error")
    ]


def _last_updated(resource: Mapping[str, Any]) -> str:
    meta = resource.get("meta")
    return str(meta.get("lastUpdated", "")) if isinstance(meta, Mapping) else ""


def read_summary(client: FhirClient, patient_id: str, knowledge: Knowledge, as_of: date) -> Summary:
    data = read_patient_data(client, patient_id, knowledge, as_of)
    risk = written(client, "RiskAssessment", patient_id, RISK_ASSESSMENT_ID_SYSTEM)
    proposals = written(client, "ServiceRequest", patient_id, SERVICE_REQUEST_ID_SYSTEM)
    return Summary(
        patient=data.patient,
        data=data,
        assessment=assess(data, knowledge=knowledge, as_of=as_of),
        flags=tuple(sorted(written(client, "Flag", patient_id, FLAG_ID_SYSTEM), key=lambda r: str(r.get("id")))),
        risk_assessments=tuple(sorted(risk, key=_last_updated, reverse=True)),
        proposals=tuple(proposals),
        orders={str(p.get("id")): tuple(orders_based_on(client, str(p.get("id")))) for p in proposals},
    )
