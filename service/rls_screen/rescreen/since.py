"""Reconciliation for missed notifications: the patients whose screening data changed since a time.

``rls-screen batch --since TIME`` asks the FHIR server, for each resource type the re-screen
Subscriptions watch (the same searches by code of the data contract, ``subscriptions.criteria``),
which resources were written since TIME (``_lastUpdated=ge``; only ``subject`` is asked for), and
screens their patients as a batch job does. Where a server has no Subscriptions at all, the same
command on a schedule is the re-screen (docs/subscriptions.md).

``SinceMarks`` remembers where it got to, per FHIR server and panel (``scope``): the server's time
when the searches began, less ``OVERLAP`` (a transaction that was still committing then is searched
again next time; screening is idempotent, so an overlap costs a read, never a write). The mark
moves only when every patient of the job was screened (``--resume`` of the job moves it too), so a
patient that failed is looked for again by the next ``--since last``. The marks live in the state store
beside the re-screen queue (component ``since-marks``; ``rescreen_state_target``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rls_screen.contract import DataContract
from rls_screen.errors import InputError
from rls_screen.fhir_client import FhirClient
from rls_screen.rescreen.notifications import patient_of
from rls_screen.rescreen.settings import get_rescreen_settings
from rls_screen.rescreen.subscriptions import CODE_PARAMETERS
from rls_screen.settings import get_settings
from rls_screen.state import (
    Dialect,
    Migration,
    StateTarget,
    Transaction,
    migrate,
    open_database,
    sqlite_target,
)
from rls_screen.state.components import Component
from rls_screen.state.migrations import adopt_one_table

OVERLAP = timedelta(minutes=2)
LAST = "last"
COMPONENT = "since-marks"
MIGRATIONS = (
    Migration(
        1,
        "where each --since scope got to",
        (
            "CREATE TABLE IF NOT EXISTS since_mark (scope TEXT PRIMARY KEY, mark TEXT, pending_mark TEXT, "
            "pending_job TEXT)",
        ),
    ),
)


def adopt_since_marks(tx: Transaction, dialect: Dialect) -> int:
    """1 for the table of the release before the migration table (same columns), 0 for none; else refused."""
    return adopt_one_table(
        tx, dialect, "since_mark", ("scope", "mark", "pending_mark", "pending_job"), "the --since marks"
    )


def _default_file() -> Path:
    return get_rescreen_settings().db_path(get_settings().state_dir)


STATE_COMPONENTS = (Component(COMPONENT, MIGRATIONS, adopt_since_marks, default_file=_default_file),)


@dataclass(frozen=True)
class Changed:
    patient_ids: list[str]
    mark: datetime
    """Where the next run may start: the server's time when the searches began, less ``OVERLAP``."""
    unlinked: int
    """Changed resources that name no patient in a form the module accepts (not screened, counted)."""


def parse_since(text: str) -> datetime | str:
    """``last`` or an ISO 8601 date-time with a time zone (``2026-12-01T08:00:00Z``) or a date (UTC midnight)."""
    if text == LAST:
        return LAST
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as error:
        raise InputError(f"--since: '{text}' is neither 'last' nor an ISO 8601 date-time") from error
    if value.tzinfo is None:
        if "T" in text:
            raise InputError("--since: give the time zone (e.g. 2026-12-01T08:00:00Z)")
        value = value.replace(tzinfo=UTC)
    return value


def _server_time(bundle: dict[str, object]) -> datetime | None:
    meta = bundle.get("meta")
    text = meta.get("lastUpdated") if isinstance(meta, dict) else None
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00")) if text else None
    except ValueError:
        return None


def changed_patients(
    client: FhirClient, contract: DataContract, since: datetime, *, clock: Callable[[], datetime]
) -> Changed:
    """The patients with a resource of the contract's searches by code written at or after ``since``."""
    started = clock()
    server_started: datetime | None = None
    patients: dict[str, None] = {}
    unlinked = 0
    stamp = since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    for search in contract.searches:
        if not any(name in CODE_PARAMETERS for name, _ in search.filters):
            continue
        params = {**dict(search.filters), "_lastUpdated": f"ge{stamp}", "_elements": "subject", "_count": "1000"}
        for page in client.search_pages(search.resource_type, params):
            server_started = server_started or _server_time(page)
            for entry in page.get("entry") or []:
                resource = entry.get("resource") if isinstance(entry, dict) else None
                if not isinstance(resource, dict) or resource.get("resourceType") != search.resource_type:
                    continue
                patient = patient_of(resource, client.base_url)
                if patient is None:
                    unlinked += 1
                else:
                    patients[patient] = None
    began = min(started, server_started) if server_started else started
    return Changed(list(patients), began - OVERLAP, unlinked)


class SinceMarks:
    """Where each ``--since`` scope got to, in the state store."""

    def __init__(self, where: StateTarget | Path) -> None:
        self.target = sqlite_target(where) if isinstance(where, Path) else where
        self._db = open_database(self.target)
        try:
            migrate(self._db, COMPONENT, MIGRATIONS, adopt=adopt_since_marks)
        except BaseException:
            self._db.close()
            raise

    def close(self) -> None:
        self._db.close()

    def mark(self, scope: str) -> datetime | None:
        text = self._db.execute("SELECT mark FROM since_mark WHERE scope = ?", (scope,)).scalar()
        return datetime.fromisoformat(text) if text else None

    def resolve(self, since: datetime | str, scope: str) -> datetime:
        if isinstance(since, datetime):
            return since
        mark = self.mark(scope)
        if mark is None:
            raise InputError("--since last: no earlier --since run for this server and panel; give a time once")
        return mark

    def propose(self, scope: str, mark: datetime, job_id: str) -> None:
        """The mark this job reaches when every patient of it has been screened."""
        self._db.execute(
            "INSERT INTO since_mark (scope, pending_mark, pending_job) VALUES (?, ?, ?) "
            "ON CONFLICT (scope) DO UPDATE SET pending_mark = excluded.pending_mark, "
            "pending_job = excluded.pending_job",
            (scope, mark.isoformat(), job_id),
        )

    def job_finished(self, job_id: str) -> datetime | None:
        """Every patient of ``job_id`` was screened: its proposed mark becomes the mark; returns it."""
        # One statement decides, so two runners finishing the same job move the mark once (the second finds no
        # mark pending for the job) on either database.
        text = self._db.execute(
            "UPDATE since_mark SET mark = pending_mark, pending_mark = NULL, pending_job = NULL "
            "WHERE pending_job = ? RETURNING mark",
            (job_id,),
        ).scalar()
        return datetime.fromisoformat(text) if text else None
