"""The feedback store on the state store: scoped per client, one suppression query, old files adopted or refused."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from rls_screen.cds.feedback import FeedbackStore, IssuedCard
from rls_screen.cds.models import FeedbackItem
from rls_screen.errors import ConfigurationError
from rls_screen.state import StateDatabase, open_database, parse_state_url, recorded_versions, sqlite_target

NOW = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
SVC = "rls-secondary-causes"
REASON = ("https://rls-screen.example/override", "not-relevant")
# The schema before per-client scoping, as rls-screen wrote it (user_version never set).
UNSCOPED_SCHEMA = """
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
# The scoped schema as the previous release wrote it (PRAGMA user_version 2, no schema_migration table).
USER_VERSION_2_SCHEMA = """
CREATE TABLE issued_card (client_key TEXT NOT NULL, service_id TEXT NOT NULL, uuid TEXT NOT NULL,
    subject_key TEXT NOT NULL, card_key TEXT NOT NULL, data_signature TEXT NOT NULL, override_reasons TEXT NOT NULL,
    suggestion_ids TEXT NOT NULL, issued_at TEXT NOT NULL, PRIMARY KEY (client_key, service_id, uuid));
CREATE INDEX issued_card_by_subject ON issued_card (client_key, service_id, subject_key, card_key, data_signature);
CREATE TABLE feedback (id INTEGER PRIMARY KEY AUTOINCREMENT, client_key TEXT NOT NULL, service_id TEXT NOT NULL,
    card_uuid TEXT NOT NULL, outcome TEXT NOT NULL, override_system TEXT, override_code TEXT, override_display TEXT,
    had_user_comment INTEGER NOT NULL, accepted_suggestions TEXT, outcome_timestamp TEXT NOT NULL,
    received_at TEXT NOT NULL);
CREATE INDEX feedback_by_card ON feedback (client_key, service_id, card_uuid, outcome, received_at);
PRAGMA user_version = 2;
"""


def _file(path: Path, script: str) -> Path:
    with sqlite3.connect(path) as db:
        db.executescript(script)
    return path


