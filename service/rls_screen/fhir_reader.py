"""Reads what the rules need from a FHIR server: the data contract's searches, for one patient or a group.

One patient (``screen``, and the batch's fallback):
1. ``GET Patient/<id>`` (the answer must be that Patient: another id is an error, never used)
2. one search per contract type (``contract.DataContract.searches``): Observations by code and window,
   Conditions and Procedures by code, MedicationRequests by status (paged; plain JSON)

A group of patients (the batch): one search per contract type with the patients as an OR-list
(``_id=a,b``, ``subject=Patient/a,Patient/b``; the codes applied in memory, see below), all in one
``batch`` Bundle. Each resource is given to the patient its subject reference names, and then checked
again by the one resolver (``group_resources``, D1). A resource whose subject names none of the group
cannot be given to anyone: the whole group read is refused (``UnattributableError``) and the caller
reads those patients one by one, where such a resource is reported as not linked.

And, for write-back, one batch request for what already exists (Flags, ServiceRequests, the
RiskAssessments with these evaluations' identifiers), sent with ``Cache-Control: no-cache``: the same
requests for one patient (``read_existing_state``) as for a group (``read_group_states``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any
from urllib.parse import urlencode

from rls_screen import bundles
from rls_screen.errors import FhirNotFoundError, FhirOperationError, FhirResponseError
from rls_screen.fhir_client import FhirClient
from rls_screen.knowledge import Knowledge
from rls_screen.patient_data import PatientData, group_resources
from rls_screen.references import PatientLink, check_patient, patient_id_of
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
GROUP_PAGE_SIZE = "1000"
"""Page size of a group's searches: the local HAPI's maximum (deploy/fhir-server RestServerConfig), so a
group of 25 patients is usually answered in one page; more pages are followed."""
MAX_GROUP_PAGES = 100
# GROUP_SEARCHES_BY_SUBJECT_ONLY: a group's searches name the patients and nothing else, and the
# contract's codes and statuses are applied in memory (``DataContract.in_scope``, the filter the Bulk and
# NDJSON paths apply too), which gives what the per-patient searches give. Measured on the local HAPI
# (H2): ``Observation?subject=<8 patients>&combo-code=<the contract's codes>`` took 17-27 s, the same
# search by subject only 0.5 s, one patient's coded search 1.1 s (docs/benchmarks.md, issue 18): the
# server plans an OR-list of subjects joined with an OR-list of codes badly. The cost is reading a
# patient's other Observations too (paged, bounded by MAX_GROUP_PAGES).


class UnattributableError(FhirResponseError):
    """A group search returned a resource that cannot be given to one patient of the group."""


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
    """One patient's pre-write state: ``read_group_states`` for a group of one (the same requests and checks)."""
    return read_group_states(client, {patient_id: risk_assessment_identifier})[patient_id]


def _batch(client: FhirClient, urls: Sequence[str], what: str) -> list[Mapping[str, Any]]:
    """One ``batch`` of GET searches, fresh (no search cache); each entry's answer, in order, all 200."""
    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"request": {"method": "GET", "url": url}} for url in urls],
    }
    response = client.request_json("POST", "", json_body=batch, headers=FRESH_READ_HEADERS, idempotent=True)
    answers: list[Mapping[str, Any]] = []
    for entry in bundles.entries(response):
        outcome = entry.get("response")
        status = str(outcome.get("status", "")) if isinstance(outcome, Mapping) else ""
        if not status.startswith("200"):
            raise FhirOperationError(f"{what} failed (HTTP {status[:3]})")
        answer = entry.get("resource", {})
        if not isinstance(answer, Mapping):
            raise FhirResponseError(f"{what}: a batch entry's resource is not an object")
        answers.append(answer)
    if len(answers) != len(urls):
        raise FhirOperationError("the batch response does not answer every request")
    return answers


