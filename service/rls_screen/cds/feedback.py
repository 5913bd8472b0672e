"""Feedback and override suppression, in an embedded SQLite database.

Two tables. ``issued_card`` remembers each card sent: its uuid, service, a hashed patient key,
the card key (finding code or order-check code) and a signature of the data it rested on (the
basis Observations with their version ids). ``feedback`` stores what the EHR reported (outcome,
override reason coding, accepted suggestion ids, timestamps). A card overridden for a patient and
card key is not shown again for ``suppression_days`` unless its data signature changed: a new or
amended result brings it back.

Data minimisation: patient ids are stored only as salted SHA-256 keys; the free-text
``userComment`` is not stored (only whether one was given); tokens never reach this module.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from rls_screen.cds.models import FeedbackItem
from rls_screen.cds.state_db import open_state_db

SCHEMA = """
CREATE TABLE IF NOT EXISTS issued_card (
    uuid TEXT PRIMARY KEY,
    service_id TEXT NOT NULL,
    subject_key TEXT NOT NULL,
    card_key TEXT NOT NULL,
    data_signature TEXT NOT NULL,
    issued_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS issued_card_subject ON issued_card (subject_key, card_key, data_signature);
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
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
);
CREATE INDEX IF NOT EXISTS feedback_card ON feedback (card_uuid, outcome, received_at);
"""


@dataclass(frozen=True)
class IssuedCard:
    uuid: str
    service_id: str
    subject_key: str
    card_key: str
    data_signature: str


def data_signature(parts: Iterable[str]) -> str:
    """A stable digest of what a card rests on (e.g. 'Observation/1/_history/2')."""
    return hashlib.sha256("\x1f".join(sorted(parts)).encode()).hexdigest()[:32]


class FeedbackStore:
    """Thread-safe: one connection, one lock (SQLite in WAL mode; every operation is short)."""

    def __init__(self, path: Path, *, salt: str) -> None:
        self.path = path
        self._salt = salt
        self._lock = threading.Lock()
        self._db = open_state_db(path, SCHEMA, "feedback database")

    def subject_key(self, patient_id: str) -> str:
        return hashlib.sha256(f"{self._salt}\x1f{patient_id}".encode()).hexdigest()[:32]

    def record_cards(self, cards: Sequence[IssuedCard], issued_at: datetime) -> None:
        if not cards:
            return
        rows = [
            (c.uuid, c.service_id, c.subject_key, c.card_key, c.data_signature, issued_at.isoformat()) for c in cards
        ]
        with self._lock:
            self._db.executemany("INSERT OR IGNORE INTO issued_card VALUES (?, ?, ?, ?, ?, ?)", rows)

    def suppressed(self, subject_key: str, candidates: Sequence[tuple[str, str]], since: datetime) -> set[str]:
        """The card keys, among (card key, data signature) candidates, overridden since ``since``."""
        if not candidates:
            return set()
        found: set[str] = set()
        query = (
            "SELECT 1 FROM feedback f JOIN issued_card c ON f.card_uuid = c.uuid "
            "WHERE c.subject_key = ? AND c.card_key = ? AND c.data_signature = ? "
            "AND f.outcome = 'overridden' AND f.received_at >= ? LIMIT 1"
        )
        with self._lock:
            for card_key, signature in candidates:
                row = self._db.execute(query, (subject_key, card_key, signature, since.isoformat())).fetchone()
                if row is not None:
                    found.add(card_key)
        return found

    def add_feedback(self, service_id: str, items: Sequence[FeedbackItem], received_at: datetime) -> int:
        rows = []
        for item in items:
            reason = item.override_reason.reason if item.override_reason else None
            accepted = [s.id for s in item.accepted_suggestions] if item.accepted_suggestions else None
            rows.append(
                (
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
            )
        with self._lock:
            self._db.executemany(
                "INSERT INTO feedback (service_id, card_uuid, outcome, override_system, override_code, "
                "override_display, had_user_comment, accepted_suggestions, outcome_timestamp, received_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
        return len(rows)

    def prune(self, before: datetime) -> None:
        """Forget issued cards older than ``before`` that no feedback refers to."""
        with self._lock:
            self._db.execute(
                "DELETE FROM issued_card WHERE issued_at < ? AND uuid NOT IN (SELECT card_uuid FROM feedback)",
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


def window_start(now: datetime, days: int) -> datetime:
    return now - timedelta(days=days)
