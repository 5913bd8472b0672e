"""How ``rls-screen batch`` registers a job's patients: from a Group, a file, a Condition search, a Bulk export or
NDJSON files, or the patients changed since ``--since``; the problems of the panel go to the job store."""

from __future__ import annotations

import argparse
from datetime import UTC, date, datetime
from pathlib import Path

from rls_screen.batch import sources
from rls_screen.batch.bulk_export import BulkExport, BulkOptions, bulk_export
from rls_screen.batch.bulk_manifest import ExportProblem
from rls_screen.batch.jobs import Job, JobProblem, JobStore
from rls_screen.errors import InputError
from rls_screen.fhir_client import FhirClient
from rls_screen.knowledge import Knowledge
from rls_screen.rescreen.since import SinceMarks, changed_patients
from rls_screen.settings import Settings


def job_dir(settings: Settings, job_id: str) -> Path:
    return settings.state_dir / "jobs" / job_id


def ndjson_loader(index_path: Path, directory: Path | None) -> sources.NdjsonIndex:
    fresh = not index_path.exists()
    index = sources.NdjsonIndex(index_path)
    if fresh:
        if directory is None:
            raise InputError(f"the NDJSON index {index_path} is missing and no directory was given")
        index.load(directory)
    return index


def register_panel(
    args: argparse.Namespace, store: JobStore, client: FhirClient, knowledge: Knowledge, settings: Settings
) -> tuple[Job, sources.NdjsonIndex | None, list[JobProblem]]:
    """Create the job and its patients; the job's problems are recorded in the store and returned."""
    as_of: date = args.as_of or date.today()
    created = datetime.now(UTC).replace(microsecond=0).isoformat()
    index: sources.NdjsonIndex | None = None
    if args.group:
        panel, source = sources.from_group(client, args.group), f"group:{args.group}"
    elif args.patients:
        panel, source = sources.from_file(args.patients), f"patients:{args.patients}"
    elif args.condition:
        panel, source = sources.from_condition_search(client, knowledge.terminology), "condition"
    else:
        panel, source = None, ""
    if panel is not None:
        job = store.create_job(
            created=created, source=source, as_of=as_of, dry_run=args.dry_run, fhir_base_url=client.base_url
        )
        store.add_patients(job.id, panel.ids)
        problems = [JobProblem("warning", text) for text in panel.problems]
        store.add_problems(job.id, problems)
        return job, None, problems
    export: BulkExport | None = None
    if args.bulk:
        job = store.create_job(
            created=created,
            source=f"bulk:{args.bulk}",
            as_of=as_of,
            dry_run=args.dry_run,
            fhir_base_url=client.base_url,
        )
        export = bulk_export(
            client,
            args.bulk,
            job_dir(settings, job.id) / "export",
            contract=knowledge.contract,
            as_of=as_of,
            options=BulkOptions.from_settings(settings),
        )
        index = ndjson_loader(job_dir(settings, job.id) / "index.sqlite", export.directory)
    else:
        job = store.create_job(
            created=created,
            source=f"ndjson:{Path(args.ndjson).resolve()}",
            as_of=as_of,
            dry_run=args.dry_run,
            fhir_base_url=client.base_url,
        )
        index = ndjson_loader(job_dir(settings, job.id) / "index.sqlite", Path(args.ndjson))
    if store.add_patients(job.id, index.patient_ids()) == 0:
        raise InputError("the export holds no Patient resources")
    problems = [JobProblem("warning", text) for text in index.problems]
    if export is not None:
        problems += record_export_problems(store, job, export.problems)
    store.add_problems(job.id, problems)
    return job, index, problems


def record_export_problems(store: JobStore, job: Job, problems: tuple[ExportProblem, ...]) -> list[JobProblem]:
    """What the export's error files say, where the report shows it; returns the job-level problems.

    A patient an error (or fatal) issue names is marked failed and not screened: part of their data is
    missing, and screening the rest could report a finding as absent. A patient missing from the
    Patient file is added so the report lists them. Issues that name no patient, and warnings, are
    problems of the job; an error among them makes the job end with exit code 1.
    """
    reasons: dict[str, list[str]] = {}
    job_problems: list[JobProblem] = []
    for problem in problems:
        if problem.patient_id is not None and problem.is_error:
            reasons.setdefault(problem.patient_id, []).append(problem.text)
        elif problem.patient_id is not None:
            job_problems.append(JobProblem("warning", f"bulk export, Patient/{problem.patient_id}: {problem.text}"))
        else:
            job_problems.append(JobProblem("error" if problem.is_error else "warning", f"bulk export: {problem.text}"))
    if reasons:
        store.add_patients(job.id, reasons, start=store.patient_count(job.id))
        failed = [
            (patient_id, f"bulk export: {texts[0]}" + (f" (and {len(texts) - 1} more)" if len(texts) > 1 else ""))
            for patient_id, texts in reasons.items()
        ]
        store.mark_many(job.id, (), failed)
    return job_problems


def register_since(
    args: argparse.Namespace, store: JobStore, client: FhirClient, knowledge: Knowledge, marks: SinceMarks
) -> tuple[Job, list[JobProblem]]:
    """A job of the patients changed since ``--since`` (of the panel, when one is given); its mark proposed."""
    panel = sources.from_group(client, args.group) if args.group else None
    panel = sources.from_file(args.patients) if args.patients else panel
    restriction = f"group:{args.group}" if args.group else f"patients:{args.patients}" if args.patients else "all"
    scope = f"{client.base_url} {restriction}"
    since = marks.resolve(args.since, scope)
    changed = changed_patients(client, knowledge.contract, since, clock=lambda: datetime.now(UTC))
    ids = [p for p in changed.patient_ids if panel is None or p in set(panel.ids)]
    job = store.create_job(
        created=datetime.now(UTC).replace(microsecond=0).isoformat(),
        source=f"since:{since.isoformat()}",
        as_of=args.as_of or date.today(),
        dry_run=args.dry_run,
        fhir_base_url=client.base_url,
    )
    store.add_patients(job.id, ids)
    problems = [JobProblem("warning", text) for text in (panel.problems if panel else [])]
    if changed.unlinked:
        problems.append(JobProblem("warning", f"{changed.unlinked} changed resource(s) name no patient: not screened"))
    store.add_problems(job.id, problems)
    if not args.dry_run:
        marks.propose(scope, changed.mark, job.id)
    print(f"Changed since {since.isoformat()}: {len(ids)} patient(s)")
    return job, problems
