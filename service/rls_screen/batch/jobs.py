"""The job store: one SQLite file holding every job and each patient's state in it.

A patient is ``pending`` until screened, then ``done`` or ``failed`` (with the reason). Problems of
the job as a whole (input lines skipped, NDJSON lines unreadable, errors a Bulk export reported
without naming a patient) are kept beside the patients, so the report of a resumed job lists them. A killed job
resumes from the same file: ``done`` patients are never screened again, and because write-back is
idempotent on the server side (conditional creates/updates), a patient screened but not yet marked
done when the process died writes nothing new when screened again. The file holds patient ids and
results, never names or tokens.

Runs of one panel (``panel_run``): each report written records the job under its panel's identity
(``panel_key``: FHIR server and source) with the panel's counts, so the next run of the same panel
finds the previous job (whose per-patient results the ``patient`` table already holds) and the
trend of counts across runs. It adds counts only, no patient data.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Literal

from rls_screen.errors import InputError

SCHEMA = """
CREATE TABLE IF NOT EXISTS job (
    id TEXT PRIMARY KEY,
    created TEXT NOT NULL,
    source TEXT NOT NULL,
    as_of TEXT NOT NULL,
    dry_run INTEGER NOT NULL,
    fhir_base_url TEXT NOT NULL,
    status TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS patient (
    job_id TEXT NOT NULL REFERENCES job(id),
    position INTEGER NOT NULL,
    patient_id TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'done', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    reason TEXT,
    result TEXT,
    written INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (job_id, patient_id)
);
CREATE INDEX IF NOT EXISTS patient_by_status ON patient (job_id, status, position);
CREATE TABLE IF NOT EXISTS panel_run (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    panel TEXT NOT NULL,
    job_id TEXT NOT NULL UNIQUE REFERENCES job(id),
    counts TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS panel_run_by_panel ON panel_run (panel, seq);
CREATE TABLE IF NOT EXISTS job_problem (
    job_id TEXT NOT NULL REFERENCES job(id),
    position INTEGER NOT NULL,
    severity TEXT NOT NULL CHECK (severity IN ('error', 'warning')),
    text TEXT NOT NULL
);
"""


_MARK_DONE = (
    "UPDATE patient SET status = 'done', attempts = attempts + 1, reason = NULL, result = ?, written = ? "
    "WHERE job_id = ? AND patient_id = ?"
)
_MARK_FAILED = (
    "UPDATE patient SET status = 'failed', attempts = attempts + 1, reason = ? WHERE job_id = ? AND patient_id = ?"
)


def result_text(result: dict[str, Any]) -> str:
    """How a patient's result is stored (compact JSON); worker processes call it so the main process need not."""
    return json.dumps(result, separators=(",", ":"))


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


class JobStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def create_job(self, *, created: str, source: str, as_of: date, dry_run: bool, fhir_base_url: str) -> Job:
        job = Job(f"job-{uuid.uuid4().hex[:12]}", created, source, as_of, dry_run, fhir_base_url, "running")
        with self._transaction() as db:
            db.execute(
                "INSERT INTO job VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    job.id,
                    job.created,
                    job.source,
                    job.as_of.isoformat(),
                    int(dry_run),
                    fhir_base_url,
                    job.status,
                ),
            )
        return job

    def job(self, job_id: str) -> Job:
        row = self._db.execute("SELECT * FROM job WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise InputError(f"no job {job_id} in {self.path}")
        return Job(row[0], row[1], row[2], date.fromisoformat(row[3]), bool(row[4]), row[5], row[6])

    def set_job_status(self, job_id: str, status: str) -> None:
        self._db.execute("UPDATE job SET status = ? WHERE id = ?", (status, job_id))

    def add_patients(self, job_id: str, patient_ids: Iterable[str], start: int = 0) -> int:
        """Register patients as pending (duplicates ignored); returns how many were new."""
        added = 0
        with self._transaction() as db:
            for position, patient_id in enumerate(patient_ids, start=start):
                cursor = db.execute(
                    "INSERT OR IGNORE INTO patient (job_id, position, patient_id, status) VALUES (?, ?, ?, 'pending')",
                    (job_id, position, patient_id),
                )
                added += cursor.rowcount
        return added

    def pending(self, job_id: str, *, retry_failed_transient: bool = True) -> list[str]:
        rows = self._db.execute(
            "SELECT patient_id FROM patient WHERE job_id = ? AND (status = 'pending' "
            "OR (? AND status = 'failed' AND reason LIKE 'transient:%')) ORDER BY position",
            (job_id, int(retry_failed_transient)),
        ).fetchall()
        return [row[0] for row in rows]

    def mark_done(self, job_id: str, patient_id: str, result: dict[str, Any], written: bool) -> None:
        self._db.execute(_MARK_DONE, (result_text(result), int(written), job_id, patient_id))

    def mark_failed(self, job_id: str, patient_id: str, reason: str) -> None:
        self._db.execute(_MARK_FAILED, (reason[:500], job_id, patient_id))

    def mark_many(
        self, job_id: str, done: Iterable[tuple[str, str, bool]], failed: Iterable[tuple[str, str]] = ()
    ) -> None:
        """``mark_done`` / ``mark_failed`` for many patients in one transaction (one commit instead of one each).

        ``done`` holds (patient id, ``result_text`` of its result, written); ``failed`` (patient id, reason).
        """
        with self._transaction() as db:
            db.executemany(_MARK_DONE, [(text, int(written), job_id, patient_id) for patient_id, text, written in done])
            db.executemany(_MARK_FAILED, [(reason[:500], job_id, patient_id) for patient_id, reason in failed])

    def counts(self, job_id: str) -> dict[str, int]:
        rows = self._db.execute(
            "SELECT status, COUNT(*) FROM patient WHERE job_id = ? GROUP BY status", (job_id,)
        ).fetchall()
        return {"pending": 0, "done": 0, "failed": 0, **dict(rows)}

    def rows(self, job_id: str) -> Iterator[PatientRow]:
        for patient_id, status, attempts, reason, result, written in self._db.execute(
            "SELECT patient_id, status, attempts, reason, result, written FROM patient "
            "WHERE job_id = ? ORDER BY position",
            (job_id,),
        ):
            yield PatientRow(
                patient_id, status, attempts, reason, json.loads(result) if result else None, bool(written)
            )

    def add_problems(self, job_id: str, problems: Iterable[JobProblem]) -> None:
        """Record problems of the job as a whole, after those already recorded."""
        with self._transaction() as db:
            (first,) = db.execute(
                "SELECT COALESCE(MAX(position), -1) + 1 FROM job_problem WHERE job_id = ?", (job_id,)
            ).fetchone()
            db.executemany(
                "INSERT INTO job_problem VALUES (?, ?, ?, ?)",
                [(job_id, first + n, p.severity, p.text[:500]) for n, p in enumerate(problems)],
            )

    def problems(self, job_id: str) -> list[JobProblem]:
        rows = self._db.execute(
            "SELECT severity, text FROM job_problem WHERE job_id = ? ORDER BY position", (job_id,)
        ).fetchall()
        return [JobProblem(severity, text) for severity, text in rows]

    def patient_count(self, job_id: str) -> int:
        row = self._db.execute("SELECT COUNT(*) FROM patient WHERE job_id = ?", (job_id,)).fetchone()
        return int(row[0])

    def record_panel_run(self, job: Job, counts: dict[str, Any]) -> None:
        """Record (or update, for a resumed job) this job as a run of its panel, with the panel's counts."""
        self._db.execute(
            "INSERT INTO panel_run (panel, job_id, counts) VALUES (?, ?, ?) "
            "ON CONFLICT (job_id) DO UPDATE SET counts = excluded.counts",
            (panel_key(job), job.id, json.dumps(counts, separators=(",", ":"), sort_keys=True)),
        )

    def panel_runs(self, job: Job, limit: int = 50) -> list[PanelRun]:
        """The runs of this job's panel up to and including this job (when recorded), oldest first."""
        own = self._db.execute("SELECT seq FROM panel_run WHERE job_id = ?", (job.id,)).fetchone()
        rows = self._db.execute(
            "SELECT job_id, counts FROM panel_run WHERE panel = ? AND seq <= ? ORDER BY seq DESC LIMIT ?",
            (panel_key(job), own[0] if own else 2**62, limit),
        ).fetchall()
        return [PanelRun(self.job(job_id), json.loads(counts)) for job_id, counts in reversed(rows)]

    def previous_run(self, job: Job) -> Job | None:
        """The run of the same panel before this job, None for a first run."""
        earlier = [run.job for run in self.panel_runs(job, limit=2) if run.job.id != job.id]
        return earlier[-1] if earlier else None
