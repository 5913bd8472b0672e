"""The state database interface on both dialects: statements, parameters, transactions, errors, migrations."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from rls_screen.errors import ConfigurationError
from rls_screen.state import (
    Dialect,
    Migration,
    StateDatabase,
    StateStoreError,
    Transaction,
    migrate,
    open_database,
    parse_state_url,
    recorded_versions,
    table_columns,
)
from rls_screen.state.database import to_psycopg

STEPS = (
    Migration(1, "create thing", ("CREATE TABLE thing (id TEXT PRIMARY KEY, n INTEGER NOT NULL)",)),
    Migration(
        2,
        "add note",
        by_dialect={
            "sqlite": ("ALTER TABLE thing ADD COLUMN note TEXT",),
            "postgresql": ("ALTER TABLE thing ADD COLUMN note TEXT",),
        },
    ),
)


def test_parameters_are_rewritten_outside_literals_only() -> None:
    assert to_psycopg("SELECT ? WHERE a = :name AND b LIKE 'x:%?' AND c::text = ?") == (
        "SELECT %s WHERE a = %(name)s AND b LIKE 'x:%%?' AND c::text = %s"
    )
    assert to_psycopg("SELECT 'it''s :not' , :yes") == "SELECT 'it''s :not' , %(yes)s"


@pytest.mark.parametrize(
    ("text", "dialect", "location"),
    [
        (
            "postgresql://u:secret@db.example.org:5432/rls",
            "postgresql",
            "postgresql://u:secret@db.example.org:5432/rls",
        ),
        ("postgres://db/rls?sslmode=verify-full", "postgresql", "postgres://db/rls?sslmode=verify-full"),
        ("sqlite:///var/lib/state.sqlite3", "sqlite", "/var/lib/state.sqlite3"),
        ("sqlite:state.sqlite3", "sqlite", "state.sqlite3"),
        ("/srv/state.sqlite3", "sqlite", "/srv/state.sqlite3"),
        ("var/state.sqlite3", "sqlite", "var/state.sqlite3"),
    ],
)
def test_state_urls_name_one_target(text: str, dialect: str, location: str) -> None:
    target = parse_state_url(text)
    assert (target.dialect, target.location) == (dialect, location)


@pytest.mark.parametrize("text", ["", "  ", "mysql://db/rls", "postgresql:///rls", "postgresql://db/", "sqlite:"])
def test_state_urls_that_name_nothing_usable_are_refused(text: str) -> None:
    with pytest.raises(ConfigurationError):
        parse_state_url(text)


def test_a_password_is_never_described() -> None:
    described = parse_state_url("postgresql://rls:s3cr3t@db.example.org:6432/rls?sslmode=require").described()
    assert "s3cr3t" not in described
    assert described == "postgresql://rls@db.example.org:6432/rls"


def test_statements_transactions_and_rollback(state_url: str) -> None:
    db = open_database(parse_state_url(state_url))
    try:
        db.execute("CREATE TABLE kv (k TEXT PRIMARY KEY, v INTEGER NOT NULL)")
        db.executemany("INSERT INTO kv VALUES (?, ?)", [("a", 1), ("b", 2)])
        changed = db.execute("UPDATE kv SET v = v + :by WHERE k LIKE 'a%'", {"by": 10})
        assert changed.rowcount == 1
        assert db.execute("SELECT k, v FROM kv ORDER BY k").rows == [("a", 11), ("b", 2)]
        with pytest.raises(RuntimeError):
            fail_mid_transaction(db)
        assert db.execute("SELECT COUNT(*) FROM kv").scalar() == 2  # nothing of the failed transaction stays
        with pytest.raises(StateStoreError):
            db.execute("INSERT INTO kv VALUES ('a', 1)")  # a constraint: the driver's error, as ours
        upsert = "INSERT INTO kv VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v WHERE kv.v < excluded.v"
        assert db.execute(upsert, ("b", 1)).rowcount == 0
        assert db.execute(upsert, ("b", 5)).rowcount == 1
        assert db.ping()
    finally:
        db.close()


def fail_mid_transaction(db: StateDatabase) -> None:
    with db.transaction() as tx:
        tx.execute("INSERT INTO kv VALUES ('c', 3)")
        raise RuntimeError("the caller fails mid-transaction")


def test_concurrent_writers_lose_nothing(state_url: str) -> None:
    db = open_database(parse_state_url(state_url))
    try:
        db.execute("CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)")
        db.execute("INSERT INTO counter VALUES (1, 0)")

        def bump() -> None:
            for _ in range(25):
                db.execute("UPDATE counter SET n = n + 1 WHERE id = 1")

        threads = [threading.Thread(target=bump) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert db.execute("SELECT n FROM counter").scalar() == 100
    finally:
        db.close()


def test_migrations_apply_once_in_order_and_are_recorded(state_url: str) -> None:
    target = parse_state_url(state_url)
    db = open_database(target)
    try:
        at = datetime(2026, 12, 2, tzinfo=UTC)
        assert migrate(db, "things", STEPS[:1], clock=lambda: at) == 0
        assert recorded_versions(db) == {"things": 1}
        assert migrate(db, "things", STEPS, clock=lambda: at) == 1  # an upgrade adds step 2 only
        with db.transaction() as tx:
            assert table_columns(tx, db.dialect, "thing") == ("id", "n", "note")
        assert migrate(db, "things", STEPS) == 2  # nothing left to do
        rows = db.execute("SELECT version, description FROM schema_migration WHERE component = 'things' ORDER BY 1")
        assert rows.rows == [(1, "create thing"), (2, "add note")]
    finally:
        db.close()


def test_a_newer_schema_is_refused_never_misread(state_url: str) -> None:
    db = open_database(parse_state_url(state_url))
    try:
        migrate(db, "things", STEPS)
        with pytest.raises(ConfigurationError, match="newer than this release"):
            migrate(db, "things", STEPS[:1])
    finally:
        db.close()


def test_tables_of_an_earlier_release_are_adopted_or_refused(state_url: str) -> None:
    db = open_database(parse_state_url(state_url))
    try:
        db.execute("CREATE TABLE thing (id TEXT PRIMARY KEY, n INTEGER NOT NULL)")

        def adopt(tx: Transaction, dialect: Dialect) -> int:
            columns = table_columns(tx, dialect, "thing")
            if columns == ("id", "n"):
                return 1
            raise ConfigurationError(f"thing has columns {columns}")

        assert migrate(db, "things", STEPS, adopt=adopt) == 1
        assert recorded_versions(db) == {"things": 2}
        db.execute("CREATE TABLE other (x TEXT)")
        with pytest.raises(ConfigurationError, match="columns"):
            migrate(db, "others", STEPS, adopt=adopt_other)
    finally:
        db.close()


def adopt_other(tx: Transaction, dialect: Dialect) -> int:
    raise ConfigurationError(f"other has columns {table_columns(tx, dialect, 'other')}")


def test_concurrent_starts_migrate_once(state_url: str) -> None:
    target = parse_state_url(state_url)
    errors: list[BaseException] = []

    def start() -> None:
        db = open_database(target)
        try:
            migrate(db, "things", STEPS)
        except BaseException as error:  # collected: the assertion below reports it
            errors.append(error)
        finally:
            db.close()

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    db = open_database(target)
    try:
        assert db.execute("SELECT COUNT(*) FROM schema_migration").scalar() == 2
    finally:
        db.close()


def test_an_unreachable_postgresql_is_a_clear_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"cannot connect") as raised:
        open_database(parse_state_url("postgresql://rls:pw@127.0.0.1:9/rls?connect_timeout=1"))
    assert "pw" not in str(raised.value)
