"""Runs of one synthetic panel through the real batch runner, offline, for the worklist tests and bench.

A run screens the deterministic synthetic panel (``rls_screen.synth``) with ``runner.run_job`` over an
in-memory loader (no FHIR server: a dry run), so the job store holds what a real batch stores, and
``batch.report.write_report`` then reads it as it reads any job. A later run of the same panel can
give some patients other data (another synthetic seed for them), which changes their findings.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime
from pathlib import Path

from rls_screen import synth
from rls_screen.batch.jobs import Job, JobStore
from rls_screen.batch.report import BatchSummary, write_report
from rls_screen.batch.runner import BatchOptions, run_job
from rls_screen.knowledge import Knowledge
from rls_screen.patient_data import PatientData, from_bundle

AS_OF = date(2026, 11, 25)
SOURCE = "group:Group/wl-panel"
FHIR_BASE_URL = "http://127.0.0.1:9/fhir"
PREFIX = "wl"


class _Loader:
    """Patient data by id from synthetic records (plain data, so it could travel to a worker process)."""

    def __init__(self, records: Iterable[synth.PatientRecord]) -> None:
        self._bundles = {r.patient_id: synth.urn_uuid_bundle(r, bundle_type="collection") for r in records}

    def __call__(self, patient_id: str) -> PatientData:
        return from_bundle(self._bundles[patient_id])


def panel_records(n: int, *, seed: int = 3, changed: Iterable[int] = (), changed_seed: int = 7) -> list:
    """Patients 1..n of the synthetic panel; those in ``changed`` get the data of ``changed_seed``."""
    other = set(changed)
    return [
        synth.generate_patient(i, seed=changed_seed if i in other else seed, as_of=AS_OF, id_prefix=PREFIX)
        for i in range(1, n + 1)
    ]


def screen_run(
    store: JobStore, knowledge: Knowledge, records: list, *, source: str = SOURCE, as_of: date = AS_OF
) -> Job:
    """One dry run of the panel through the batch runner; returns the finished job."""
    job = store.create_job(
        created=datetime.now(UTC).isoformat(), source=source, as_of=as_of, dry_run=True, fhir_base_url=FHIR_BASE_URL
    )
    store.add_patients(job.id, [r.patient_id for r in records])
    options = BatchOptions(
        knowledge=knowledge, recorded=datetime(2026, 11, 25, 9, 30, tzinfo=UTC), concurrency=1, loader=_Loader(records)
    )
    run_job(store, job, None, options)
    return store.job(job.id)


def report_run(
    store: JobStore, knowledge: Knowledge, records: list, directory: Path, *, link_template: str | None = None
) -> tuple[BatchSummary, Path]:
    """Screen a run and write its report; returns the summary and the HTML path."""
    job = screen_run(store, knowledge, records)
    summary, html_path, _ = write_report(store, job, directory, knowledge, link_template)
    return summary, html_path
