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

``RescreenQueue`` is the interface the endpoint and the workers use; ``StateRescreenQueue`` is the
implementation on the state store (rls_screen.state: ``RLS_SCREEN_STATE_URL``, PostgreSQL for replicas that
share one queue, else the SQLite file ``RLS_SCREEN_RESCREEN_DB`` / ``<state_dir>/rescreen.sqlite3``): ``note``
is one ``INSERT ... ON CONFLICT`` per patient, ``claim`` picks with ``SELECT ... FOR UPDATE SKIP LOCKED`` on
PostgreSQL (``BEGIN IMMEDIATE`` serialises it on SQLite). Schema: component ``rescreen-queue``. The queue
holds patient ids, times and failure reasons (no clinical values, no tokens).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from rls_screen.errors import ConfigurationError
from rls_screen.rescreen.settings import RescreenSettings, get_rescreen_settings
from rls_screen.settings import Settings, get_settings
from rls_screen.state import (
    Dialect,
    Migration,
    StateTarget,
    Transaction,
    migrate,
    open_database,
    sqlite_target,
    state_target,
)
from rls_screen.state.components import Component
from rls_screen.state.migrations import adopt_one_table

State = Literal["pending", "running", "done", "failed"]

COMPONENT = "rescreen-queue"


def _queue_table(time_type: str) -> str:
    return f"""CREATE TABLE IF NOT EXISTS rescreen_queue (
    patient_id TEXT PRIMARY KEY,
    state TEXT NOT NULL CHECK (state IN ('pending', 'running', 'done', 'failed')),
    due_at {time_type} NOT NULL,
    first_noted_at {time_type} NOT NULL,
    noted INTEGER NOT NULL DEFAULT 0,
    claimed_noted INTEGER,
    lease_until {time_type},
    attempts INTEGER NOT NULL DEFAULT 0,
    screens INTEGER NOT NULL DEFAULT 0,
    writes INTEGER NOT NULL DEFAULT 0,
    reason TEXT,
    updated_at {time_type} NOT NULL
)"""


_DUE_INDEX = "CREATE INDEX IF NOT EXISTS rescreen_queue_due ON rescreen_queue (state, due_at)"
MIGRATIONS = (
    Migration(
        1,
        "the re-screen queue, one row per patient",
        # Times are epoch seconds: PostgreSQL's REAL has 4 bytes (minutes at today's epoch), so DOUBLE PRECISION.
        by_dialect={
            "sqlite": (_queue_table("REAL"), _DUE_INDEX),
            "postgresql": (_queue_table("DOUBLE PRECISION"), _DUE_INDEX),
        },
    ),
)
_EARLIER_COLUMNS = (
    "patient_id",
    "state",
    "due_at",
    "first_noted_at",
    "noted",
    "claimed_noted",
    "lease_until",
    "attempts",
    "screens",
    "writes",
    "reason",
    "updated_at",
)


def adopt_rescreen_queue(tx: Transaction, dialect: Dialect) -> int:
    """1 for the queue table of the release before the migration table (same columns), 0 for none; else refused."""
    return adopt_one_table(tx, dialect, "rescreen_queue", _EARLIER_COLUMNS, "the re-screen queue")


def _default_file() -> Path:
    return get_rescreen_settings().db_path(get_settings().state_dir)


STATE_COMPONENTS = (Component(COMPONENT, MIGRATIONS, adopt_rescreen_queue, default_file=_default_file),)


REASON_CHARS = 500


def rescreen_state_target(settings: RescreenSettings, base: Settings) -> StateTarget:
    """Where the queue and the ``--since`` marks live: ``RLS_SCREEN_STATE_URL`` (shared), else the SQLite file
    ``RLS_SCREEN_RESCREEN_DB`` or ``<state_dir>/rescreen.sqlite3`` (one host). Both set is refused: replicas
    would each keep their own queue while the operator meant them to share one."""
    state_url = base.state_url_text()
    if state_url and settings.db is not None:
        raise ConfigurationError(
            "RLS_SCREEN_RESCREEN_DB and RLS_SCREEN_STATE_URL are both set: unset one (the state URL holds the "
            "re-screen queue too)"
        )
    return state_target(state_url, settings.db_path(base.state_dir))


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
# screened, it only counts (``complete`` sees the count moved and puts the patient back). Columns are named with
# the table (PostgreSQL reads a bare name in DO UPDATE as ambiguous with ``excluded``); SQLite's two-argument
# MAX/MIN are PostgreSQL's GREATEST/LEAST.
def _note_sql(dialect: Dialect) -> str:
    greatest, least = ("GREATEST", "LEAST") if dialect == "postgresql" else ("MAX", "MIN")
    return f"""
INSERT INTO rescreen_queue AS q (patient_id, state, due_at, first_noted_at, noted, updated_at)
VALUES (:patient, 'pending', :now + :debounce, :now, 1, :now)
ON CONFLICT (patient_id) DO UPDATE SET
    noted = q.noted + 1,
    updated_at = :now,
    attempts = CASE WHEN q.state IN ('done', 'failed') THEN 0 ELSE q.attempts END,
    reason = CASE WHEN q.state IN ('done', 'failed') THEN NULL ELSE q.reason END,
    first_noted_at = CASE WHEN q.state IN ('done', 'failed') THEN :now ELSE q.first_noted_at END,
    due_at = CASE
        WHEN q.state IN ('done', 'failed') THEN :now + :debounce
        WHEN q.state = 'pending' THEN {greatest}(q.due_at, {least}(:now + :debounce, q.first_noted_at + :max_wait))
        ELSE q.due_at END,
    state = CASE WHEN q.state IN ('done', 'failed') THEN 'pending' ELSE q.state END
"""  # noqa: S608 - the two function names above are fixed


