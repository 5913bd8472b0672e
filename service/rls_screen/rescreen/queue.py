"""The re-screen queue: which patients must be screened again, when, and how it went for each.

One row per patient (never per notification), so the results of one panel give one re-screen:

- ``note`` records a notification. A patient not waiting yet is due ``debounce_s`` later; one already
  waiting is pushed back to ``debounce_s`` after the newest notification, but never past ``max_wait_s``
  after the first one (a steady stream of results cannot starve a patient). A patient being screened
  while a notification arrives is screened again afterwards: the screen in flight may have read the
  data before the new result.
- ``claim`` hands one due patient to one worker, with a lease. A worker that dies (a killed process)
  loses its lease and the patient is claimed again; the queue lives in the state store, so it
  survives a restart.
- ``complete`` and ``fail`` end a claim. ``fail`` with a retry time puts the patient back (backoff is
  the worker's policy); without one, or after the last attempt, the patient stays ``failed`` with the
  reason until the next notification about them.

``RescreenQueue`` is the interface the endpoint and the workers use; ``SqliteRescreenQueue`` is the
implementation on the SQLite state file. A PostgreSQL implementation keeps the same semantics with
``INSERT ... ON CONFLICT`` for ``note`` and ``SELECT ... FOR UPDATE SKIP LOCKED`` for ``claim``. The
queue holds patient ids, times and failure reasons (no clinical values, no tokens).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from rls_screen.errors import ConfigurationError

State = Literal["pending", "running", "done", "failed"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS rescreen_queue (
    patient_id TEXT PRIMARY KEY,
    state TEXT NOT NULL CHECK (state IN ('pending', 'running', 'done', 'failed')),
    due_at REAL NOT NULL,
    first_noted_at REAL NOT NULL,
    noted INTEGER NOT NULL DEFAULT 0,
    claimed_noted INTEGER,
    lease_until REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    screens INTEGER NOT NULL DEFAULT 0,
    writes INTEGER NOT NULL DEFAULT 0,
    reason TEXT,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS rescreen_queue_due ON rescreen_queue (state, due_at);
"""
REASON_CHARS = 500


@dataclass(frozen=True)
class Claim:
    """One patient handed to one worker. ``noted`` is the notification count the worker saw; ``attempt``
    counts from 1 (the tries that failed before this one, plus one)."""

    patient_id: str
    noted: int
    attempt: int


@dataclass(frozen=True)
class QueueEntry:
    """How it stands for one patient (for operators, /ready and tests)."""

    patient_id: str
    state: State
    due_at: float
    noted: int
    """Notifications received about the patient, ever."""
    attempts: int
    """Failed tries since the last success or notification."""
    screens: int
    """Re-screens that ran to the end."""
    writes: int
    """Re-screens that wrote to the FHIR server (the others found it already held the result)."""
    reason: str | None


@dataclass(frozen=True)
class Timing:
    debounce_s: float
    max_wait_s: float
    lease_s: float


class RescreenQueue(Protocol):
    """What the notification endpoint and the workers need of a queue (see the module docstring)."""

    def note(self, patient_ids: Iterable[str]) -> int: ...
    def claim(self) -> Claim | None: ...
    def complete(self, claim: Claim, *, written: bool) -> None: ...
    def fail(self, claim: Claim, reason: str, *, retry_at: float | None) -> None: ...
    def seconds_to_next(self) -> float | None: ...
    def entry(self, patient_id: str) -> QueueEntry | None: ...
    def counts(self) -> dict[str, int]: ...
    def ping(self) -> bool: ...
    def close(self) -> None: ...


# A new notification for a patient that is done or failed starts a new burst; for one that waits, it moves the
# due time to debounce after now, capped at max_wait after the burst's first notification; for one being
# screened, it only counts (``complete`` sees the count moved and puts the patient back).
_NOTE = """
INSERT INTO rescreen_queue (patient_id, state, due_at, first_noted_at, noted, updated_at)
VALUES (:patient, 'pending', :now + :debounce, :now, 1, :now)
ON CONFLICT (patient_id) DO UPDATE SET
    noted = noted + 1,
    updated_at = :now,
    attempts = CASE WHEN state IN ('done', 'failed') THEN 0 ELSE attempts END,
    reason = CASE WHEN state IN ('done', 'failed') THEN NULL ELSE reason END,
    first_noted_at = CASE WHEN state IN ('done', 'failed') THEN :now ELSE first_noted_at END,
    due_at = CASE
        WHEN state IN ('done', 'failed') THEN :now + :debounce
        WHEN state = 'pending' THEN MAX(due_at, MIN(:now + :debounce, first_noted_at + :max_wait))
        ELSE due_at END,
    state = CASE WHEN state IN ('done', 'failed') THEN 'pending' ELSE state END
"""


