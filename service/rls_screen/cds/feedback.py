"""Feedback and override suppression, in an embedded SQLite database, scoped per client and patient.

A client is who called, as verified: the JWT's issuer and optional tenant (dev mode: one fixed local
client). Two tables. ``issued_card`` remembers each card sent: the client key, service, uuid, a
subject key (client + patient), the card key (finding code or order-check code), a signature of the
data it rested on (the basis Observations with their version ids), and the override reasons and
suggestion uuids the card offered. ``feedback`` stores what the EHR reported (outcome, override
reason coding, accepted suggestion ids, timestamps), each row tied to one issued card of its client.

Feedback is recorded only for a card this service issued to the same client (looked up by client,
service and uuid; the uuid is unique per patient, see cards.py), with an override reason the card
offered and accepted suggestions it carried; anything else is counted as ignored, never stored. A
card overridden for a client's patient, service and card key is not shown again to that client for
``suppression_days`` unless its data signature changed: a new or amended result brings it back.
Another issuer, tenant or service is never affected.

Data minimisation: patient ids, issuers and tenants are stored only as salted SHA-256 keys; the
free-text ``userComment`` is not stored (only whether one was given); tokens never reach this module.

Schema: version 2 (``PRAGMA user_version``). A version-1 file (unscoped: no client key) is migrated
by archiving its two tables as ``issued_card_v1`` and ``feedback_v1``, never read again: their rows
cannot be attributed to an issuer, so overrides recorded before the upgrade no longer hide cards.
A file of an unknown or newer version, or whose tables do not have the expected columns, is refused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from rls_screen.cds.models import FeedbackItem
from rls_screen.cds.state_db import open_state_db
from rls_screen.errors import ConfigurationError

SCHEMA_VERSION = 2
SCHEMA = (
    """CREATE TABLE IF NOT EXISTS issued_card (
    client_key TEXT NOT NULL,
    service_id TEXT NOT NULL,
    uuid TEXT NOT NULL,
    subject_key TEXT NOT NULL,
    card_key TEXT NOT NULL,
    data_signature TEXT NOT NULL,
    override_reasons TEXT NOT NULL,
    suggestion_ids TEXT NOT NULL,
    issued_at TEXT NOT NULL,
    PRIMARY KEY (client_key, service_id, uuid)
)""",
    """CREATE INDEX IF NOT EXISTS issued_card_by_subject
    ON issued_card (client_key, service_id, subject_key, card_key, data_signature)""",
    """CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    client_key TEXT NOT NULL,
    service_id TEXT NOT NULL,
    card_uuid TEXT NOT NULL,
    outcome TEXT NOT NULL,
    override_system TEXT,
    override_code TEXT,
    override_display TEXT,
    had_user_comment INTEGER NOT NULL,
    accepted_suggestions TEXT,
    outcome_timestamp TEXT NOT NULL,
    received_at TEXT NOT NULL
)""",
    """CREATE INDEX IF NOT EXISTS feedback_by_card
    ON feedback (client_key, service_id, card_uuid, outcome, received_at)""",
)
COLUMNS = {
    "issued_card": (
        "client_key",
        "service_id",
        "uuid",
        "subject_key",
        "card_key",
        "data_signature",
        "override_reasons",
        "suggestion_ids",
        "issued_at",
    ),
    "feedback": (
        "id",
        "client_key",
        "service_id",
        "card_uuid",
        "outcome",
        "override_system",
        "override_code",
        "override_display",
        "had_user_comment",
        "accepted_suggestions",
        "outcome_timestamp",
        "received_at",
    ),
}
# Version 1 (before per-client scoping) never set user_version; its indexes' names are reused by nobody.
V1_INDEXES = ("issued_card_subject", "feedback_card")
# Why an item was not recorded (logged as counts; the EHR gets 200 {} either way).
UNKNOWN_CARD = "unknown-card"
REASON_NOT_OFFERED = "reason-not-offered"
SUGGESTION_NOT_OFFERED = "suggestion-not-offered"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Scope:
    """Whose card: ``client_key`` hashes (issuer, tenant); ``subject_key`` hashes (issuer, tenant, patient)."""

    client_key: str
    subject_key: str


@dataclass(frozen=True)
class IssuedCard:
    uuid: str
    service_id: str
    scope: Scope
    card_key: str
    data_signature: str
    override_reasons: tuple[tuple[str, str], ...] = ()  # (system, code) pairs the card offered
    suggestion_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class FeedbackOutcome:
    recorded: int
    ignored: Mapping[str, int] = field(default_factory=dict)  # reason -> items


def data_signature(parts: Iterable[str]) -> str:
    """A stable digest of what a card rests on (e.g. 'Observation/1/_history/2')."""
    return hashlib.sha256("\x1f".join(sorted(parts)).encode()).hexdigest()[:32]


class FeedbackStore:
    """Thread-safe: one connection, one lock (SQLite in WAL mode; every operation is short)."""

    def __init__(self, path: Path, *, salt: str) -> None:
        self.path = path
        self._salt = salt
        self._lock = threading.Lock()
        self._db = open_state_db(path, "", "feedback database")
        _prepare_schema(self._db, path)

    def _key(self, *parts: str | None) -> str:
        # JSON keeps the parts apart unambiguously (a tenant of None differs from one of "").
        return hashlib.sha256(f"{self._salt}\x1f{json.dumps(parts)}".encode()).hexdigest()[:32]

    def client_key(self, issuer: str, tenant: str | None) -> str:
        return self._key(issuer, tenant)

    def scope(self, issuer: str, tenant: str | None, patient_id: str) -> Scope:
        return Scope(self._key(issuer, tenant), self._key(issuer, tenant, patient_id))

    def record_cards(self, cards: Sequence[IssuedCard], issued_at: datetime) -> None:
        if not cards:
            return
        rows = [
            (
                c.scope.client_key,
                c.service_id,
                c.uuid,
                c.scope.subject_key,
                c.card_key,
                c.data_signature,
                json.dumps([list(reason) for reason in c.override_reasons]),
                json.dumps(list(c.suggestion_ids)),
                issued_at.isoformat(),
            )
            for c in cards
        ]
        with self._lock:
            # The uuid derives from the hookInstance, scope, card key and data: a conflict is the same
            # card sent again (the EHR repeated a call); refresh its date so pruning keeps it.
            self._db.executemany(
                "INSERT INTO issued_card VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (client_key, service_id, uuid) DO UPDATE SET "
                "override_reasons = excluded.override_reasons, suggestion_ids = excluded.suggestion_ids, "
                "issued_at = excluded.issued_at",
                rows,
            )

    def suppressed(
        self, service_id: str, scope: Scope, candidates: Sequence[tuple[str, str]], since: datetime
    ) -> set[str]:
        """The card keys, among (card key, data signature) candidates, this client overrode since ``since``."""
        if not candidates:
            return set()
        found: set[str] = set()
        query = (
            "SELECT 1 FROM issued_card c JOIN feedback f "
            "ON f.client_key = c.client_key AND f.service_id = c.service_id AND f.card_uuid = c.uuid "
            "WHERE c.client_key = ? AND c.service_id = ? AND c.subject_key = ? AND c.card_key = ? "
            "AND c.data_signature = ? AND f.outcome = 'overridden' AND f.received_at >= ? LIMIT 1"
        )
        with self._lock:
            for card_key, signature in candidates:
                row = self._db.execute(
                    query, (scope.client_key, service_id, scope.subject_key, card_key, signature, since.isoformat())
                ).fetchone()
                if row is not None:
                    found.add(card_key)
        return found

    def add_feedback(
        self, client_key: str, service_id: str, items: Sequence[FeedbackItem], received_at: datetime
    ) -> FeedbackOutcome:
        """Record the items that name a card this service issued to this client; count the others."""
        ignored: Counter[str] = Counter()
        rows = []
        with self._lock:
            for item in items:
                offered = self._db.execute(
                    "SELECT override_reasons, suggestion_ids FROM issued_card "
                    "WHERE client_key = ? AND service_id = ? AND uuid = ?",
                    (client_key, service_id, item.card),
                ).fetchone()
                refusal = UNKNOWN_CARD if offered is None else _refusal(item, *offered)
                if refusal is not None:
                    ignored[refusal] += 1
                    continue
                rows.append(_feedback_row(client_key, service_id, item, received_at))
            self._db.executemany(
                "INSERT INTO feedback (client_key, service_id, card_uuid, outcome, override_system, override_code, "
                "override_display, had_user_comment, accepted_suggestions, outcome_timestamp, received_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
        return FeedbackOutcome(len(rows), dict(ignored))

    def prune(self, before: datetime) -> None:
        """Forget issued cards older than ``before`` that no feedback refers to."""
        with self._lock:
            self._db.execute(
                "DELETE FROM issued_card WHERE issued_at < ? AND NOT EXISTS (SELECT 1 FROM feedback f "
                "WHERE f.client_key = issued_card.client_key AND f.service_id = issued_card.service_id "
                "AND f.card_uuid = issued_card.uuid)",
                (before.isoformat(),),
            )

    def ping(self) -> bool:
        try:
            with self._lock:
                self._db.execute("SELECT 1").fetchone()
        except sqlite3.Error:
            return False
        return True

    def count(self, table: str) -> int:
        if table not in ("issued_card", "feedback"):
            raise ValueError(table)
        with self._lock:
            row = self._db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()  # noqa: S608 - fixed names
        return int(row[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _refusal(item: FeedbackItem, reasons_json: str, suggestions_json: str) -> str | None:
    """Why an item about a known card is not recorded, or None: the card must have offered what it names."""
    if item.outcome == "overridden":
        reason = item.override_reason.reason if item.override_reason else None
        if reason is None:
            return None  # an override without a coded reason is still an override (CDS Hooks: optional)
        offered = {(system, code) for system, code in json.loads(reasons_json)}
        return None if (reason.system, reason.code) in offered else REASON_NOT_OFFERED
    offered_ids = set(json.loads(suggestions_json))
    accepted = item.accepted_suggestions or []
    return None if all(s.id in offered_ids for s in accepted) else SUGGESTION_NOT_OFFERED


def _feedback_row(
    client_key: str, service_id: str, item: FeedbackItem, received_at: datetime
) -> tuple[str | int | None, ...]:
    reason = item.override_reason.reason if item.override_reason else None
    accepted = [s.id for s in item.accepted_suggestions] if item.accepted_suggestions else None
    return (
        client_key,
        service_id,
        item.card,
        item.outcome,
        reason.system if reason else None,
        reason.code if reason else None,
        reason.display if reason else None,
        int(bool(item.override_reason and item.override_reason.user_comment)),
        json.dumps(accepted) if accepted is not None else None,
        item.outcome_timestamp.isoformat(),
        received_at.isoformat(),
    )


def _prepare_schema(db: sqlite3.Connection, path: Path) -> None:
    """Bring the file to SCHEMA_VERSION in one exclusive transaction (workers may open it at once)."""
    try:
        db.execute("BEGIN IMMEDIATE")
        try:
            _migrate(db, path)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    except sqlite3.Error as error:
        raise ConfigurationError(f"feedback database {path}: cannot prepare ({type(error).__name__})") from error


def _migrate(db: sqlite3.Connection, path: Path) -> None:
    (version,) = db.execute("PRAGMA user_version").fetchone()
    if version == SCHEMA_VERSION:
        _check_columns(db, path)
        for statement in SCHEMA:  # a table dropped by hand comes back empty
            db.execute(statement)
        return
    if version not in (0, 1):
        raise ConfigurationError(
            f"feedback database {path}: schema version {version} is not one this rls-screen reads "
            f"(it reads {SCHEMA_VERSION} and migrates 1); use the release that wrote it, or move the file away"
        )
    tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    old = [name for name in ("issued_card", "feedback") if name in tables]
    if {f"{name}_v1" for name in old} & tables:
        raise ConfigurationError(f"feedback database {path}: both version-1 tables and their archive exist")
    for index in V1_INDEXES:
        db.execute(f"DROP INDEX IF EXISTS {index}")
    for name in old:
        db.execute(f"ALTER TABLE {name} RENAME TO {name}_v1")
    for statement in SCHEMA:
        db.execute(statement)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    if old:
        log.warning(
            "cds: feedback database %s migrated to schema %d: the unscoped version-1 tables are kept as "
            "issued_card_v1/feedback_v1 and no longer read; overrides recorded before this upgrade no "
            "longer suppress cards",
            path,
            SCHEMA_VERSION,
        )


def _check_columns(db: sqlite3.Connection, path: Path) -> None:
    """Each table that exists has exactly the columns of this schema (a missing one is created later)."""
    for table, expected in COLUMNS.items():
        found = tuple(row[1] for row in db.execute(f"PRAGMA table_info({table})"))
        if found and found != expected:
            raise ConfigurationError(
                f"feedback database {path}: table {table} has columns {', '.join(found)}, "
                f"not those of schema {SCHEMA_VERSION}; refusing to guess what they mean"
            )


def window_start(now: datetime, days: int) -> datetime:
    return now - timedelta(days=days)
