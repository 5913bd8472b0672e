"""Runs a batch job: bounded concurrency over one pooled client, state in the job store.

One patient's failure is recorded with its reason and the batch goes on. Transient server errors
(unreachable, 5xx, 429 after the client's own retries) are retried in later rounds of the same run,
after pauses that double up to a cap, so a run rides out a short outage or a server restart; during
a pause the server is probed (``GET [base]/metadata``) and the round starts as soon as it answers.
Bad data is never retried. Results are recorded from the main thread only.

The runner claims its patients a chunk at a time (claims.py), so several runners share one job without
screening a patient twice. ``BatchOptions.stop`` (set on SIGTERM) ends the run at a checkpoint: no new
claims, the chunks in flight finish and are recorded, the chunks not started are given back.
"""

from __future__ import annotations

import gc
import logging
import math
import multiprocessing
import os
import pickle
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, ThreadPoolExecutor, as_completed, wait
from dataclasses import dataclass, field
from datetime import date, datetime

from rls_screen.assessment import assess
from rls_screen.batch.claims import DEFAULT_LEASE_S, LeaseRenewal, new_runner_id, wait_for_others
from rls_screen.batch.groups import Screened, patient_summary, screen_group
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
    "DEFAULT_LEASE_S",
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
    lease_s: float = DEFAULT_LEASE_S
    """How long this runner's claim on a chunk holds without renewal (another runner takes it over after that)."""
    stop: threading.Event = field(default_factory=threading.Event)
    """Set (on SIGTERM) to end the run at a checkpoint: the patients in flight recorded, the rest given back."""
    runner_id: str = field(default_factory=new_runner_id)
    """This runner, as the job store records who claimed and screened each patient."""
    clock: Callable[[], float] = time.time
    """Wall-clock seconds for leases (shared between hosts: keep them in sync)."""

    def __post_init__(self) -> None:
        if self.group_size < 1:
            raise InputError(f"group size must be 1 or more, not {self.group_size}")
        if self.retry_rounds < 0:
            raise InputError(f"retry rounds must be 0 or more, not {self.retry_rounds}")
        if not (math.isfinite(self.lease_s) and self.lease_s >= 1):
            raise InputError(f"the lease must be 1 second or more, not {self.lease_s}")
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


# --- offline evaluation in worker processes ---------------------------------------------------------
#
# Offline (no server: an NDJSON dry run) the work is pure CPU: the GIL would let threads use one core,
# so patients are screened in worker processes instead, each with its own reader of the patient source.

OFFLINE_CHUNK = 200
"""Patients per task sent to a worker process (amortises the inter-process round trip), and per job-store commit."""
Outcome = tuple[str, str | None, str | None]
"""(patient id, its stored result text (``jobs.result_text``) when screened, failure reason when not)."""

_worker_state: tuple[PatientLoader, ChunkLoader | None, Knowledge, date] | None = None


def offline_outcome(loader: PatientLoader, knowledge: Knowledge, as_of: date, patient_id: str) -> Outcome:
    """One patient screened offline, as stored: what worker processes and Spark tasks (``spark_tasks``) both call."""
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
    return [offline_outcome(load, knowledge, as_of, patient_id) for patient_id in patient_ids]


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


def _offline_outcomes(
    chunks: Iterator[list[str]], patients: int, job: Job, options: BatchOptions
) -> Iterator[list[Outcome]]:
    """Screen chunks of about ``patients`` patients offline, in worker processes when it pays; batches of
    outcomes, in any order."""
    loader = options.loader
    if loader is None:  # pragma: no cover - run_job only comes here with a loader
        raise RlsScreenError("no patient source")
    processes, loaders_pickle = _offline_processes(options, patients)
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


def _record(
    store: JobStore,
    job: Job,
    options: BatchOptions,
    outcomes: list[Outcome],
    progress: Progress,
    written: frozenset[str] = frozenset(),
) -> None:
    """Record a batch of outcomes in one job-store transaction, under this runner's claim; ``written``: the
    patients whose screen wrote to the FHIR server (the report's "new or changed write-back")."""
    done = [(patient_id, text, patient_id in written) for patient_id, text, _ in outcomes if text is not None]
    failed = [(patient_id, reason or "internal error") for patient_id, text, reason in outcomes if text is None]
    store.mark_many(job.id, done, failed, runner=options.runner_id, now=options.clock())
    for _, text, reason in outcomes:
        batch_patient_finished(None if text is not None else reason or "internal error")
        progress.step(failed=text is None)


def _screened_outcomes(screened: list[Screened]) -> list[Outcome]:
    return [
        (pid, result_text(summary), None)
        if summary is not None
        else (pid, None, _classify_failure(error or Exception()))
        for pid, summary, error in screened
    ]


