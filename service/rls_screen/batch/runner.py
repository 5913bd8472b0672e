"""Runs a batch job: bounded concurrency over one pooled client, state in the job store.

One patient's failure is recorded with its reason and the batch goes on. Transient server errors
(unreachable, 5xx, 429 after the client's own retries) are retried in later rounds of the same run,
after pauses that double up to a cap, so a run rides out a short outage or a server restart; during
a pause the server is probed (``GET [base]/metadata``) and the round starts as soon as it answers.
Bad data is never retried. Results are recorded from the main thread only (SQLite has one writer).
"""

from __future__ import annotations

import gc
import logging
import math
import multiprocessing
import os
import pickle
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, ThreadPoolExecutor, as_completed, wait
from dataclasses import dataclass
from datetime import date, datetime
from typing import TypeVar

from rls_screen.assessment import assess
from rls_screen.batch.groups import Screened, groups_of, patient_summary, screen_group
from rls_screen.batch.jobs import Job, JobStore, result_text
from rls_screen.batch.rounds import (
    DEFAULT_PROBE_EVERY_S,
    DEFAULT_RETRY_PAUSE_MAX_S,
    DEFAULT_RETRY_PAUSE_S,
    DEFAULT_RETRY_ROUNDS,
    retry_pauses,
    server_answers,
    wait_before_retry,
)
from rls_screen.errors import (
    FhirError,
    FhirNotFoundError,
    FhirRedirectError,
    FhirRequestError,
    FhirUnavailableError,
    InputError,
    RlsScreenError,
    ServerNotAllowedError,
)
from rls_screen.fhir_client import FhirClient
from rls_screen.knowledge import Knowledge
from rls_screen.observability import tracing
from rls_screen.observability.metrics import batch_patient_finished
from rls_screen.observability.progress import Progress
from rls_screen.patient_data import PatientData
from rls_screen.screening import ScreenResult

__all__ = [
    "DEFAULT_GROUP_SIZE",
    "DEFAULT_PROBE_EVERY_S",
    "DEFAULT_RETRY_PAUSE_MAX_S",
    "DEFAULT_RETRY_PAUSE_S",
    "DEFAULT_RETRY_ROUNDS",
    "BatchOptions",
    "Progress",
    "patient_summary",
    "retry_pauses",
    "run_job",
    "server_answers",
    "wait_before_retry",
]

log = logging.getLogger(__name__)
PatientLoader = Callable[[str], PatientData]
ChunkLoader = Callable[[list[str]], PatientLoader]
"""Patient ids -> a loader for those patients (e.g. ``NdjsonIndex.loader_for``: one query for the batch)."""


DEFAULT_GROUP_SIZE = 25
"""Patients per group read and transaction: about 25 x 6 entries per transaction, and a group's Observations
(about 25 each in the synthetic panels) in one page of the server's 1000 (bench/writeback_bench.py)."""


