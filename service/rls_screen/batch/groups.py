"""Screening patients against a FHIR server, a group at a time: one read and one transaction per group.

``screen_group`` reads the group's data with one batch of OR-list searches (``read_group_data``),
evaluates each patient, and writes back with one pre-write read and one transaction for the group
(``write_back_group``). A group of one, and a group whose read fails as a whole on anything but a
transient error, goes the one-by-one way (``screen_one``), where each patient gets its own reason.
``patient_summary`` is what the job store keeps of each screened patient, on every path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rls_screen.assessment import assess
from rls_screen.batch.worklist import finding_details
from rls_screen.errors import FhirError, FhirUnavailableError, RlsScreenError
from rls_screen.fhir_client import FhirClient
from rls_screen.fhir_reader import read_group_data, read_patient_data
from rls_screen.model import Assessment
from rls_screen.patient_data import PatientData
from rls_screen.screening import ScreenResult, write_back, write_back_group

if TYPE_CHECKING:
    from rls_screen.batch.jobs import Job
    from rls_screen.batch.runner import BatchOptions

SUMMARY_ANALYTES = (
    "ferritin",
    "tsat",
    "hemoglobin",
    "egfr",
    "magnesium",
    "potassium",
    "calcium-total",
    "calcium-ionized",
)


def patient_summary(assessment: Assessment, result: ScreenResult) -> dict[str, Any]:
    """What the report needs from one patient: codes and key values, no names."""
    latest: dict[str, float] = {}
    for finding in (*assessment.findings, *assessment.advisories):
        for value in finding.values:
            if (
                value.analyte in SUMMARY_ANALYTES
                and not value.value.comparator
                and value.value.value == value.value.value
            ):
                latest.setdefault(value.analyte, round(value.value.value, 3))
    for used in assessment.used_observations:
        if used.analyte in SUMMARY_ANALYTES and used.value is not None and not used.value.comparator:
            latest.setdefault(used.analyte, round(used.value.value, 3))
    return {
        "ruleSet": f"{assessment.rule_set_id} {assessment.rule_set_version}",
        "findings": {f.code: f.severity for f in assessment.findings},
        "details": finding_details(assessment),
        "advisories": sorted({a.code for a in assessment.advisories}),
        "gfrCategory": assessment.gfr_category,
        "ironBand": assessment.iron_band,
        "notEvaluable": len(assessment.not_evaluable),
        "values": latest,
        "changes": list(result.plan.created) if result.plan else [],
    }


def screen_one(client: FhirClient | None, job: Job, patient_id: str, options: BatchOptions) -> dict[str, Any]:
    if options.loader is not None:
        data = options.loader(patient_id)
    elif client is not None:
        data = read_patient_data(client, patient_id, options.knowledge, job.as_of)
    else:  # pragma: no cover - guarded by the CLI
        raise RlsScreenError("no patient source")
    assessment = assess(data, knowledge=options.knowledge, as_of=job.as_of)
    if client is None or (job.dry_run and options.loader is not None):
        result = ScreenResult(assessment, None, False, None)
    else:
        result = write_back(
            client, assessment, knowledge=options.knowledge, recorded=options.recorded, dry_run=job.dry_run
        )
    summary = patient_summary(assessment, result)
    summary["written"] = result.written
    return summary


# --- groups of patients against the server ----------------------------------------------------------

Screened = tuple[str, dict[str, Any] | None, BaseException | None]
"""(patient id, its summary when screened, the error when not)."""


def _one_outcome(client: FhirClient | None, job: Job, patient_id: str, options: BatchOptions) -> Screened:
    try:
        return patient_id, screen_one(client, job, patient_id, options), None
    except Exception as error:
        return patient_id, None, error


def _group_data(
    client: FhirClient, job: Job, ids: list[str], options: BatchOptions
) -> dict[str, PatientData | BaseException]:
    if options.loader is None:
        return dict(read_group_data(client, ids, options.knowledge, job.as_of))
    data: dict[str, PatientData | BaseException] = {}
    for patient_id in ids:
        try:
            data[patient_id] = options.loader(patient_id)
        except Exception as error:
            data[patient_id] = error
    return data


def screen_group(client: FhirClient | None, job: Job, ids: list[str], options: BatchOptions) -> list[Screened]:
    """Screen a group of patients with one read and one transaction for all (``write_back_group``).

    A transient failure of the group's reads is each patient's transient failure (retried in a later
    round); any other failure of the group as a whole (e.g. a resource that cannot be given to one
    patient) sends the group through the one-by-one path, where each patient gets its own reason.
    """
    if client is None or len(ids) == 1:
        return [_one_outcome(client, job, patient_id, options) for patient_id in ids]
    outcomes: dict[str, Screened] = {}
    try:
        assessments: list[Assessment] = []
        for patient_id, data in _group_data(client, job, ids, options).items():
            if isinstance(data, BaseException):
                outcomes[patient_id] = (patient_id, None, data)
                continue
            try:
                assessments.append(assess(data, knowledge=options.knowledge, as_of=job.as_of))
            except Exception as error:
                outcomes[patient_id] = (patient_id, None, error)
        if job.dry_run and options.loader is not None:
            results: dict[str, ScreenResult | FhirError] = {
                a.patient.removeprefix("Patient/"): ScreenResult(a, None, False, None) for a in assessments
            }
        elif assessments:
            results = dict(
                write_back_group(
                    client, assessments, knowledge=options.knowledge, recorded=options.recorded, dry_run=job.dry_run
                )
            )
        else:
            results = {}
    except FhirUnavailableError as error:
        return [(patient_id, None, error) for patient_id in ids]
    except Exception:
        return [_one_outcome(client, job, patient_id, options) for patient_id in ids]
    for patient_id, result in results.items():
        if isinstance(result, FhirError):
            outcomes[patient_id] = (patient_id, None, result)
        else:
            summary = patient_summary(result.assessment, result)
            summary["written"] = result.written
            outcomes[patient_id] = (patient_id, summary, None)
    return [outcomes[patient_id] for patient_id in ids]


def groups_of(ids: list[str], options: BatchOptions) -> list[list[str]]:
    """Groups of at most ``group_size``, and small enough that every worker thread has one."""
    size = max(1, min(options.group_size, -(-len(ids) // options.concurrency)))
    return [ids[i : i + size] for i in range(0, len(ids), size)]