class _Round:
    """One round of one runner: claim chunks until none is left to claim, screen them, record the outcomes."""

    def __init__(self, store: JobStore, job: Job, client: FhirClient | None, options: BatchOptions) -> None:
        self.store, self.job, self.client, self.options = store, job, client, options
        self.started = options.clock()

    def claim(self, size: int) -> list[str]:
        if self.options.stop.is_set():
            return []
        now = self.options.clock()
        return self.store.claim(
            self.job.id, self.options.runner_id, size, now=now, lease_s=self.options.lease_s, round_started=self.started
        )

    def claimable(self) -> int:
        return self.store.claimable(self.job.id, now=self.options.clock(), round_started=self.started)

    def run(self, progress: Progress) -> None:
        """Until nothing is left: claim and screen, then wait for patients other runners hold (they may come free)."""
        options = self.options
        while True:
            if self.client is None and options.loader is not None:
                self._offline(progress)
            else:
                self._online(progress)
            if not wait_for_others(self.store, self.job.id, options.runner_id, options.stop, options.clock):
                return

    def _offline(self, progress: Progress) -> None:
        chunks = iter(lambda: self.claim(OFFLINE_CHUNK), [])
        for outcomes in _offline_outcomes(chunks, self.claimable(), self.job, self.options):
            _record(self.store, self.job, self.options, outcomes, progress)

    def _online(self, progress: Progress) -> None:
        options = self.options
        # groups small enough that every worker thread has one, as long as there are patients for each
        size = max(1, min(options.group_size, -(-self.claimable() // options.concurrency)))
        in_flight: dict[Future[list[Screened]], list[str]] = {}
        with ThreadPoolExecutor(max_workers=options.concurrency, thread_name_prefix="screen") as executor:
            while True:
                while len(in_flight) < options.concurrency * 2 and (ids := self.claim(size)):
                    in_flight[executor.submit(_screen_group_traced, self.client, self.job, ids, options)] = ids
                if not in_flight:
                    return
                done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in done:
                    del in_flight[future]
                    # screen_group gives each patient's error, it does not raise
                    screened = future.result()
                    wrote = frozenset(pid for pid, summary, _ in screened if summary and summary.get("written"))
                    _record(self.store, self.job, options, _screened_outcomes(screened), progress, wrote)
                if options.stop.is_set():  # a checkpoint: the groups not started go back to the job
                    for future, ids in list(in_flight.items()):
                        if future.cancel():
                            del in_flight[future]
                            self.store.release(self.job.id, options.runner_id, ids)


def run_job(store: JobStore, job: Job, client: FhirClient | None, options: BatchOptions) -> dict[str, int]:
    """Screen every pending patient of the job (with any other runner on it); returns the final status counts.

    When ``options.stop`` is set the run ends early, at a checkpoint: what is done is recorded, this runner's
    claims are given back, and the job stays resumable (``run`` of another runner, or ``--resume``).
    """
    total = store.patient_count(job.id)
    progress = Progress(total)
    pauses = options.retry_pauses()
    renewal = LeaseRenewal(store, job.id, options.runner_id, options.lease_s, options.clock)
    try:
        with renewal:
            for round_number in range(options.retry_rounds + 1):
                if options.stop.is_set():
                    break
                current = _Round(store, job, client, options)
                waiting = current.claimable()
                if round_number:
                    if not waiting and store.held_by_others(job.id, options.runner_id, now=options.clock()) is None:
                        break
                    _pause_before(round_number, waiting, client, options, pauses[round_number - 1])
                    current = _Round(store, job, client, options)  # failures up to the end of the pause are retried
                progress.done = total - current.claimable()
                current.run(progress)
    finally:
        store.release(job.id, options.runner_id)  # whatever this runner still holds (a stop, an error)
        progress.close()
    final = store.counts(job.id)
    if not options.stop.is_set():
        store.set_job_status(job.id, "complete" if final["pending"] == 0 else "incomplete")
    return final


def _pause_before(
    round_number: int, waiting: int, client: FhirClient | None, options: BatchOptions, pause: float
) -> None:
    log.warning(
        "retrying %d patient(s) after transient errors (round %d of %d, in %g s)",
        waiting,
        round_number,
        options.retry_rounds,
        pause,
    )
    waited = time.monotonic()
    if wait_before_retry(client, pause, options.probe_every_s, stop=options.stop):
        log.info(
            "the FHIR server answers again after %.1f s: retry round %d starts now",
            time.monotonic() - waited,
            round_number,
        )