def _open(path: Path) -> sqlite3.Connection:
    """The state file opened as cds/state_db.py opens the CDS service's (not imported from there: the CDS app
    imports this package): WAL, so the workers of every uvicorn process share it; autocommit."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=5.0)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(SCHEMA)
    except (OSError, sqlite3.Error) as error:
        raise ConfigurationError(f"the re-screen queue {path}: cannot open ({type(error).__name__})") from error
    return db


class SqliteRescreenQueue:
    """The queue in a SQLite file (WAL, shared by every worker thread and uvicorn process using it)."""

    def __init__(self, path: Path, timing: Timing, *, clock: Callable[[], float]) -> None:
        self.path, self._timing, self._clock = path, timing, clock
        self._db = _open(path)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _write(self, sql: str, params: dict[str, object]) -> sqlite3.Cursor:
        with self._lock:
            return self._db.execute(sql, params)

    def note(self, patient_ids: Iterable[str]) -> int:
        """Record one notification naming these patients; returns how many patients were named."""
        now = self._clock()
        rows = [
            {"patient": p, "now": now, "debounce": self._timing.debounce_s, "max_wait": self._timing.max_wait_s}
            for p in dict.fromkeys(patient_ids)
        ]
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(_NOTE, rows)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        return len(rows)

    def claim(self) -> Claim | None:
        """The patient due longest (or whose worker's lease ran out), now ``running``; None when none is due."""
        now = self._clock()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute(
                    "SELECT patient_id, noted, attempts FROM rescreen_queue WHERE (state = 'pending' AND due_at <= ?) "
                    "OR (state = 'running' AND lease_until < ?) ORDER BY due_at LIMIT 1",
                    (now, now),
                ).fetchone()
                if row is not None:
                    self._db.execute(
                        "UPDATE rescreen_queue SET state = 'running', claimed_noted = noted, lease_until = ?, "
                        "updated_at = ? WHERE patient_id = ?",
                        (now + self._timing.lease_s, now, row[0]),
                    )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        return None if row is None else Claim(row[0], row[1], row[2] + 1)

    def complete(self, claim: Claim, *, written: bool) -> None:
        """The re-screen ran to the end: ``done``, or ``pending`` again when a notification came meanwhile."""
        now = self._clock()
        self._write(
            "UPDATE rescreen_queue SET screens = screens + 1, writes = writes + :written, updated_at = :now, "
            "lease_until = NULL, attempts = 0, reason = NULL, "
            "state = CASE WHEN noted = :noted THEN 'done' ELSE 'pending' END, "
            "first_noted_at = CASE WHEN noted = :noted THEN first_noted_at ELSE :now END, "
            "due_at = CASE WHEN noted = :noted THEN due_at ELSE :now + :debounce END "
            "WHERE patient_id = :patient AND state = 'running'",
            {
                "written": int(written),
                "now": now,
                "noted": claim.noted,
                "debounce": self._timing.debounce_s,
                "patient": claim.patient_id,
            },
        )

    def fail(self, claim: Claim, reason: str, *, retry_at: float | None) -> None:
        """The re-screen failed: back in the queue at ``retry_at`` (or soon, when a notification came
        meanwhile), else ``failed`` with the reason until the next notification."""
        now = self._clock()
        self._write(
            "UPDATE rescreen_queue SET attempts = attempts + 1, reason = :reason, updated_at = :now, "
            "lease_until = NULL, "
            "state = CASE WHEN noted <> :noted OR :retry_at IS NOT NULL THEN 'pending' ELSE 'failed' END, "
            "due_at = CASE WHEN noted <> :noted THEN :now + :debounce ELSE COALESCE(:retry_at, due_at) END "
            "WHERE patient_id = :patient AND state = 'running'",
            {
                "reason": reason[:REASON_CHARS],
                "now": now,
                "noted": claim.noted,
                "retry_at": retry_at,
                "debounce": self._timing.debounce_s,
                "patient": claim.patient_id,
            },
        )

    def seconds_to_next(self) -> float | None:
        """Seconds until the next patient is due (0 when one is due now); None when nothing waits."""
        with self._lock:
            row = self._db.execute(
                "SELECT MIN(CASE WHEN state = 'pending' THEN due_at ELSE lease_until END) FROM rescreen_queue "
                "WHERE state IN ('pending', 'running')"
            ).fetchone()
        return None if row[0] is None else max(0.0, float(row[0]) - self._clock())

    def entry(self, patient_id: str) -> QueueEntry | None:
        with self._lock:
            row = self._db.execute(
                "SELECT patient_id, state, due_at, noted, attempts, screens, writes, reason FROM rescreen_queue "
                "WHERE patient_id = ?",
                (patient_id,),
            ).fetchone()
        return None if row is None else QueueEntry(*row)

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) FROM rescreen_queue GROUP BY state").fetchall()
        return {"pending": 0, "running": 0, "done": 0, "failed": 0, **dict(rows)}

    def ping(self) -> bool:
        try:
            with self._lock:
                self._db.execute("SELECT 1").fetchone()
        except sqlite3.Error:
            return False
        return True
