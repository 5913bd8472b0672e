"""The job store: every batch job and each patient's state in it, in the state store (rls_screen.state).

A patient is ``pending`` until screened, then ``done`` or ``failed`` (with the reason). Problems of
the job as a whole (input lines skipped, NDJSON lines unreadable, errors a Bulk export reported
without naming a patient) are kept beside the patients, so the report of a resumed job lists them. A killed job
resumes from the same store: ``done`` patients are never screened again, and because write-back is
idempotent on the server side (conditional creates/updates), a patient screened but not yet marked
done when the process died writes nothing new when screened again. The store holds patient ids and
results, never names or tokens.

Several runners on one job (``rls-screen batch --resume JOB`` while it runs, on this host or another
sharing the store): a runner *claims* a chunk of patients (``claim``: ``claimed_by``, ``lease_until``),
renews its lease while it works (``renew``), and records each outcome only while the claim is its own
(``mark_many``), which ends the claim; ``screened_by`` keeps who did. A runner that dies (kill -9) stops
renewing, and once its lease runs out another runner claims the patients again. Leases are wall-clock
seconds of the runners' hosts, so hosts sharing a job keep their clocks in sync (NTP) well within a lease.

Runs of one panel (``panel_run``): each report written records the job under its panel's identity
(``panel_key``: FHIR server and source) with the panel's counts, so the next run of the same panel
finds the previous job (whose per-patient results the ``patient`` table already holds) and the
trend of counts across runs. It adds counts only, no patient data.

Where: ``--job-db FILE`` when given, else ``RLS_SCREEN_STATE_URL``, else ``<state_dir>/jobs.sqlite``
(``job_store_target``). Schema: component ``batch-jobs`` (``MIGRATIONS``, ``adopt_batch_jobs``).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Literal

from rls_screen.batch.job_schema import COMPONENT, MIGRATIONS, adopt_batch_jobs
from rls_screen.errors import InputError
from rls_screen.settings import Settings
from rls_screen.state import StateTarget, migrate, open_database, sqlite_target, state_target

__all__ = [
    "COMPONENT",
    "MIGRATIONS",
    "Job",
    "JobProblem",
    "JobStore",
    "PanelRun",
    "PatientRow",
    "adopt_batch_jobs",
    "job_store_target",
    "panel_key",
    "result_text",
]

REASON_CHARS = 500

# An outcome is recorded only by the runner whose claim it is (``:runner``; '' for a patient no runner claimed,
# e.g. one a Bulk export's error file names): a runner whose lease ran out and was claimed again leaves it to
# the new claim, so no patient is recorded twice.
_MARK_DONE = (
    "UPDATE patient SET status = 'done', attempts = attempts + 1, reason = NULL, result = :result, "
    "written = :written, claimed_by = NULL, lease_until = NULL, screened_by = :screened_by, finished_at = :now "
    "WHERE job_id = :job AND patient_id = :patient AND COALESCE(claimed_by, '') = :runner"
)
_MARK_FAILED = (
    "UPDATE patient SET status = 'failed', attempts = attempts + 1, reason = :reason, claimed_by = NULL, "
    "lease_until = NULL, screened_by = :screened_by, finished_at = :now "
    "WHERE job_id = :job AND patient_id = :patient AND COALESCE(claimed_by, '') = :runner"
)
_FREE = "(claimed_by IS NULL OR lease_until < :now)"
_RETRYABLE = "status = 'failed' AND reason LIKE 'transient:%' AND COALESCE(finished_at, 0) < :round_started"
_CLAIMABLE = f"(status = 'pending' OR ({_RETRYABLE}))"


def result_text(result: dict[str, Any]) -> str:
    """How a patient's result is stored (compact JSON); worker processes call it so the main process need not."""
    return json.dumps(result, separators=(",", ":"))


def job_store_target(settings: Settings, job_db: Path | None = None) -> StateTarget:
    """``--job-db`` when given (one file, asked for by name), else ``RLS_SCREEN_STATE_URL``, else
    ``<state_dir>/jobs.sqlite`` (one host, as before the shared store)."""
    if job_db is not None:
        return sqlite_target(job_db)
    return state_target(settings.state_url_text(), settings.state_dir / "jobs.sqlite")


@dataclass(frozen=True)
class Job:
    id: str
    created: str
    source: str
    as_of: date
    dry_run: bool
    fhir_base_url: str
    status: str


def panel_key(job: Job) -> str:
    """A panel's stable identity across runs: the FHIR server and the source (``group:Group/x``,
    ``patients:FILE``, ``ndjson:DIR``, ``bulk:Group/x``, ``condition``)."""
    return f"{job.fhir_base_url.rstrip('/')} {job.source}"