def _query(path: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as db:
        return db.execute(sql).fetchall()


def _open(path: Path) -> StateDatabase:
    return open_database(sqlite_target(path))


@pytest.fixture
def db(state_url: str) -> Iterator[StateDatabase]:
    database = open_database(parse_state_url(state_url))
    yield database
    database.close()


def _override(card: str, at: datetime = NOW, reason: tuple[str, str] = REASON) -> FeedbackItem:
    return FeedbackItem.model_validate(
        {
            "card": card,
            "outcome": "overridden",
            "overrideReason": {"reason": {"system": reason[0], "code": reason[1]}, "userComment": "not my text"},
            "outcomeTimestamp": at.isoformat(),
        }
    )


def _card(
    store: FeedbackStore, uuid: str, key: str, signature: str, *, issuer: str = "iss", patient: str = "p1"
) -> IssuedCard:
    return IssuedCard(uuid, SVC, store.scope(issuer, None, patient), key, signature, override_reasons=(REASON,))


def test_suppression_is_per_client_patient_card_and_data(db: StateDatabase) -> None:
    store = FeedbackStore(db, salt="s")
    cards = [
        _card(store, "u-anemia", "anemia", "sig-1"),
        _card(store, "u-ferritin", "ferritin", "sig-2"),
        _card(store, "u-other-client", "anemia", "sig-1", issuer="other"),
        _card(store, "u-other-patient", "anemia", "sig-1", patient="p2"),
    ]
    store.record_cards(cards, NOW)
    client = store.client_key("iss", None)
    outcome = store.add_feedback(client, SVC, [_override("u-anemia"), _override("u-other-client")], NOW)
    assert (outcome.recorded, outcome.ignored) == (1, {"unknown-card": 1})  # another client's card is not ours
    scope = store.scope("iss", None, "p1")
    since = NOW - timedelta(days=30)
    candidates = [("anemia", "sig-1"), ("ferritin", "sig-2"), ("kidney", "sig-3")]
    assert store.suppressed(SVC, scope, candidates, since) == {"anemia"}
    assert store.suppressed(SVC, scope, [("anemia", "sig-new")], since) == set()  # new data brings it back
    assert store.suppressed(SVC, store.scope("iss", None, "p2"), [("anemia", "sig-1")], since) == set()
    assert store.suppressed(SVC, store.scope("other", None, "p1"), [("anemia", "sig-1")], since) == set()
    assert store.suppressed("another-service", scope, [("anemia", "sig-1")], since) == set()
    assert store.suppressed(SVC, scope, candidates, NOW + timedelta(seconds=1)) == set()  # outside the window
    assert store.suppressed(SVC, scope, [], since) == set()


def test_feedback_must_name_what_the_card_offered(db: StateDatabase) -> None:
    store = FeedbackStore(db, salt="s")
    store.record_cards(
        [IssuedCard("u1", SVC, store.scope("iss", None, "p1"), "anemia", "s", (REASON,), ("sg-1",))], NOW
    )
    client = store.client_key("iss", None)
    accepted = FeedbackItem.model_validate(
        {
            "card": "u1",
            "outcome": "accepted",
            "acceptedSuggestions": [{"id": "sg-9"}],
            "outcomeTimestamp": NOW.isoformat(),
        }
    )
    outcome = store.add_feedback(client, SVC, [_override("u1", reason=("x", "y")), accepted, _override("u1")], NOW)
    assert (outcome.recorded, outcome.ignored) == (1, {"reason-not-offered": 1, "suggestion-not-offered": 1})
    assert store.count("feedback") == 1
    comments = db.execute("SELECT had_user_comment, override_code FROM feedback").rows
    assert comments == [(1, "not-relevant")]  # whether a comment was given, never its text


def test_prune_keeps_cards_that_feedback_refers_to(db: StateDatabase) -> None:
    store = FeedbackStore(db, salt="s")
    store.record_cards([_card(store, "old", "anemia", "s1"), _card(store, "old-kept", "ferritin", "s2")], NOW)
    store.record_cards([_card(store, "new", "kidney", "s3")], NOW + timedelta(days=40))
    store.add_feedback(store.client_key("iss", None), SVC, [_override("old-kept")], NOW)
    store.prune(NOW + timedelta(days=1))
    assert sorted(row[0] for row in db.execute("SELECT uuid FROM issued_card").rows) == ["new", "old-kept"]


def test_two_processes_on_one_database_see_each_others_overrides(state_url: str) -> None:
    """Two StateDatabase objects (two replicas' pools, or two workers' SQLite connections) on one store."""
    one, two = open_database(parse_state_url(state_url)), open_database(parse_state_url(state_url))
    try:
        first, second = FeedbackStore(one, salt="s"), FeedbackStore(two, salt="s")
        first.record_cards([_card(first, "u1", "anemia", "sig")], NOW)
        outcome = second.add_feedback(second.client_key("iss", None), SVC, [_override("u1")], NOW)  # via the other
        assert outcome.recorded == 1
        since = NOW - timedelta(days=1)
        assert first.suppressed(SVC, first.scope("iss", None, "p1"), [("anemia", "sig")], since) == {"anemia"}
        assert recorded_versions(two) == {"cds-feedback": 1}  # migrated once, by the first
    finally:
        one.close()
        two.close()


def test_an_unscoped_file_is_archived_and_never_read(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    path = _file(tmp_path / "v1.sqlite3", UNSCOPED_SCHEMA)
    db = _open(path)
    store = FeedbackStore(db, salt="s")
    assert any("archived as issued_card_v1/feedback_v1" in r.getMessage() for r in caplog.records)
    assert (store.count("issued_card"), store.count("feedback")) == (0, 0)
    store.record_cards([IssuedCard("u2", "svc", store.scope("iss", None, "p1"), "anemia", "s2")], NOW)
    db.close()
    assert _query(path, "PRAGMA user_version") == [(2,)]  # the previous release still reads the new tables
    assert _query(path, "SELECT uuid FROM issued_card_v1") == [("u1",)]
    assert _query(path, "SELECT card_uuid FROM feedback_v1") == [("u1",)]
    assert _query(path, "SELECT jti FROM jwt_seen") == [("j1",)]  # the replay cache is untouched
    caplog.clear()
    reopened = _open(path)  # now recorded as version 1: opened as it is
    assert FeedbackStore(reopened, salt="s").count("issued_card") == 1
    assert recorded_versions(reopened) == {"cds-feedback": 1}
    reopened.close()
    assert not caplog.records


def test_a_previous_release_file_is_adopted_with_its_overrides(tmp_path: Path) -> None:
    path = _file(tmp_path / "v2.sqlite3", USER_VERSION_2_SCHEMA)
    # Rows the previous release wrote, with its own salted keys: an override recorded before the upgrade.
    old = _open(tmp_path / "scratch.sqlite3")
    keys = FeedbackStore(old, salt="s").scope("iss", None, "p1")
    old.close()
    with sqlite3.connect(path) as raw:
        raw.execute(
            "INSERT INTO issued_card VALUES (?, ?, 'u1', ?, 'anemia', 'sig', '[]', '[]', ?)",
            (keys.client_key, SVC, keys.subject_key, NOW.isoformat()),
        )
        raw.execute(
            "INSERT INTO feedback (client_key, service_id, card_uuid, outcome, had_user_comment, outcome_timestamp, "
            "received_at) VALUES (?, ?, 'u1', 'overridden', 0, ?, ?)",
            (keys.client_key, SVC, NOW.isoformat(), NOW.isoformat()),
        )
    db = _open(path)
    store = FeedbackStore(db, salt="s")
    assert store.suppressed(SVC, keys, [("anemia", "sig")], NOW - timedelta(days=1)) == {"anemia"}
    described = db.execute("SELECT version, description FROM schema_migration WHERE component = 'cds-feedback'")
    assert [(v, d.split(":")[0]) for v, d in described.rows] == [(1, "adopted")]
    db.close()


def test_a_previous_release_file_with_a_table_dropped_gets_it_back_empty(tmp_path: Path) -> None:
    path = _file(tmp_path / "v2.sqlite3", USER_VERSION_2_SCHEMA + "DROP TABLE feedback;")
    db = _open(path)
    assert FeedbackStore(db, salt="s").count("feedback") == 0
    db.close()


def test_a_newer_user_version_is_refused(tmp_path: Path) -> None:
    path = _file(tmp_path / "newer.sqlite3", "PRAGMA user_version = 3;")
    db = _open(path)
    with pytest.raises(ConfigurationError, match="schema version 3 is not one this rls-screen reads"):
        FeedbackStore(db, salt="s")
    assert recorded_versions(db) == {}  # the whole migration rolled back: nothing recorded
    db.close()


def test_user_version_2_with_other_columns_is_refused(tmp_path: Path) -> None:
    path = _file(tmp_path / "mislabelled.sqlite3", UNSCOPED_SCHEMA + "PRAGMA user_version = 2;")
    db = _open(path)
    with pytest.raises(ConfigurationError, match="refusing to guess"):
        FeedbackStore(db, salt="s")
    db.close()
    assert _query(path, "SELECT uuid FROM issued_card") == [("u1",)]  # left as it was


def test_unrecorded_tables_on_postgresql_are_refused(postgres_url: str) -> None:
    db = open_database(parse_state_url(postgres_url))
    try:
        db.execute("CREATE TABLE feedback (id INTEGER)")
        with pytest.raises(ConfigurationError, match="no recorded cds-feedback version"):
            FeedbackStore(db, salt="s")
    finally:
        db.close()


def test_scope_keys_separate_issuer_tenant_and_patient(tmp_path: Path) -> None:
    db = _open(tmp_path / "k.sqlite3")
    store = FeedbackStore(db, salt="s")
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
    assert FeedbackStore(db, salt="other").scope("https://a.example", None, "p1") != scopes[0]
    db.close()
