"""The shared state store: where CDS feedback, issued cards, the JWT replay cache, batch jobs, the re-screen
queue and the ``--since`` marks live (``RLS_SCREEN_STATE_URL``: SQLite or PostgreSQL; target.py)."""

from __future__ import annotations

from pathlib import Path

from rls_screen.state.database import Result, StateDatabase, StateStoreError, Transaction
from rls_screen.state.migrations import Migration, migrate, recorded_versions, table_columns
from rls_screen.state.target import Dialect, StateTarget, parse_state_url, sqlite_target

__all__ = [
    "Dialect",
    "Migration",
    "Result",
    "StateDatabase",
    "StateStoreError",
    "StateTarget",
    "Transaction",
    "migrate",
    "open_database",
    "parse_state_url",
    "recorded_versions",
    "sqlite_target",
    "state_target",
    "table_columns",
]


def state_target(state_url: str | None, default_file: Path) -> StateTarget:
    """The configured target (``RLS_SCREEN_STATE_URL``), else the part's own SQLite file ``default_file``."""
    return parse_state_url(state_url) if state_url else sqlite_target(default_file)


def open_database(target: StateTarget, *, pool_size: int = 4) -> StateDatabase:
    """A connection to ``target`` (PostgreSQL through a pool of at most ``pool_size`` connections)."""
    if target.dialect == "postgresql":
        from rls_screen.state.postgres import PostgresDatabase

        return PostgresDatabase(target, max_size=pool_size)
    from rls_screen.state.database import SqliteDatabase

    return SqliteDatabase(target)
