"""One interface to the state database, whichever it is: SQLite (one host) or PostgreSQL (shared).

Stores write their SQL once, in the common subset of both dialects (``INSERT ... ON CONFLICT``,
``CASE``, ``COALESCE``), with ``?`` or ``:name`` parameters; the PostgreSQL side rewrites them to
psycopg's ``%s`` / ``%(name)s`` (outside string literals). Where the dialects truly differ (row
locks with ``FOR UPDATE SKIP LOCKED``, ``GREATEST`` against SQLite's two-argument ``MAX``), a store
asks ``db.dialect`` and says why.

Every driver error comes out as ``StateStoreError``, so a store can fail closed (the replay cache)
or report (``ping`` for /ready) without knowing the driver. Messages name the database as
``StateTarget.described()`` does: never a password.

Transactions: ``with db.transaction() as tx:`` runs its statements atomically. On SQLite it is
``BEGIN IMMEDIATE`` (one writer at a time across processes, so a read-then-write inside it is safe);
on PostgreSQL it is READ COMMITTED, so a store that reads then writes the same rows locks them
(``SELECT ... FOR UPDATE``) or decides in one statement.
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from rls_screen.errors import ConfigurationError, RlsScreenError
from rls_screen.state.target import Dialect, StateTarget

Params = Sequence[Any] | Mapping[str, Any]


class StateStoreError(RlsScreenError):
    """The state database failed (unreachable, locked too long, a constraint): the caller decides."""

    exit_code = 3


@dataclass(frozen=True)
class Result:
    """What a statement returned: its rows (empty for a statement without any) and the rows it changed."""

    rows: list[tuple[Any, ...]]
    rowcount: int

    def one(self) -> tuple[Any, ...] | None:
        return self.rows[0] if self.rows else None

    def scalar(self) -> Any:
        return self.rows[0][0] if self.rows else None


class Transaction(Protocol):
    def execute(self, sql: str, params: Params = ()) -> Result: ...
    def executemany(self, sql: str, rows: Sequence[Params]) -> None: ...


class StateDatabase(Protocol):
    """A connection (or pool) to one state database, safe to use from several threads."""

    dialect: Dialect
    target: StateTarget

    def execute(self, sql: str, params: Params = ()) -> Result:
        """One statement in its own transaction (autocommit)."""
        ...

    def executemany(self, sql: str, rows: Sequence[Params]) -> None:
        """One statement for many rows, atomically."""
        ...

    def transaction(self) -> AbstractContextManager[Transaction]: ...
    def ping(self) -> bool: ...
    def close(self) -> None: ...


_LITERAL_OR_PARAM = re.compile(r"('(?:[^']|'')*')|(?<![:\w]):([A-Za-z_]\w*)|(\?)|(%)")


@lru_cache(maxsize=512)
def to_psycopg(sql: str) -> str:
    """``?`` -> ``%s``, ``:name`` -> ``%(name)s``, ``%`` -> ``%%``; string literals and ``::casts`` untouched."""

    def replace(match: re.Match[str]) -> str:
        literal, name, question, percent = match.groups()
        if literal is not None:
            return literal.replace("%", "%%")
        if name is not None:
            return f"%({name})s"
        if question is not None:
            return "%s"
        return "%%" if percent is not None else match.group(0)

    return _LITERAL_OR_PARAM.sub(replace, sql)


class _SqliteTransaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def execute(self, sql: str, params: Params = ()) -> Result:
        cursor = self._db.execute(sql, params)
        return Result(cursor.fetchall() if cursor.description else [], cursor.rowcount)

    def executemany(self, sql: str, rows: Sequence[Params]) -> None:
        self._db.executemany(sql, rows)


class DatabaseBase:
    """What both implementations do the same way, in terms of their own ``execute`` and ``transaction``."""

    def execute(self, sql: str, params: Params = ()) -> Result:
        raise NotImplementedError

    def transaction(self) -> AbstractContextManager[Transaction]:
        raise NotImplementedError

    def executemany(self, sql: str, rows: Sequence[Params]) -> None:
        """One statement for many rows, atomically."""
        if not rows:
            return
        with self.transaction() as tx:
            tx.executemany(sql, rows)

    def ping(self) -> bool:
        """Whether the database answers (for /ready)."""
        try:
            self.execute("SELECT 1")
        except StateStoreError:
            return False
        return True


def _enter_wal(db: sqlite3.Connection, busy_timeout_s: float) -> None:
    """Switch the file to WAL, waiting out other processes that hold it (several workers start at once).

    Changing the journal mode needs the file to itself, and SQLite answers "database is locked" at once
    instead of calling the busy handler when another connection is inside a transaction on a file not yet
    in WAL: retried here for up to ``busy_timeout_s`` (measured: four processes opening one new file at once).
    """
    deadline = time.monotonic() + busy_timeout_s
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if ("locked" not in str(error) and "busy" not in str(error)) or time.monotonic() >= deadline:
                raise
            time.sleep(0.02)


class SqliteDatabase(DatabaseBase):
    """One autocommit connection, used under a lock by this process's threads; WAL across processes.

    WAL lets readers and one writer work at once across processes (every uvicorn worker opens the
    file); synchronous=NORMAL skips the disk sync per commit (a power cut may lose the last moments,
    never corrupt the file); a writer waits up to ``busy_timeout_s`` for another process's lock.
    """

    dialect: Dialect = "sqlite"

    def __init__(self, target: StateTarget, *, busy_timeout_s: float = 5.0) -> None:
        self.target = target
        self._lock = threading.RLock()
        path = Path(target.location)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=busy_timeout_s)
            _enter_wal(self._db, busy_timeout_s)
            self._db.execute("PRAGMA synchronous=NORMAL")
        except (OSError, sqlite3.Error) as error:
            raise ConfigurationError(
                f"state database {target.described()}: cannot open ({type(error).__name__})"
            ) from error

    def _fail(self, error: sqlite3.Error) -> StateStoreError:
        return StateStoreError(f"state database {self.target.described()}: {type(error).__name__}: {error}")

    def execute(self, sql: str, params: Params = ()) -> Result:
        with self._lock:
            try:
                return _SqliteTransaction(self._db).execute(sql, params)
            except sqlite3.Error as error:
                raise self._fail(error) from error

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as error:
                raise self._fail(error) from error
            try:
                yield _SqliteTransaction(self._db)
            except sqlite3.Error as error:
                self._db.execute("ROLLBACK")
                raise self._fail(error) from error
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            try:
                self._db.execute("COMMIT")
            except sqlite3.Error as error:
                self._db.execute("ROLLBACK")
                raise self._fail(error) from error

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def user_version(self) -> int:
        """SQLite's ``PRAGMA user_version`` (what releases before the migration table used)."""
        return int(self.execute("PRAGMA user_version").scalar() or 0)