@dataclass(frozen=True)
class PanelRun:
    """One run of a panel, as the trend shows it: the job and the panel's counts then."""

    job: Job
    counts: dict[str, Any]


@dataclass(frozen=True)
class JobProblem:
    """A problem of the job as a whole, for the report: ``error`` when results may be incomplete
    (the job then ends with exit code 1), ``warning`` when something was skipped."""

    severity: Literal["error", "warning"]
    text: str


@dataclass(frozen=True)
class PatientRow:
    patient_id: str
    status: str
    attempts: int
    reason: str | None
    result: dict[str, Any] | None
    written: bool
    screened_by: str | None = None
    """The runner that recorded the outcome (None: recorded by no runner, or before runners were recorded)."""


def _job(row: tuple[Any, ...]) -> Job:
    return Job(row[0], row[1], row[2], date.fromisoformat(row[3]), bool(row[4]), row[5], row[6])


class JobStore:
    """The jobs in one state database (an SQLite file or PostgreSQL), safe to share between threads and runners."""

    def __init__(self, where: Path | StateTarget) -> None:
        self.target = sqlite_target(where) if isinstance(where, Path) else where
        self._db = open_database(self.target)
        try:
            migrate(self._db, COMPONENT, MIGRATIONS, adopt=adopt_batch_jobs)
        except BaseException:
            self._db.close()
            raise

    def close(self) -> None:
        self._db.close()

    def create_job(self, *, created: str, source: str, as_of: date, dry_run: bool, fhir_base_url: str) -> Job:
        job = Job(f"job-{uuid.uuid4().hex[:12]}", created, source, as_of, dry_run, fhir_base_url, "running")
        with self._db.transaction() as tx:
            # seq: creation order for listing (two hosts creating jobs in the same instant may share one; the id
            # breaks the tie). Inside the transaction SQLite holds its write lock, so there it is unique.
            tx.execute(
                "INSERT INTO job (id, created, source, as_of, dry_run, fhir_base_url, status, seq) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, "
                "(SELECT COALESCE(MAX(seq), 0) + 1 FROM job))",
                (job.id, job.created, job.source, job.as_of.isoformat(), int(dry_run), fhir_base_url, job.status),
            )
        return job

    def job(self, job_id: str) -> Job:
        row = self._db.execute(
            "SELECT id, created, source, as_of, dry_run, fhir_base_url, status FROM job WHERE id = ?", (job_id,)
        ).one()
        if row is None:
            raise InputError(f"no job {job_id} in {self.target.described()}")
        return _job(row)

    def job_ids(self) -> list[str]:
        """Every job's id, oldest first."""
        return [row[0] for row in self._db.execute("SELECT id FROM job ORDER BY seq, id").rows]

    def set_job_status(self, job_id: str, status: str) -> None:
        self._db.execute("UPDATE job SET status = ? WHERE id = ?", (status, job_id))

    def add_patients(self, job_id: str, patient_ids: Iterable[str], start: int = 0) -> int:
        """Register patients as pending (duplicates ignored); returns how many were new."""
        rows = [(job_id, position, patient_id) for position, patient_id in enumerate(patient_ids, start=start)]
        count = "SELECT COUNT(*) FROM patient WHERE job_id = ?"
        with self._db.transaction() as tx:  # counted before and after: executemany gives no row count
            before = int(tx.execute(count, (job_id,)).scalar())
            if rows:
                tx.executemany(
                    "INSERT INTO patient (job_id, position, patient_id, status) VALUES (?, ?, ?, 'pending') "
                    "ON CONFLICT (job_id, patient_id) DO NOTHING",
                    rows,
                )
            return int(tx.execute(count, (job_id,)).scalar()) - before

    def pending(self, job_id: str, *, retry_failed_transient: bool = True) -> list[str]:
        """The patients not screened yet (and those that failed on a transient error), claimed or not."""
        rows = self._db.execute(
            "SELECT patient_id FROM patient WHERE job_id = ? AND (status = 'pending' "
            "OR (? = 1 AND status = 'failed' AND reason LIKE 'transient:%')) ORDER BY position",
            (job_id, int(retry_failed_transient)),
        ).rows
        return [row[0] for row in rows]

    # --- claims: several runners on one job --------------------------------------------------------------

    def claim(
        self, job_id: str, runner: str, limit: int, *, now: float, lease_s: float, round_started: float
    ) -> list[str]:
        """Up to ``limit`` patients for ``runner``, in the job's order, leased until ``now + lease_s``.

        Pending patients first, then those that failed on a transient error before ``round_started`` (a retry
        round takes the failures of earlier rounds, not its own). A patient another runner holds is skipped
        until its lease runs out.
        """
        claimed: list[tuple[int, str]] = []
        params = {"job": job_id, "runner": runner, "now": now, "until": now + lease_s, "round_started": round_started}
        for which in ("status = 'pending'", _RETRYABLE):
            if len(claimed) >= limit:
                break
            claimed += self._claim_where(which, {**params, "limit": limit - len(claimed)})
        return [patient_id for _, patient_id in sorted(claimed)]

    def _claim_where(self, which: str, params: dict[str, Any]) -> list[tuple[int, str]]:
        # PostgreSQL: READ COMMITTED, so the candidate rows are locked as they are picked, and rows another
        # runner is picking right now are skipped rather than waited for (FOR UPDATE SKIP LOCKED). SQLite has
        # no row locks: BEGIN IMMEDIATE (transaction()) makes the pick-and-update one writer's at a time.
        lock = " FOR UPDATE SKIP LOCKED" if self._db.dialect == "postgresql" else ""
        pick = " ".join(
            ("SELECT position, patient_id FROM patient WHERE job_id = :job AND", which, "AND", _FREE),
        )
        with self._db.transaction() as tx:
            rows = tx.execute(f"{pick} ORDER BY position LIMIT :limit{lock}", params).rows
            if rows:  # one statement for the chunk (at most a few hundred parameters)
                names = {f"p{n}": patient_id for n, (_, patient_id) in enumerate(rows)}
                placeholders = ", ".join(f":{name}" for name in names)
                update = "UPDATE patient SET claimed_by = :runner, lease_until = :until WHERE job_id = :job AND"
                tx.execute(" ".join((update, "patient_id IN (", placeholders, ")")), {**params, **names})
        return [(int(position), patient_id) for position, patient_id in rows]

    def renew(self, job_id: str, runner: str, *, until: float) -> int:
        """Extend every claim ``runner`` holds on the job to ``until``; returns how many patients it holds."""
        return self._db.execute(
            "UPDATE patient SET lease_until = ? WHERE job_id = ? AND claimed_by = ?", (until, job_id, runner)
        ).rowcount

    def release(self, job_id: str, runner: str, patient_ids: Iterable[str] | None = None) -> int:
        """Give up ``runner``'s claims (those on ``patient_ids``, or all) unscreened; returns how many."""
        if patient_ids is None:
            return self._db.execute(
                "UPDATE patient SET claimed_by = NULL, lease_until = NULL WHERE job_id = ? AND claimed_by = ?",
                (job_id, runner),
            ).rowcount
        ids = list(patient_ids)
        self._db.executemany(
            "UPDATE patient SET claimed_by = NULL, lease_until = NULL WHERE job_id = ? AND claimed_by = ? "
            "AND patient_id = ?",
            [(job_id, runner, patient_id) for patient_id in ids],
        )
        return len(ids)

    def claims(self, job_id: str) -> dict[str, str]:
        """Patient -> the runner claiming it now (expired leases included), for operators and tests."""
        rows = self._db.execute(
            "SELECT patient_id, claimed_by FROM patient WHERE job_id = ? AND claimed_by IS NOT NULL", (job_id,)
        ).rows
        return dict(rows)

    def held_by_others(self, job_id: str, runner: str, *, now: float) -> float | None:
        """Seconds until the first live lease of another runner on an unscreened patient runs out; None: none."""
        until = self._db.execute(
            "SELECT MIN(lease_until) FROM patient WHERE job_id = ? AND status = 'pending' AND claimed_by IS NOT NULL "
            "AND claimed_by <> ? AND lease_until >= ?",
            (job_id, runner, now),
        ).scalar()
        return None if until is None else max(0.0, float(until) - now)

    def claimable(self, job_id: str, *, now: float, round_started: float) -> int:
        """How many patients a runner could claim now (for the progress bar and the retry log)."""
        sql = " ".join(("SELECT COUNT(*) FROM patient WHERE job_id = :job AND", _CLAIMABLE, "AND", _FREE))
        return int(self._db.execute(sql, {"job": job_id, "now": now, "round_started": round_started}).scalar())

    # --- outcomes -------------------------------------------------------------------------------------------

    def mark_done(self, job_id: str, patient_id: str, result: dict[str, Any], written: bool) -> None:
        self.mark_many(job_id, [(patient_id, result_text(result), written)])

    def mark_failed(self, job_id: str, patient_id: str, reason: str) -> None:
        self.mark_many(job_id, (), [(patient_id, reason)])

    def mark_many(
        self,
        job_id: str,
        done: Iterable[tuple[str, str, bool]],
        failed: Iterable[tuple[str, str]] = (),
        *,
        runner: str | None = None,
        now: float = 0.0,
    ) -> None:
        """Record outcomes in one transaction (one commit instead of one each), ending ``runner``'s claims.

        ``done`` holds (patient id, ``result_text`` of its result, written); ``failed`` (patient id, reason).
        Without ``runner`` only patients no runner claims are recorded. ``now`` (epoch seconds) is when.
        """
        base = {"job": job_id, "runner": runner or "", "screened_by": runner, "now": now}
        done_rows = [
            {**base, "patient": patient_id, "result": text, "written": int(written)}
            for patient_id, text, written in done
        ]
        failed_rows = [
            {**base, "patient": patient_id, "reason": reason[:REASON_CHARS]} for patient_id, reason in failed
        ]
        with self._db.transaction() as tx:
            if done_rows:
                tx.executemany(_MARK_DONE, done_rows)
            if failed_rows:
                tx.executemany(_MARK_FAILED, failed_rows)

    def counts(self, job_id: str) -> dict[str, int]:
        rows = self._db.execute("SELECT status, COUNT(*) FROM patient WHERE job_id = ? GROUP BY status", (job_id,)).rows
        return {"pending": 0, "done": 0, "failed": 0, **{status: int(n) for status, n in rows}}

    def rows(self, job_id: str, *, page: int = 2000) -> Iterator[PatientRow]:
        """Every patient of the job in order, read ``page`` rows at a time (keyset on position, patient id):
        a 100k-patient report never holds every stored result at once."""
        after: tuple[int, str] = (-1, "")
        while True:
            found = self._db.execute(
                "SELECT position, patient_id, status, attempts, reason, result, written, screened_by FROM patient "
                "WHERE job_id = ? AND (position > ? OR (position = ? AND patient_id > ?)) "
                "ORDER BY position, patient_id LIMIT ?",
                (job_id, after[0], after[0], after[1], page),
            ).rows
            for position, patient_id, status, attempts, reason, result, written, screened_by in found:
                yield PatientRow(
                    patient_id,
                    status,
                    attempts,
                    reason,
                    json.loads(result) if result else None,
                    bool(written),
                    screened_by,
                )
                after = (position, patient_id)
            if len(found) < page:
                return

    def add_problems(self, job_id: str, problems: Iterable[JobProblem]) -> None:
        """Record problems of the job as a whole, after those already recorded."""
        listed = list(problems)
        if not listed:
            return
        with self._db.transaction() as tx:
            first = int(
                tx.execute(
                    "SELECT COALESCE(MAX(position), -1) + 1 FROM job_problem WHERE job_id = ?", (job_id,)
                ).scalar()
            )
            tx.executemany(
                "INSERT INTO job_problem (job_id, position, severity, text) VALUES (?, ?, ?, ?)",
                [(job_id, first + n, p.severity, p.text[:REASON_CHARS]) for n, p in enumerate(listed)],
            )

    def problems(self, job_id: str) -> list[JobProblem]:
        rows = self._db.execute(
            "SELECT severity, text FROM job_problem WHERE job_id = ? ORDER BY position", (job_id,)
        ).rows
        return [JobProblem(severity, text) for severity, text in rows]

    def patient_count(self, job_id: str) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM patient WHERE job_id = ?", (job_id,)).scalar())

    def record_panel_run(self, job: Job, counts: dict[str, Any]) -> None:
        """Record (or update, for a resumed job) this job as a run of its panel, with the panel's counts."""
        self._db.execute(
            "INSERT INTO panel_run (panel, job_id, counts) VALUES (?, ?, ?) "
            "ON CONFLICT (job_id) DO UPDATE SET counts = excluded.counts",
            (panel_key(job), job.id, json.dumps(counts, separators=(",", ":"), sort_keys=True)),
        )

    def panel_runs(self, job: Job, limit: int = 50) -> list[PanelRun]:
        """The runs of this job's panel up to and including this job (when recorded), oldest first."""
        own = self._db.execute("SELECT seq FROM panel_run WHERE job_id = ?", (job.id,)).scalar()
        rows = self._db.execute(
            "SELECT job_id, counts FROM panel_run WHERE panel = ? AND seq <= ? ORDER BY seq DESC LIMIT ?",
            (panel_key(job), own if own is not None else 2**62, limit),
        ).rows
        return [PanelRun(self.job(job_id), json.loads(counts)) for job_id, counts in reversed(rows)]

    def previous_run(self, job: Job) -> Job | None:
        """The run of the same panel before this job, None for a first run."""
        earlier = [run.job for run in self.panel_runs(job, limit=2) if run.job.id != job.id]
        return earlier[-1] if earlier else None
