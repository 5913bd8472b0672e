"""``rls-screen batch``: screen a whole panel, resumably, with a report.

Exit codes: 0 every patient screened; 1 some patients failed (listed in the report; the rest were
screened), or a Bulk export reported an error that names no patient (results may be incomplete);
2-4 the job could not run (bad input, configuration, FHIR server), as for every command;
143 (``STOPPED_EXIT_CODE``, 128 + SIGTERM) stopped by SIGTERM at a checkpoint: what was screened is
recorded, nothing is half-done, ``--resume JOB`` continues.

Several runners on one job: ``rls-screen batch --resume JOB`` while the job runs (on this host or
another sharing ``RLS_SCREEN_STATE_URL``) joins it; the runners share the patients (batch/claims.py).
"""

from __future__ import annotations

import argparse
import math
import sys
from datetime import UTC, date, datetime
from pathlib import Path

from rls_screen.batch import sources
from rls_screen.batch.claims import stop_on_sigterm
from rls_screen.batch.jobs import Job, JobProblem, JobStore, job_store_target
from rls_screen.batch.report import write_report
from rls_screen.batch.runner import (
    DEFAULT_GROUP_SIZE,
    DEFAULT_LEASE_S,
    DEFAULT_RETRY_PAUSE_MAX_S,
    DEFAULT_RETRY_PAUSE_S,
    DEFAULT_RETRY_ROUNDS,
    BatchOptions,
    run_job,
)
from rls_screen.batch.worklist_page import check_link_template
from rls_screen.cli.batch_panel import job_dir, ndjson_loader, register_panel, register_since
from rls_screen.cli.evaluate import parse_as_of
from rls_screen.errors import InputError
from rls_screen.fhir_client import FhirClient
from rls_screen.knowledge import Knowledge, load_knowledge
from rls_screen.observability.logs import bind_job_id
from rls_screen.observability.metrics import push_batch_metrics
from rls_screen.rescreen.queue import rescreen_state_target
from rls_screen.rescreen.settings import get_rescreen_settings
from rls_screen.rescreen.since import SinceMarks, parse_since
from rls_screen.scopes import scopes_for
from rls_screen.settings import Settings, get_settings

STOPPED_EXIT_CODE = 143
"""Stopped by SIGTERM at a checkpoint, resumable (128 + 15, as a shell reports a process SIGTERM ended)."""


def execute_job(
    store: JobStore,
    job: Job,
    client: FhirClient,
    knowledge: Knowledge,
    index: sources.NdjsonIndex | None,
    *,
    concurrency: int,
    report_dir: Path,
    retry_rounds: int = DEFAULT_RETRY_ROUNDS,
    retry_pause_s: float = DEFAULT_RETRY_PAUSE_S,
    group_size: int = DEFAULT_GROUP_SIZE,
    lease_s: float = DEFAULT_LEASE_S,
    job_db: Path | None = None,
) -> int:
    """Run a registered job to the end (or to a checkpoint on SIGTERM), print the summary and report paths;
    returns the exit code."""
    link_template = check_link_template(get_settings().patient_link_template)  # before the run, not after it
    resume = f"rls-screen batch --resume {job.id}" + (f" --job-db {job_db}" if job_db is not None else "")
    print(f"Job {job.id}: {store.patient_count(job.id)} patients (resume with: {resume})")
    if store.held_by_others(job.id, "", now=datetime.now(UTC).timestamp()) is not None:
        print("Another runner is at work on this job: the patients are shared between the runners")
    bind_job_id(job.id)  # every log event of this process carries the job id
    options = BatchOptions(
        knowledge=knowledge,
        recorded=datetime.now(UTC).replace(microsecond=0),
        concurrency=concurrency,
        retry_rounds=retry_rounds,
        retry_pause_s=retry_pause_s,
        group_size=group_size,
        lease_s=lease_s,
        loader=index.patient_data if index is not None else None,
        chunk_loader=index.loader_for if index is not None else None,
    )
    offline = job.dry_run and index is not None
    with stop_on_sigterm(options.stop):
        counts = run_job(store, job, None if offline else client, options)
    push_batch_metrics()
    if options.stop.is_set():
        done = store.patient_count(job.id) - counts["pending"]
        print(
            f"rls-screen batch: stopped on SIGTERM at a checkpoint, {done} of {store.patient_count(job.id)} "
            f"patients recorded; resume with: {resume}",
            file=sys.stderr,
        )
        return STOPPED_EXIT_CODE
    summary, html_path, csv_path = write_report(store, store.job(job.id), report_dir, knowledge, link_template)
    print(summary.text())
    print(f"Report: {html_path}\nPer-patient CSV: {csv_path}")
    incomplete = any(problem.severity == "error" for problem in store.problems(job.id))
    return 0 if counts["failed"] == 0 and counts["pending"] == 0 and not incomplete else 1


