"""Feedback and override suppression, in the state store (``rls_screen.state``), scoped per client and patient.

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

Schema: component ``cds-feedback`` in ``schema_migration``; version 1 is the layout the previous
release called ``PRAGMA user_version`` 2. A SQLite file of that release is adopted as version 1 when
its tables have exactly these columns; a file of the release before it (unscoped: no client key) has
its two tables archived as ``issued_card_v1`` and ``feedback_v1``, never read again (their rows cannot
be attributed to an issuer, so overrides recorded before that upgrade no longer hide cards). Anything
else (another ``user_version``, other columns, unrecorded tables on PostgreSQL) is refused.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from rls_screen.cds.models import FeedbackItem
from rls_screen.cds.settings import get_cds_settings
from rls_screen.errors import ConfigurationError
from rls_screen.settings import get_settings
from rls_screen.state import Dialect, Migration, StateDatabase, Transaction, migrate, table_columns
from rls_screen.state.components import Component

COMPONENT = "cds-feedback"
# The previous release's PRAGMA user_version for this layout (kept on SQLite, so that release still reads it).
LEGACY_USER_VERSION = 2


def _schema(feedback_id: str) -> tuple[str, ...]:
    """Version 1, ``IF NOT EXISTS`` throughout: adoption re-runs it to bring back a table dropped by hand."""
    return (
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
        f"""CREATE TABLE IF NOT EXISTS feedback (
    id {feedback_id},
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


# The row id: SQLite's rowid alias, PostgreSQL's identity column (the ids are never reused on either).
SQLITE_SCHEMA = _schema("INTEGER PRIMARY KEY AUTOINCREMENT")
STEPS = (
    Migration(
        1,
        "issued_card and feedback, scoped per client (the previous release's user_version 2)",
        by_dialect={
            "sqlite": (*SQLITE_SCHEMA, f"PRAGMA user_version = {LEGACY_USER_VERSION}"),
            "postgresql": _schema("BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"),
        },
    ),
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
# The unscoped layout (before per-client scoping) never set user_version; its indexes' names are reused by nobody.
V1_INDEXES = ("issued_card_subject", "feedback_card")
# Why an item was not recorded (logged as counts; the EHR gets 200 {} either way).
UNKNOWN_CARD = "unknown-card"
REASON_NOT_OFFERED = "reason-not-offered"
SUGGESTION_NOT_OFFERED = "suggestion-not-offered"
# Card uuids looked up per statement when feedback names many cards (far below every parameter limit).
LOOKUP_CHUNK = 200
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
    """Thread-safe over a shared ``StateDatabase`` (it does not own it: whoever opened it closes it)."""

    def __init__(self, db: StateDatabase, *, salt: str) -> None:
        self.db = db
        self._salt = salt
        migrate(db, COMPONENT, STEPS, adopt=adopt_feedback_tables)

    def _key(self, *parts: str | None) -> str:
        # JSON keeps the parts apart unambiguously (a tenant of None differs from one of "").
        return hashlib.sha256(f"{self._salt}\x1f{json.dumps(parts)}".encode()).hexdigest()[:32]

    def client_key(self, issuer: str, tenant: str | None) -> str:
        return self._key(issuer, tenant)

    def scope(self, issuer: str, tenant: str | None, patient_id: str) -> Scope:
        return Scope(self._key(issuer, tenant), self._key(issuer, tenant, patient_id))

    def record_cards(self, cards: Sequence[IssuedCard], issued_at: datetime) -> None:
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
        # The uuid derives from the hookInstance, scope, card key and data: a conflict is the same
        # card sent again (the EHR repeated a call); refresh its date so pruning keeps it.
        self.db.executemany(
            "INSERT INTO issued_card (client_key, service_id, uuid, subject_key, card_key, data_signature, "
            "override_reasons, suggestion_ids, issued_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (client_key, service_id, uuid) DO UPDATE SET "
            "override_reasons = excluded.override_reasons, suggestion_ids = excluded.suggestion_ids, "
            "issued_at = excluded.issued_at",
            rows,
        )

    def suppressed(
        self, service_id: str, scope: Scope, candidates: Sequence[tuple[str, str]], since: datetime
    ) -> set[str]:
        """The card keys, among (card key, data signature) candidates, this client overrode since ``since``.

        One statement for all the candidates of a call (row values ``IN (VALUES ...)``: SQLite 3.15+ and
        PostgreSQL alike); the index on (client, service, subject, card key, signature) finds each pair.
        """
        pairs = sorted(set(candidates))
        if not pairs:
            return set()
        values = ", ".join("(?, ?)" for _ in pairs)
        query = (
            "SELECT DISTINCT c.card_key FROM issued_card c JOIN feedback f "  # noqa: S608 - placeholders only
            "ON f.client_key = c.client_key AND f.service_id = c.service_id AND f.card_uuid = c.uuid "
            "WHERE c.client_key = ? AND c.service_id = ? AND c.subject_key = ? "
            f"AND (c.card_key, c.data_signature) IN (VALUES {values}) "
            "AND f.outcome = 'overridden' AND f.received_at >= ?"
        )
        params = [scope.client_key, service_id, scope.subject_key, *(part for pair in pairs for part in pair)]
        rows = self.db.execute(query, (*params, since.isoformat())).rows
        return {str(card_key) for (card_key,) in rows}

    def add_feedback(
        self, client_key: str, service_id: str, items: Sequence[FeedbackItem], received_at: datetime
    ) -> FeedbackOutcome:
        """Record the items that name a card this service issued to this client; count the others."""
        ignored: Counter[str] = Counter()
        rows = []
        with self.db.transaction() as tx:
            offered = _offered(tx, client_key, service_id, sorted({item.card for item in items}))
            for item in items:
                card = offered.get(item.card)
                refusal = UNKNOWN_CARD if card is None else _refusal(item, *card)
                if refusal is not None:
                    ignored[refusal] += 1
                    continue
                rows.append(_feedback_row(client_key, service_id, item, received_at))
            if rows:
                tx.executemany(
                    "INSERT INTO feedback (client_key, service_id, card_uuid, outcome, override_system, "
                    "override_code, override_display, had_user_comment, accepted_suggestions, outcome_timestamp, "
                    "received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
        return FeedbackOutcome(len(rows), dict(ignored))

    def prune(self, before: datetime) -> None:
        """Forget issued cards older than ``before`` that no feedback refers to."""
        self.db.execute(
            "DELETE FROM issued_card WHERE issued_at < ? AND NOT EXISTS (SELECT 1 FROM feedback f "
            "WHERE f.client_key = issued_card.client_key AND f.service_id = issued_card.service_id "
            "AND f.card_uuid = issued_card.uuid)",
            (before.isoformat(),),
        )

    def ping(self) -> bool:
        return self.db.ping()

    def count(self, table: str) -> int:
        if table not in COLUMNS:
            raise ValueError(table)
        return int(self.db.execute(f"SELECT COUNT(*) FROM {table}").scalar())  # noqa: S608 - fixed names


def _offered(tx: Transaction, client_key: str, service_id: str, uuids: Sequence[str]) -> dict[str, tuple[str, str]]:
    """Card uuid -> (override reasons, suggestion ids) JSON, for the cards among ``uuids`` issued to this client."""
    offered: dict[str, tuple[str, str]] = {}
    for start in range(0, len(uuids), LOOKUP_CHUNK):
        chunk = uuids[start : start + LOOKUP_CHUNK]
        marks = ", ".join("?" for _ in chunk)
        rows = tx.execute(
            "SELECT uuid, override_reasons, suggestion_ids FROM issued_card "  # noqa: S608 - placeholders only
            f"WHERE client_key = ? AND service_id = ? AND uuid IN ({marks})",
            (client_key, service_id, *chunk),
        ).rows
        offered.update({str(uuid): (str(reasons), str(suggestions)) for uuid, reasons, suggestions in rows})
    return offered


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


def adopt_feedback_tables(tx: Transaction, dialect: Dialect) -> int:
    """The version of feedback tables no ``schema_migration`` row describes: 0 (none, or archived), 1, or refused."""
    found = {table: table_columns(tx, dialect, table) for table in COLUMNS}
    if dialect == "postgresql":
        # No release before the migration table used PostgreSQL: tables there without a record are not ours.
        if any(found.values()):
            raise ConfigurationError(
                f"state database: tables {', '.join(t for t, c in found.items() if c)} have no recorded "
                f"{COMPONENT} version; refusing to guess what they hold"
            )
        return 0
    version = int(tx.execute("PRAGMA user_version").scalar() or 0)
    if version == LEGACY_USER_VERSION:
        for table, expected in COLUMNS.items():
            if found[table] and found[table] != expected:
                raise ConfigurationError(
                    f"feedback database: table {table} has columns {', '.join(found[table])}, not those of "
                    f"user_version {version}; refusing to guess what they mean"
                )
        for statement in SQLITE_SCHEMA:  # a table dropped by hand comes back empty, as the release did
            tx.execute(statement)
        return 1
    if version not in (0, 1):
        raise ConfigurationError(
            f"feedback database: schema version {version} is not one this rls-screen reads (it reads "
            f"{LEGACY_USER_VERSION} and archives 1); use the release that wrote it, or move the file away"
        )
    old = [table for table, columns in found.items() if columns]
    if old:
        _archive_unscoped(tx, old)
    return 0


def _archive_unscoped(tx: Transaction, tables: Sequence[str]) -> None:
    """The unscoped tables renamed ``*_v1``, never read again (version 1 then creates the scoped ones)."""
    if any(table_columns(tx, "sqlite", f"{table}_v1") for table in tables):
        raise ConfigurationError("feedback database: both unscoped tables and their *_v1 archive exist")
    for index in V1_INDEXES:
        tx.execute(f"DROP INDEX IF EXISTS {index}")
    for table in tables:
        tx.execute(f"ALTER TABLE {table} RENAME TO {table}_v1")
    log.warning(
        "cds: feedback tables archived as issued_card_v1/feedback_v1 (unscoped, from before per-client "
        "scoping) and no longer read; overrides recorded before this upgrade no longer suppress cards"
    )


def _default_file() -> Path:
    return get_cds_settings().feedback_db_path(get_settings().state_dir)


STATE_COMPONENTS = (Component(COMPONENT, STEPS, adopt_feedback_tables, default_file=_default_file),)


def window_start(now: datetime, days: int) -> datetime:
    return now - timedelta(days=days)