@dataclass
class BatchOptions:
    knowledge: Knowledge
    recorded: datetime
    concurrency: int = 4
    retry_rounds: int = DEFAULT_RETRY_ROUNDS
    """Rounds after the first for the patients that failed on transient server errors (0: none)."""
    retry_pause_s: float = DEFAULT_RETRY_PAUSE_S
    """Pause before the first retry round; each later pause doubles, up to ``retry_pause_max_s``."""
    retry_pause_max_s: float = DEFAULT_RETRY_PAUSE_MAX_S
    """The longest pause (a first pause above it stays as it is)."""
    probe_every_s: float = DEFAULT_PROBE_EVERY_S
    """During a pause, ask the server this often whether it answers (0: no probe, sleep the whole pause)."""
    loader: PatientLoader | None = None
    """Where patient data comes from; None reads it from the FHIR server (search path)."""
    chunk_loader: ChunkLoader | None = None
    """Optional, offline: a loader for a batch of patients that gives what ``loader`` gives, looked up together."""
    group_size: int = DEFAULT_GROUP_SIZE
    """Patients read and written together against the server (one batch read, one transaction); 1: one by one."""

    def __post_init__(self) -> None:
        if self.group_size < 1:
            raise InputError(f"group size must be 1 or more, not {self.group_size}")
        if self.retry_rounds < 0:
            raise InputError(f"retry rounds must be 0 or more, not {self.retry_rounds}")
        for name in ("retry_pause_s", "retry_pause_max_s", "probe_every_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise InputError(f"{name} must be a number of seconds, 0 or more, not {value}")

    def retry_pauses(self) -> tuple[float, ...]:
        """The pause before each retry round, in seconds."""
        return retry_pauses(self.retry_pause_s, self.retry_rounds, self.retry_pause_max_s)


def _screen_group_traced(client: FhirClient | None, job: Job, ids: list[str], options: BatchOptions) -> list[Screened]:
    with tracing.span("batch.screen_group", {"batch.job_id": job.id, "batch.group_size": len(ids)}):
        return screen_group(client, job, ids, options)


def _classify_failure(error: BaseException) -> str:
    if isinstance(error, FhirUnavailableError):
        return f"transient: {error}"
    if isinstance(error, FhirNotFoundError):
        return "not found: patient not found on the FHIR server"
    # Neither is transient (asking again gets the same answer), nor did the server reject anything.
    if isinstance(error, FhirRedirectError):
        return f"redirected: {error}"
    if isinstance(error, (FhirRequestError, ServerNotAllowedError)):
        return f"not sent: {error}"
    if isinstance(error, FhirError):
        return f"rejected by the server: {error}"
    if isinstance(error, RlsScreenError):
        return f"bad data: {error}"
    # Unexpected: keep the batch going and say what kind of error, without data that may hold PHI.
    log.error("internal error screening a patient: %s", type(error).__name__)
    return f"internal error ({type(error).__name__})"


Item = TypeVar("Item")
Result = TypeVar("Result")


def _bounded(
    executor: ThreadPoolExecutor, items: list[Item], work: Callable[[Item], Result], limit: int
) -> Iterator[tuple[Item, Future[Result]]]:
    """Submit at most ``limit`` tasks at a time, yielding each as it completes (memory stays flat)."""
    pending: dict[Future[Result], Item] = {}
    queue = iter(items)
    while True:
        while len(pending) < limit:
            item = next(queue, None)
            if item is None:
                break
            pending[executor.submit(work, item)] = item
        if not pending:
            return
        done, _ = wait(pending, return_when=FIRST_COMPLETED)
        for future in done:
            yield pending.pop(future), future


# --- offline evaluation in worker processes ---------------------------------------------------------
#
# Offline (no server: an NDJSON dry run) the work is pure CPU: the GIL would let threads use one core,
# so patients are screened in worker processes instead, each with its own reader of the patient source.

OFFLINE_CHUNK = 200
"""Patients per task sent to a worker process (amortises the inter-process round trip), and per job-store commit."""
Outcome = tuple[str, str | None, str | None]
"""(patient id, its stored result text (``jobs.result_text``) when screened, failure reason when not)."""

_worker_state: tuple[PatientLoader, ChunkLoader | None, Knowledge, date] | None = None


def _offline_one(loader: PatientLoader, knowledge: Knowledge, as_of: date, patient_id: str) -> Outcome:
    try:
        assessment = assess(loader(patient_id), knowledge=knowledge, as_of=as_of)
        summary = patient_summary(assessment, ScreenResult(assessment, None, False, None))
    except Exception as error:
        return patient_id, None, _classify_failure(error)
    summary["written"] = False
    return patient_id, result_text(summary), None


def _offline_batch(
    loader: PatientLoader, chunk_loader: ChunkLoader | None, knowledge: Knowledge, as_of: date, patient_ids: list[str]
) -> list[Outcome]:
    """Screen a batch of patients; with a chunk loader their data is looked up together (same data, fewer queries)."""
    load = loader
    if chunk_loader is not None:
        try:
            load = chunk_loader(patient_ids)
        except Exception:  # e.g. the index cannot be queried: each patient then fails (or not) on its own
            load = loader
    return [_offline_one(load, knowledge, as_of, patient_id) for patient_id in patient_ids]


def _offline_worker_init(loaders_pickle: bytes, knowledge: Knowledge, as_of: date) -> None:
    global _worker_state
    loader, chunk_loader = pickle.loads(loaders_pickle)  # noqa: S301 - our own pickle, same program
    _worker_state = (loader, chunk_loader, knowledge, as_of)
    # What the worker inherited or loaded (modules, the rule set, the terminology) lives as long as the
    # worker: out of the collector's reach, the collections each patient's parsed lines trigger stay small
    # (~5 % of a patient's CPU on the NDJSON path, docs/benchmarks.md)
    gc.freeze()


def _offline_chunk(patient_ids: list[str]) -> list[Outcome]:
    if _worker_state is None:  # pragma: no cover - the pool's initializer always runs first
        raise RuntimeError("offline worker used before its initializer ran")
    loader, chunk_loader, knowledge, as_of = _worker_state
    return _offline_batch(loader, chunk_loader, knowledge, as_of, patient_ids)


def _offline_processes(options: BatchOptions, patients: int) -> tuple[int, bytes | None]:
    """How many worker processes to use, and the pickled loaders they reopen (None: stay in-process)."""
    processes = min(options.concurrency, os.cpu_count() or 1, -(-patients // OFFLINE_CHUNK))
    if processes < 2 or options.loader is None:
        return 1, None
    try:
        # one pickle: loaders bound to the same index reopen it once in each worker
        return processes, pickle.dumps((options.loader, options.chunk_loader))
    except (pickle.PicklingError, TypeError, AttributeError):
        return 1, None  # a loader that cannot travel (a closure, a live connection): evaluate in-process


def _offline_outcomes(ids: list[str], job: Job, options: BatchOptions) -> Iterator[list[Outcome]]:
    """Screen patients offline, in worker processes when it pays; batches of outcomes, in any order."""
    loader = options.loader
    if loader is None:  # pragma: no cover - run_job only comes here with a loader
        raise RlsScreenError("no patient source")
    processes, loaders_pickle = _offline_processes(options, len(ids))
    chunks = (ids[i : i + OFFLINE_CHUNK] for i in range(0, len(ids), OFFLINE_CHUNK))
    if loaders_pickle is None:
        for chunk in chunks:
            yield _offline_batch(loader, options.chunk_loader, options.knowledge, job.as_of, chunk)
        return
    context = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
    initargs = (loaders_pickle, options.knowledge, job.as_of)
    # ProcessPoolExecutor, not multiprocessing.Pool: a worker that dies raises BrokenProcessPool (the job stays
    # resumable) instead of hanging the batch; at most two chunks per worker in flight keep memory flat.
    with ProcessPoolExecutor(
        processes, mp_context=context, initializer=_offline_worker_init, initargs=initargs
    ) as pool:
        in_flight: set[Future[list[Outcome]]] = set()
        for chunk in chunks:
            in_flight.add(pool.submit(_offline_chunk, chunk))
            if len(in_flight) >= 2 * processes:
                done, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in done:
                    yield future.result()
        for future in as_completed(in_flight):
            yield future.result()


def _record_offline(store: JobStore, job: Job, outcomes: list[Outcome], progress: Progress) -> None:
    """Record a batch of outcomes in one job-store transaction."""
    done = [(patient_id, text, False) for patient_id, text, _ in outcomes if text is not None]
    failed = [(patient_id, reason or "internal error") for patient_id, text, reason in outcomes if text is None]
    store.mark_many(job.id, done, failed)
    for _, text, reason in outcomes:
        batch_patient_finished(None if text is not None else reason or "internal error")
        progress.step(failed=text is None)


def run_job(store: JobStore, job: Job, client: FhirClient | None, options: BatchOptions) -> dict[str, int]:
    """Screen every pending patient of the job; returns the final status counts."""
    total = store.patient_count(job.id)
    counts = store.counts(job.id)
    progress = Progress(total)
    progress.done = counts["done"]
    pauses = options.retry_pauses()
    for round_number in range(options.retry_rounds + 1):
        ids = store.pending(job.id)
        if not ids:
            break
        if round_number:
            pause = pauses[round_number - 1]
            log.warning(
                "retrying %d patient(s) after transient errors (round %d of %d, in %g s)",
                len(ids),
                round_number,
                options.retry_rounds,
                pause,
            )
            waited = time.monotonic()
            if wait_before_retry(client, pause, options.probe_every_s):
                log.info(
                    "the FHIR server answers again after %.1f s: retry round %d starts now",
                    time.monotonic() - waited,
                    round_number,
                )
            progress.done -= len(ids)
        if client is None and options.loader is not None:
            for outcomes in _offline_outcomes(ids, job, options):
                _record_offline(store, job, outcomes, progress)
            continue
        with ThreadPoolExecutor(max_workers=options.concurrency, thread_name_prefix="screen") as executor:
            work = lambda group: _screen_group_traced(client, job, group, options)  # noqa: E731
            for _, future in _bounded(executor, groups_of(ids, options), work, options.concurrency * 2):
                screened = future.result()  # screen_group gives each patient's error, it does not raise
                done = [
                    (pid, result_text(summary), bool(summary.get("written"))) for pid, summary, _ in screened if summary
                ]
                failed = [
                    (pid, _classify_failure(error)) for pid, summary, error in screened if summary is None and error
                ]
                store.mark_many(job.id, done, failed)
                for _, summary, error in screened:
                    batch_patient_finished(None if summary is not None else _classify_failure(error or Exception()))
                    progress.step(failed=summary is None)
    progress.close()
    final = store.counts(job.id)
    store.set_job_status(job.id, "complete" if final["pending"] == 0 else "incomplete")
    return final