def _run_spark(args: argparse.Namespace, store: JobStore, knowledge: Knowledge, settings: Settings) -> int:
    """``--engine spark``: the NDJSON files screened by a Spark job (docs/spark.md), reported as every batch is."""
    from rls_screen.batch import spark_engine

    if not args.ndjson or args.resume or args.since is not None:
        raise InputError("--engine spark reads --ndjson PATH (a new job; not with --resume or --since)")
    if not args.dry_run:
        raise InputError("--engine spark does not write back yet (docs/spark.md): add --dry-run")
    link_template = check_link_template(get_settings().patient_link_template)
    client = FhirClient.from_settings(settings, args.fhir_url, scopes=scopes_for(write=False, group=False))
    client.close()  # never called: only its base URL names the panel, as on the single-machine path
    job = store.create_job(
        created=datetime.now(UTC).replace(microsecond=0).isoformat(),
        source=spark_engine.job_source(args.ndjson),
        as_of=args.as_of or date.today(),
        dry_run=True,
        fhir_base_url=client.base_url,
    )
    print(f"Job {job.id}: screening {args.ndjson} with Spark")
    bind_job_id(job.id)
    output = args.spark_output or spark_engine.location_uri(str(job_dir(settings, job.id) / "spark"))
    run = spark_engine.run_spark_job(store, job, args.ndjson, knowledge, output=output, master=args.spark_master)
    for problem in run.problems[:20]:
        print(f"{problem.severity}: {problem.text}")
    if len(run.problems) > 20:
        print(f"... and {len(run.problems) - 20} more problems (listed in the report)")
    push_batch_metrics()
    summary, html_path, csv_path = write_report(
        store, store.job(job.id), args.report_dir or settings.state_dir / "reports", knowledge, link_template
    )
    print(summary.text())
    print(f"Report: {html_path}\nPer-patient CSV: {csv_path}\nPer-patient Parquet: {run.patients_parquet}")
    return 0 if run.counts["failed"] == 0 and run.counts["pending"] == 0 else 1


def run(args: argparse.Namespace) -> int:
    settings = get_settings()
    knowledge = load_knowledge(settings.conceptmap_dir)
    store = JobStore(job_store_target(settings, args.job_db))
    try:
        marks = SinceMarks(rescreen_state_target(get_rescreen_settings(), settings))
    except BaseException:
        store.close()
        raise
    try:
        _check_sources(args)
        if args.engine == "spark":
            return _run_spark(args, store, knowledge, settings)
        if args.resume:
            job = store.job(args.resume)
            scopes = scopes_for(write=not job.dry_run, group=job.source.startswith(("group:", "bulk:")))
            client = FhirClient.from_settings(settings, args.fhir_url or job.fhir_base_url, scopes=scopes)
            index = None
            if job.source.startswith(("ndjson:", "bulk:")):
                directory = Path(job.source.split(":", 1)[1]) if job.source.startswith("ndjson:") else None
                index = ndjson_loader(job_dir(settings, job.id) / "index.sqlite", directory)
            problems: list[JobProblem] = []
        elif args.since is not None:
            scopes = scopes_for(write=not args.dry_run, group=bool(args.group))
            client = FhirClient.from_settings(settings, args.fhir_url, scopes=scopes)
            index = None
            job, problems = register_since(args, store, client, knowledge, marks)
        else:
            scopes = scopes_for(write=not args.dry_run, group=bool(args.group or args.bulk))
            client = FhirClient.from_settings(settings, args.fhir_url, scopes=scopes)
            job, index, problems = register_panel(args, store, client, knowledge, settings)
        for problem in problems[:20]:
            print(f"{problem.severity}: {problem.text}")
        if len(problems) > 20:
            print(f"... and {len(problems) - 20} more problems (listed in the report)")
        code = execute_job(
            store,
            job,
            client,
            knowledge,
            index,
            concurrency=args.concurrency,
            report_dir=args.report_dir or settings.state_dir / "reports",
            retry_rounds=args.retry_rounds,
            retry_pause_s=args.retry_pause,
            group_size=args.group_size,
            lease_s=args.lease,
            job_db=args.job_db,
        )
        client.close()
        if index is not None:
            index.close()
        if code == 0 and (mark := marks.job_finished(job.id)) is not None:
            print(f"Next 'batch --since last' starts at {mark.isoformat()}")
        return code
    finally:
        store.close()
        marks.close()


def _check_sources(args: argparse.Namespace) -> None:
    """One source; ``--since`` alone (the whole server) or with --group or --patients (that panel)."""
    given = [name for name in ("group", "patients", "condition", "bulk", "ndjson", "resume") if getattr(args, name)]
    if args.since is not None and set(given) - {"group", "patients"}:
        raise InputError("--since goes alone or with --group or --patients")
    if args.since is None and not given:
        raise InputError("give one of --group, --patients, --condition, --bulk, --ndjson, --resume or --since")


def since_arg(text: str) -> datetime | str:
    try:
        return parse_since(text)
    except InputError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from error
    if not 1 <= value <= 64:
        raise argparse.ArgumentTypeError("must be between 1 and 64")
    return value


