"""The state database on PostgreSQL (psycopg 3 with its connection pool), for replicas and runners that share it.

psycopg is imported here only, when a ``postgresql://`` state URL is configured: SQLite-only
installs need neither it nor libpq. The pool opens connections lazily up to ``max_size`` (each
uvicorn worker process has its own pool; size the server's ``max_connections`` for replicas x
workers x max_size). Statements run in autocommit unless inside ``transaction()``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from rls_screen.errors import ConfigurationError
from rls_screen.state.database import DatabaseBase, Params, Result, StateStoreError, Transaction, to_psycopg
from rls_screen.state.target import Dialect, StateTarget

if TYPE_CHECKING:
    import psycopg
    from psycopg_pool import ConnectionPool


class _PostgresTransaction:
    def __init__(self, connection: psycopg.Connection[Any]) -> None:
        self._connection = connection

    def execute(self, sql: str, params: Params = ()) -> Result:
        cursor = self._connection.execute(to_psycopg(sql), params or None)
        rows = cursor.fetchall() if cursor.description else []
        return Result(rows, cursor.rowcount)

    def executemany(self, sql: str, rows: Sequence[Params]) -> None:
        with self._connection.cursor() as cursor:
            cursor.executemany(to_psycopg(sql), rows)


class PostgresDatabase(DatabaseBase):
    dialect: Dialect = "postgresql"

    def __init__(self, target: StateTarget, *, max_size: int = 4, timeout_s: float = 5.0) -> None:
        try:
            import psycopg
            from psycopg_pool import ConnectionPool
        except ImportError as error:  # pragma: no cover - the dependency ships with the package
            raise ConfigurationError("a postgresql:// state URL needs psycopg and psycopg-pool installed") from error
        self.target = target
        self._errors: tuple[type[BaseException], ...] = (psycopg.Error,)
        self._timeout_s = timeout_s
        self._pool: ConnectionPool[Any] = ConnectionPool(
            target.location,
            min_size=1,
            max_size=max_size,
            kwargs={"autocommit": True, "connect_timeout": max(1, int(timeout_s)), "application_name": "rls-screen"},
            timeout=timeout_s,
            open=False,
            name="rls-screen-state",
        )
        try:
            self._pool.open(wait=True, timeout=timeout_s)
        except Exception as error:  # psycopg_pool.PoolTimeout or a connection error: the server is not there
            self._pool.close()
            raise ConfigurationError(
                f"state database {target.described()}: cannot connect ({type(error).__name__})"
            ) from error

    def _fail(self, error: BaseException) -> StateStoreError:
        return StateStoreError(f"state database {self.target.described()}: {type(error).__name__}")

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        from psycopg_pool import PoolTimeout

        try:
            with self._pool.connection(timeout=self._timeout_s) as connection:
                yield connection
        except PoolTimeout as error:
            raise self._fail(error) from error

    def execute(self, sql: str, params: Params = ()) -> Result:
        try:
            with self._connection() as connection:
                return _PostgresTransaction(connection).execute(sql, params)
        except self._errors as error:
            raise self._fail(error) from error

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        try:
            with self._connection() as connection, connection.transaction():
                yield _PostgresTransaction(connection)
        except self._errors as error:
            raise self._fail(error) from error

    def close(self) -> None:
        self._pool.close()
