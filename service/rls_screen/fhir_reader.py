"""Reads what the rules need for one patient from a FHIR server: the data contract's searches.

1. ``GET Patient/<id>`` (the answer must be that Patient: another id is an error, never used)
2. one search per contract type (``contract.DataContract.searches``): Observations by code and window,
   Conditions and Procedures by code, MedicationRequests by status (paged; plain JSON)

and, for write-back, one batch request for what already exists (Flags, ServiceRequest, the
RiskAssessment with this evaluation's identifier), sent with ``Cache-Control: no-cache``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from rls_screen import bundles
from rls_screen.errors import FhirNotFoundError, FhirOperationError, FhirResponseError
from rls_screen.fhir_client import FhirClient
from rls_screen.knowledge import Knowledge
from rls_screen.patient_data import PatientData, group_resources
from rls_screen.references import PatientLink, check_patient
from rls_screen.writeback import (
    FLAG_ID_SYSTEM,
    RISK_ASSESSMENT_ID_SYSTEM,
    SERVICE_REQUEST_ID_SYSTEM,
    ExistingState,
    flags_by_code,
    service_request_identifier,
)

# The write-back plan is only idempotent if it sees what the server holds now. HAPI JPA reuses a
# search's results for a minute by default (JpaStorageSettings reuseCachedSearchResultsForMillis) and
# skips that cache for a request carrying Cache-Control: no-cache, also for the searches inside a batch
# (they see the batch request's headers). Without it, a re-screen within the minute after a write (or
# the retry after a lost transaction answer) plans against the state before the write and sends it
# again: the conditional writes keep one RiskAssessment, Flag and ServiceRequest, but unchanged Flags
# get new versions and the Provenance, a plain POST, is written twice. docs/fhir-server.md says why too.
FRESH_READ_HEADERS = {"Cache-Control": "no-cache"}


def read_patient_data(client: FhirClient, patient_id: str, knowledge: Knowledge, as_of: date) -> PatientData:
    """The Patient (its id checked) and one search per contract type, linked against this server's base."""
    try:
        patient = check_patient(client.read("Patient", patient_id), patient_id, f"GET Patient/{patient_id}")
    except FhirNotFoundError as error:
        raise FhirNotFoundError(
            f"Patient/{patient_id} was not found on the FHIR server", status=error.status
        ) from error
    contract = knowledge.contract
    resources: list[Mapping[str, Any]] = []
    for search in contract.searches:
        found = client.search(search.resource_type, contract.rest_params(search, patient_id, as_of))
        resources.extend(r for r in found if r.get("resourceType") == search.resource_type)
    return group_resources(patient, resources, link=PatientLink.of(patient_id, base_url=client.base_url))


def read_existing_state(client: FhirClient, patient_id: str, risk_assessment_identifier: str) -> ExistingState:
    """One batch request: our Flags and ServiceRequest, and whether this RiskAssessment exists."""
    subject = f"Patient/{patient_id}"
    requests = [
        f"Flag?subject={subject}&identifier={FLAG_ID_SYSTEM}|&_count=100",
        f"ServiceRequest?subject={subject}&identifier={SERVICE_REQUEST_ID_SYSTEM}|"
        f"{service_request_identifier(patient_id)}",
        f"RiskAssessment?subject={subject}&identifier={RISK_ASSESSMENT_ID_SYSTEM}|{risk_assessment_identifier}"
        "&_summary=count",
    ]
    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"request": {"method": "GET", "url": url}} for url in requests],
    }
    response = client.request_json("POST", "", json_body=batch, headers=FRESH_READ_HEADERS, idempotent=True)
    answers: list[Mapping[str, Any]] = []
    for entry in bundles.entries(response):
        outcome = entry.get("response")
        status = str(outcome.get("status", "")) if isinstance(outcome, Mapping) else ""
        if not status.startswith("200"):
            raise FhirOperationError(f"reading existing write-back resources failed (HTTP {status[:3]})")
        answer = entry.get("resource", {})
        if not isinstance(answer, Mapping):
            raise FhirResponseError("reading existing write-back resources: a batch entry's resource is not an object")
        answers.append(answer)
    if len(answers) != len(requests):
        raise FhirOperationError("the batch response does not answer every request")
    flags = list(bundles.resources(answers[0]))
    if not all(_has_identifier_list(flag) for flag in flags):
        raise FhirResponseError("reading existing write-back resources: a Flag's identifier is not a list of objects")
    service_requests = list(bundles.resources(answers[1]))
    total = answers[2].get("total", 0)
    if not isinstance(total, int) or isinstance(total, bool):
        raise FhirResponseError("reading existing write-back resources: the RiskAssessment count is not a number")
    return ExistingState(
        flags=flags_by_code(flags),
        service_request=service_requests[0] if service_requests else None,
        risk_assessment_exists=total > 0,
    )


def _has_identifier_list(resource: Mapping[str, Any]) -> bool:
    """Whether ``flags_by_code`` can index the resource's identifiers (absent, or a list of objects)."""
    identifiers = resource.get("identifier", [])
    return isinstance(identifiers, list) and all(isinstance(i, Mapping) for i in identifiers)