def _all_resources(client: FhirClient, first_page: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The resources of a search answer and of its next pages (fresh reads, bounded)."""
    found = list(bundles.resources(first_page))
    page, pages = first_page, 1
    while (url := bundles.next_link(page)) is not None:
        pages += 1
        if pages > MAX_GROUP_PAGES:
            raise FhirOperationError(f"a group search has more than {MAX_GROUP_PAGES} pages; use smaller groups")
        page = client.request_json("GET", url, headers=FRESH_READ_HEADERS)
        found.extend(bundles.resources(page))
    return found


def _subject_reference(resource: Mapping[str, Any]) -> Any:
    subject = resource.get("subject") if "subject" in resource else resource.get("patient")
    return subject.get("reference") if isinstance(subject, Mapping) else None


def read_group_data(
    client: FhirClient, patient_ids: Sequence[str], knowledge: Knowledge, as_of: date
) -> dict[str, PatientData | FhirNotFoundError]:
    """Each patient's data, as ``read_patient_data`` gives it, from one batch of OR-list searches.

    A patient the server does not hold gets ``FhirNotFoundError``; the others are unaffected.
    Raises ``UnattributableError`` when a resource's subject names none of the group (see above).
    """
    wanted = list(dict.fromkeys(patient_ids))
    if not wanted:
        return {}
    contract = knowledge.contract
    subjects = ",".join(f"Patient/{patient_id}" for patient_id in wanted)
    urls = [f"Patient?{urlencode({'_id': ','.join(wanted), '_count': GROUP_PAGE_SIZE})}"]
    for search in contract.searches:
        # By subject only (see GROUP_SEARCHES_BY_SUBJECT_ONLY); the contract's filters apply in memory below.
        urls.append(f"{search.resource_type}?{urlencode({'subject': subjects, '_count': GROUP_PAGE_SIZE})}")
    answers = _batch(client, urls, "reading the patients' data")
    patients: dict[str, Mapping[str, Any]] = {}
    for patient in _all_resources(client, answers[0]):
        if patient.get("resourceType") != "Patient":
            continue
        patient_id = patient.get("id")
        if not isinstance(patient_id, str) or patient_id not in wanted or patient_id in patients:
            raise UnattributableError("Patient search: the FHIR server returned a Patient that was not asked for")
        patients[patient_id] = patient
    held: dict[str, list[Mapping[str, Any]]] = {patient_id: [] for patient_id in wanted}
    for search, answer in zip(contract.searches, answers[1:], strict=True):
        for resource in _all_resources(client, answer):
            if resource.get("resourceType") != search.resource_type:
                continue
            owner = patient_id_of(_subject_reference(resource), client.base_url)
            if owner is None or owner not in held:
                raise UnattributableError(f"{search.what}: a resource whose subject is none of the patients asked for")
            if contract.in_scope(resource):  # what the contract's own search would have returned
                held[owner].append(resource)
    result: dict[str, PatientData | FhirNotFoundError] = {}
    for patient_id in wanted:
        if patient_id not in patients:
            result[patient_id] = FhirNotFoundError(f"Patient/{patient_id} was not found on the FHIR server", status=404)
            continue
        link = PatientLink.of(patient_id, base_url=client.base_url)
        result[patient_id] = group_resources(patients[patient_id], held[patient_id], link=link)
    return result


def read_group_states(client: FhirClient, risk_assessments: Mapping[str, str]) -> dict[str, ExistingState]:
    """What the server holds for each patient (patient id -> its RiskAssessment identifier), in one batch:
    our Flags, our ServiceRequest, and whether the RiskAssessment with that identifier exists.

    Flags and ServiceRequests are given to a patient by our identifier (``<patient id>.<code>``) and
    must also name that patient as subject; RiskAssessments are found by identifier (a hash over the
    patient among others). Anything else is an error, never guessed.
    """
    ids = list(risk_assessments)
    subjects = ",".join(f"Patient/{patient_id}" for patient_id in ids)
    requests = [
        f"Flag?subject={subjects}&identifier={FLAG_ID_SYSTEM}|&_count={GROUP_PAGE_SIZE}",
        "ServiceRequest?identifier="
        + ",".join(f"{SERVICE_REQUEST_ID_SYSTEM}|{service_request_identifier(p)}" for p in ids)
        + f"&_count={GROUP_PAGE_SIZE}",
        "RiskAssessment?identifier="
        + ",".join(f"{RISK_ASSESSMENT_ID_SYSTEM}|{value}" for value in risk_assessments.values())
        + f"&_elements=identifier&_count={GROUP_PAGE_SIZE}",
    ]
    what = "reading existing write-back resources"
    answers = _batch(client, requests, what)
    flags: dict[str, list[Mapping[str, Any]]] = {patient_id: [] for patient_id in ids}
    for flag in _all_resources(client, answers[0]):
        if not _has_identifier_list(flag):
            raise FhirResponseError(f"{what}: a Flag's identifier is not a list of objects")
        flags[_owner(flag, FLAG_ID_SYSTEM, flags, client, what)].append(flag)
    service_requests: dict[str, Mapping[str, Any]] = {}
    for request in _all_resources(client, answers[1]):
        if not _has_identifier_list(request):
            raise FhirResponseError(f"{what}: a ServiceRequest's identifier is not a list of objects")
        service_requests[_owner(request, SERVICE_REQUEST_ID_SYSTEM, flags, client, what)] = request
    existing_ras: set[str] = set()
    for assessment in _all_resources(client, answers[2]):
        if not _has_identifier_list(assessment):
            raise FhirResponseError(f"{what}: a RiskAssessment's identifier is not a list of objects")
        existing_ras.update(
            str(i.get("value"))
            for i in assessment.get("identifier", [])
            if i.get("system") == RISK_ASSESSMENT_ID_SYSTEM
        )
    return {
        patient_id: ExistingState(
            flags=flags_by_code(flags[patient_id]),
            service_request=service_requests.get(patient_id),
            risk_assessment_exists=risk_assessments[patient_id] in existing_ras,
        )
        for patient_id in ids
    }


def _owner(resource: Mapping[str, Any], system: str, group: Mapping[str, Any], client: FhirClient, what: str) -> str:
    """The group's patient a Flag or ServiceRequest of ours belongs to: by identifier and by subject, both."""
    values = [str(i.get("value", "")) for i in resource.get("identifier", []) if i.get("system") == system]
    owners = {value.rsplit(".", 1)[0] for value in values}
    if len(owners) != 1:
        raise UnattributableError(f"{what}: a {resource.get('resourceType')} without one identifier of ours")
    (owner,) = owners
    if owner not in group or not PatientLink.of(owner, base_url=client.base_url).links(resource):
        raise UnattributableError(f"{what}: a {resource.get('resourceType')} of ours names another patient")
    return owner


def _has_identifier_list(resource: Mapping[str, Any]) -> bool:
    """Whether ``flags_by_code`` can index the resource's identifiers (absent, or a list of objects)."""
    identifiers = resource.get("identifier", [])
    return isinstance(identifiers, list) and all(isinstance(i, Mapping) for i in identifiers)
