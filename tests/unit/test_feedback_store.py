"""The feedback store's schema: version 2 is scoped per client; a version-1 file is archived, not misread."""

from __future__ import annotations

import logging
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from rls_screen.cds.feedback import FeedbackStore, IssuedCard
from rls_screen.errors import ConfigurationError

pytestmark = pytest.mark.unit
NOW = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
# The schema before per-client scoping, as rls-screen wrote it (user_version never set).
V1_SCHEMA = """
CREATE TABLE issued_card (uuid TEXT PRIMARY KEY, service_id TEXT NOT NULL, subject_key TEXT NOT NULL,
    card_key TEXT NOT NULL, data_signature TEXT NOT NULL, issued_at TEXT NOT NULL);
CREATE INDEX issued_card_subject ON issued_card (subject_key, card_key, data_signature);
CREATE TABLE feedback (id INTEGER PRIMARY KEY AUTOINCREMENT, service_id TEXT NOT NULL, card_uuid TEXT NOT NULL,
    outcome TEXT NOT NULL, override_system TEXT, override_code TEXT, override_display TEXT,
    had_user_comment INTEGER NOT NULL, accepted_suggestions TEXT, outcome_timestamp TEXT NOT NULL,
    received_at TEXT NOT NULL);
CREATE INDEX feedback_card ON feedback (card_uuid, outcome, received_at);
CREATE TABLE jwt_seen (issuer TEXT NOT NULL, jti TEXT NOT NULL, expires_at REAL NOT NULL,
    PRIMARY KEY (issuer, jti)) WITHOUT ROWID;
INSERT INTO issued_card VALUES ('u1', 'rls-secondary-causes', 'k1', 'anemia', 's1', '2026-11-01T00:00:00+00:00');
INSERT INTO feedback (service_id, card_uuid, outcome, had_user_comment, outcome_timestamp, received_at)
    VALUES ('rls-secondary-causes', 'u1', 'overridden', 0, '2026-11-01T00:00:00+00:00', '2026-11-01T00:00:00+00:00');
INSERT INTO jwt_seen VALUES ('https://ehr.example.test', 'j1', 9999999999.0);
"""


def _v1_file(path: Path) -> Path:
    with sqlite3.connect(path) as db:
        db.executescript(V1_SCHEMA)
    return path


def _query(path: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as db:
        return db.execute(sql).fetchall()


def test_a_version_1_file_is_archived_and_never_read(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    path = _v1_file(tmp_path / "v1.sqlite3")
    store = FeedbackStore(path, salt="s")
    assert any("migrated to schema 2" in r.getMessage() for r in caplog.records)
    assert (store.count("issued_card"), store.count("feedback")) == (0, 0)
    store.record_cards([IssuedCard("u2", "svc", store.scope("iss", None, "p1"), "anemia", "s2")], NOW)
    store.close()
    assert _query(path, "PRAGMA user_version") == [(2,)]
    assert _query(path, "SELECT uuid FROM issued_card_v1") == [("u1",)]
    assert _query(path, "SELECT card_uuid FROM feedback_v1") == [("u1",)]
    assert _query(path, "SELECT jti FROM jwt_seen") == [("j1",)]  # the replay cache is untouched
    caplog.clear()
    reopened = FeedbackStore(path, salt="s")  # now a version-2 file: opened as it is
    assert reopened.count("issued_card") == 1
    assert not caplog.records


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "newer.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 3")
    with pytest.raises(ConfigurationError, match="schema version 3 is not one this rls-screen reads"):
        FeedbackStore(path, salt="s")


def test_version_2_with_other_columns_is_refused(tmp_path: Path) -> None:
    path = _v1_file(tmp_path / "mislabelled.sqlite3")
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 2")  # v1 tables under a v2 label: not to be read as v2
    with pytest.raises(ConfigurationError, match="refusing to guess"):
        FeedbackStore(path, salt="s")


def test_scope_keys_separate_issuer_tenant_and_patient(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path / "k.sqlite3", salt="s")
    scopes = [
        store.scope("https://a.example", None, "p1"),
        store.scope("https://a.example", "", "p1"),
        store.scope("https://a.example", "t1", "p1"),
        store.scope("https://b.example", None, "p1"),
        store.scope("https://a.example", None, "p2"),
    ]
    assert len({s.subject_key for s in scopes}) == len(scopes)
    assert len({s.client_key for s in scopes}) == 4  # p1 and p2 of one client share the client key
    assert scopes[0] == store.scope("https://a.example", None, "p1")
    assert FeedbackStore(tmp_path / "k2.sqlite3", salt="other").scope("https://a.example", None, "p1") != scopes[0]