class StateRescreenQueue:
    """The queue in the state store, shared by every worker thread, uvicorn process and replica using it."""

    def __init__(self, where: StateTarget | Path, timing: Timing, *, clock: Callable[[], float]) -> None:
        self.target = sqlite_target(where) if isinstance(where, Path) else where
        self._timing, self._clock = timing, clock
        self._db = open_database(self.target)
        try:
            migrate(self._db, COMPONENT, MIGRATIONS, adopt=adopt_rescreen_queue)
        except BaseException:
            self._db.close()
            raise
        self._note = _note_sql(self._db.dialect)
        # PostgreSQL: lock the row picked, skipping one another worker is picking (READ COMMITTED); SQLite's
        # BEGIN IMMEDIATE already makes the pick-and-update one writer's at a time.
        self._pick = " ".join(
            (
                "SELECT patient_id, noted, attempts FROM rescreen_queue WHERE (state = 'pending' AND due_at <= ?)",
                "OR (state = 'running' AND lease_until < ?) ORDER BY due_at LIMIT 1",
                "FOR UPDATE SKIP LOCKED" if self._db.dialect == "postgresql" else "",
            )
        )

    def close(self) -> None:
        self._db.close()

    def note(self, patient_ids: Iterable[str]) -> int:
        """Record one notification naming these patients; returns how many patients were named."""
        now = self._clock()
        rows = [
            {"patient": p, "now": now, "debounce": self._timing.debounce_s, "max_wait": self._timing.max_wait_s}
            for p in dict.fromkeys(patient_ids)
        ]
        self._db.executemany(self._note, rows)
        return len(rows)

    def claim(self) -> Claim | None:
        """The patient due longest (or whose worker's lease ran out), now ``running``; None when none is due."""
        now = self._clock()
        with self._db.transaction() as tx:
            row = tx.execute(self._pick, (now, now)).one()
            if row is not None:
                tx.execute(
                    "UPDATE rescreen_queue SET state = 'running', claimed_noted = noted, lease_until = ?, "
                    "updated_at = ? WHERE patient_id = ?",
                    (now + self._timing.lease_s, now, row[0]),
                )
        return None if row is None else Claim(row[0], int(row[1]), int(row[2]) + 1)

    def complete(self, claim: Claim, *, written: bool) -> None:
        """The re-screen ran to the end: ``done``, or ``pending`` again when a notification came meanwhile."""
        now = self._clock()
        self._db.execute(
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
        # has_retry rather than ``:retry_at IS NOT NULL``: PostgreSQL cannot type a NULL parameter on its own
        self._db.execute(
            "UPDATE rescreen_queue SET attempts = attempts + 1, reason = :reason, updated_at = :now, "
            "lease_until = NULL, "
            "state = CASE WHEN noted <> :noted OR :has_retry = 1 THEN 'pending' ELSE 'failed' END, "
            "due_at = CASE WHEN noted <> :noted THEN :now + :debounce WHEN :has_retry = 1 THEN :retry_at "
            "ELSE due_at END "
            "WHERE patient_id = :patient AND state = 'running'",
            {
                "reason": reason[:REASON_CHARS],
                "now": now,
                "noted": claim.noted,
                "has_retry": int(retry_at is not None),
                "retry_at": retry_at if retry_at is not None else now,
                "debounce": self._timing.debounce_s,
                "patient": claim.patient_id,
            },
        )

    def seconds_to_next(self) -> float | None:
        """Seconds until the next patient is due (0 when one is due now); None when nothing waits."""
        due = self._db.execute(
            "SELECT MIN(CASE WHEN state = 'pending' THEN due_at ELSE lease_until END) FROM rescreen_queue "
            "WHERE state IN ('pending', 'running')"
        ).scalar()
        return None if due is None else max(0.0, float(due) - self._clock())

    def entry(self, patient_id: str) -> QueueEntry | None:
        row = self._db.execute(
            "SELECT patient_id, state, due_at, noted, attempts, screens, writes, reason FROM rescreen_queue "
            "WHERE patient_id = ?",
            (patient_id,),
        ).one()
        if row is None:
            return None
        patient, state, due_at, noted, attempts, screens, writes, reason = row
        return QueueEntry(patient, state, float(due_at), int(noted), int(attempts), int(screens), int(writes), reason)

    def counts(self) -> dict[str, int]:
        rows = self._db.execute("SELECT state, COUNT(*) FROM rescreen_queue GROUP BY state").rows
        return {"pending": 0, "running": 0, "done": 0, "failed": 0, **{state: int(n) for state, n in rows}}

    def ping(self) -> bool:
        return self._db.ping()
