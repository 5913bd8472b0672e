"""Reads what the rules need for one patient from a FHIR server, in at most three requests.

1. ``GET Patient/<id>``
2. ``GET Observation?subject=...&code=<every analyte code, LOINC and site-mapped local>&date=ge<window>``
   (paged; plain JSON, only parsed lightly later)
3. ``GET Condition?subject=...&code=<RLS, pregnancy, dialysis>``

and, for write-back, one batch request for what already exists (Flags, ServiceRequest, the
RiskAssessment with this evaluation's identifier), sent with ``Cache-Control: no-cache``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta
from typing import Any

from rls_screen import bundles
from rls_screen.codesets import Terminology, value_set_url
from rls_screen.engine import Knowledge
from rls_screen.errors import FhirNotFoundError, FhirOperationError, FhirResponseError
from rls_screen.fhir_client import FhirClient
from rls_screen.patient_data import PatientData, group_resources
from rls_screen.writeback import (
    FLAG_ID_SYSTEM,
    RISK_ASSESSMENT_ID_SYSTEM,
    SERVICE_REQUEST_ID_SYSTEM,
    ExistingState,
    flags_by_code,
    service_request_identifier,
)

PAGE_SIZE = "500"
# The write-back plan is only idempotent if it sees what the server holds now. HAPI JPA reuses a
# search's results for a minute by default (JpaStorageSettings reuseCachedSearchResultsForMillis) and
# skips that cache for a request carrying Cache-Control: no-cache, also for the searches inside a batch
# (they see the batch request's headers). Without it, a re-screen within the minute after a write (or
# the retry after a lost transaction answer) plans against the state before the write and sends it
# again: the conditional writes keep one RiskAssessment, Flag and ServiceRequest, but unchanged Flags
# get new versions and the Provenance, a plain POST, is written twice. docs/fhir-server.md says why too.
FRESH_READ_HEADERS = {"Cache-Control": "no-cache"}
CONDITION_VALUE_SETS = ("rls-condition", "pregnancy-condition", "dialysis")


def _token_list(codings: set[tuple[str, str]]) -> str:
    return ",".join(f"{system}|{code}" for system, code in sorted(codings))


# Codes the rules do not use but explain when present ("UIBC is not TIBC", "not an eGFR"): read
# too, so the clinician learns why TSAT or the eGFR is missing on every path, not only offline.
EXPLAINED_VALUE_SETS = ("uibc", "egfr-excluded")


def observation_codes(terminology: Terminology) -> str:
    """Every code an analyte may arrive under (LOINC plus site ConceptMap codes), and the explained ones."""
    explained = {coding for name in EXPLAINED_VALUE_SETS for coding in terminology.value_sets[value_set_url(name)]}
    return _token_list(set(terminology.analyte_by_coding) | explained)


def condition_codes(terminology: Terminology) -> str:
    codings: set[tuple[str, str]] = set()
    for name in CONDITION_VALUE_SETS:
        codings |= set(terminology.value_sets[value_set_url(name)])
    return _token_list(codings)


def observation_search(patient_id: str, knowledge: Knowledge, as_of: date) -> dict[str, str]:
    window_start = as_of - timedelta(days=knowledge.ruleset.selection.window_days)
    return {
        "subject": f"Patient/{patient_id}",
        "code": observation_codes(knowledge.terminology),
        "date": f"ge{window_start.isoformat()}",
        "_count": PAGE_SIZE,
    }


def read_patient_data(client: FhirClient, patient_id: str, knowledge: Knowledge, as_of: date) -> PatientData:
    try:
        patient = client.read("Patient", patient_id)
    except FhirNotFoundError as error:
        raise FhirNotFoundError(
            f"Patient/{patient_id} was not found on the FHIR server", status=error.status
        ) from error
    observations = list(client.search("Observation", observation_search(patient_id, knowledge, as_of)))
    conditions = list(
        client.search(
            "Condition",
            {
                "subject": f"Patient/{patient_id}",
                "code": condition_codes(knowledge.terminology),
                "_count": PAGE_SIZE,
            },
        )
    )
    return group_resources(patient, [*observations, *conditions])


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