MAX_RETRY_ROUNDS = 20
MAX_RETRY_PAUSE_S = 600.0


def retry_rounds(text: str) -> int:
    try:
        value = int(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from error
    if not 0 <= value <= MAX_RETRY_ROUNDS:
        raise argparse.ArgumentTypeError(f"must be between 0 and {MAX_RETRY_ROUNDS}")
    return value


def retry_pause(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"'{text}' is not a number of seconds")
    if not 0 <= value <= MAX_RETRY_PAUSE_S:
        raise argparse.ArgumentTypeError(f"must be between 0 and {MAX_RETRY_PAUSE_S:g} seconds")
    return value


def lease_seconds(text: str) -> float:
    value = retry_pause(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 second or more")
    return value


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "batch",
        help="screen a patient panel (resumable) and write a report",
        description="Screen every patient of a panel, write back per patient, and report. "
        "Exit 0 when every patient was screened, 1 when some failed (see the report).",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--group", metavar="Group/ID", help="the members of a FHIR Group")
    source.add_argument("--patients", type=Path, metavar="FILE", help="a file with one patient id per line")
    source.add_argument("--condition", action="store_true", help="every patient with an active RLS Condition")
    source.add_argument(
        "--bulk",
        metavar="Group/ID",
        help="FHIR Bulk Data $export of a Group (the data contract only), then screen the files",
    )
    source.add_argument(
        "--ndjson",
        metavar="DIR",
        help="already-exported NDJSON files (with --engine spark: any Hadoop path, file://, hdfs://, s3a://)",
    )
    source.add_argument("--resume", metavar="JOB_ID", help="continue a job that was stopped")
    parser.add_argument(
        "--since",
        type=since_arg,
        metavar="TIME|last",
        help="only the patients with a result (or Condition, Procedure) written since TIME (ISO 8601, e.g. "
        "2026-12-01T08:00:00Z), or since the last --since run ('last'); alone: every such patient on the server, "
        "with --group or --patients: those of the panel (docs/subscriptions.md)",
    )
    parser.add_argument("--fhir-url", help="FHIR base URL (default: FHIR_BASE_URL)")
    parser.add_argument("--as-of", type=parse_as_of, help="evaluation date YYYY-MM-DD (default: today)")
    parser.add_argument("--dry-run", action="store_true", help="write nothing to the server")
    parser.add_argument(
        "--concurrency", type=positive_int, default=4, help="groups of patients screened at once (default 4)"
    )
    parser.add_argument(
        "--group-size",
        type=positive_int,
        default=DEFAULT_GROUP_SIZE,
        metavar="N",
        help="patients read with one request and written with one transaction against the server "
        f"(default {DEFAULT_GROUP_SIZE}; 1: one by one)",
    )
    parser.add_argument(
        "--retry-rounds",
        type=retry_rounds,
        default=DEFAULT_RETRY_ROUNDS,
        metavar="N",
        help="rounds in which patients that failed on transient server errors (unreachable, 5xx, 429) "
        f"are screened again before the job ends (default {DEFAULT_RETRY_ROUNDS}; 0: none, use --resume)",
    )
    parser.add_argument(
        "--retry-pause",
        type=retry_pause,
        default=DEFAULT_RETRY_PAUSE_S,
        metavar="SECONDS",
        help=f"pause before the first retry round, doubled for each next one up to {DEFAULT_RETRY_PAUSE_MAX_S:g} s; "
        "a round starts early when the server answers again "
        f"(default {DEFAULT_RETRY_PAUSE_S:g}: with the default rounds, about 2 minutes in all)",
    )
    parser.add_argument(
        "--engine",
        choices=("local", "spark"),
        default="local",
        help="who screens --ndjson files: this machine (default) or an Apache Spark job (the 'spark' extra; "
        "docs/spark.md); spark needs --dry-run for now",
    )
    parser.add_argument("--spark-master", metavar="URL", help="Spark master (default: spark-submit's, else local[*])")
    parser.add_argument(
        "--spark-output",
        metavar="URI",
        help="where the Spark job writes patients.parquet (default: the job's folder under $RLS_SCREEN_STATE_DIR)",
    )
    parser.add_argument(
        "--lease",
        type=lease_seconds,
        default=DEFAULT_LEASE_S,
        metavar="SECONDS",
        help="how long this runner's claim on a chunk of patients holds unrenewed: another runner on the job "
        f"takes over the patients of a runner killed this long ago (default {DEFAULT_LEASE_S:g})",
    )
    parser.add_argument(
        "--job-db",
        type=Path,
        help="job database file (default: RLS_SCREEN_STATE_URL, else $RLS_SCREEN_STATE_DIR/jobs.sqlite)",
    )
    parser.add_argument("--report-dir", type=Path, help="where reports go (default: $RLS_SCREEN_STATE_DIR/reports)")
    parser.set_defaults(run=run)
