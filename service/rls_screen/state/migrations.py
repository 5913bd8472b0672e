"""Versioned schema migrations: one ``schema_migration`` table, numbered steps kept beside the store that owns them.

Why not Alembic: it brings SQLAlchemy, which nothing else here uses; the schema is a handful of
tables in a few components, each with its own short history; SQLite needs Alembic's batch mode for
most changes anyway. A small table and plain SQL per dialect keep every step readable and tested on
both databases.

Each component (``cds-feedback``, ``jwt-replay``, ``batch-jobs``, ...) lists its ``Migration`` steps
in order; ``migrate`` brings the database to the last one, in one transaction, and records each step
applied (version, description, time). Several processes may start at once: SQLite serialises them
with ``BEGIN IMMEDIATE``, PostgreSQL with a transaction-scoped advisory lock, so the steps run once.

Never a silent misread:
- a component recorded at a version newer than this release knows is refused (use the release that
  wrote it);
- a database from a release before this table (its tables exist, no version recorded) is *adopted*
  by the component's ``adopt`` function, which checks what is there and says which version it is, or
  refuses; a component that cannot tell is refused.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from rls_screen.errors import ConfigurationError
from rls_screen.state.database import StateDatabase, Transaction
from rls_screen.state.target import Dialect

# Advisory lock key for migrations (any fixed 64-bit number; 'rlsmigr' in ASCII).
_PG_LOCK_KEY = 0x726C736D696772

_TABLE = """CREATE TABLE IF NOT EXISTS schema_migration (
    component TEXT NOT NULL,
    version INTEGER NOT NULL,
    description TEXT NOT NULL,
    applied_at TEXT NOT NULL,
    PRIMARY KEY (component, version)
)"""


@dataclass(frozen=True)
class Migration:
    """Step ``version`` (1, 2, ...): its statements, the same for both dialects or one list per dialect."""

    version: int
    description: str
    statements: Sequence[str] = ()
    by_dialect: Mapping[Dialect, Sequence[str]] = field(default_factory=dict)

    def for_dialect(self, dialect: Dialect) -> Sequence[str]:
        return self.by_dialect.get(dialect, self.statements)


Adopt = Callable[[Transaction, Dialect], int]
"""For a database without a recorded version: 0 when the component has no tables yet, else the version
its existing tables are (checked), or a ConfigurationError."""


def table_columns(tx: Transaction, dialect: Dialect, table: str) -> tuple[str, ...]:
    """The columns of ``table`` in order (empty when it does not exist), for ``adopt`` checks."""
    if dialect == "sqlite":
        return tuple(row[1] for row in tx.execute(f"PRAGMA table_info({table})").rows)
    rows = tx.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
        "AND table_name = ? ORDER BY ordinal_position",
        (table,),
    ).rows
    return tuple(row[0] for row in rows)


def adopt_one_table(tx: Transaction, dialect: Dialect, table: str, columns: tuple[str, ...], what: str) -> int:
    """``adopt`` for a component whose earlier release kept one table: 0 when it does not exist, 1 when its columns
    are exactly ``columns`` (in order); any other layout is refused, never read."""
    found = table_columns(tx, dialect, table)
    if not found:
        return 0
    if found != columns:
        raise ConfigurationError(f"{what}'s table has columns {', '.join(found)}: not a layout this release knows")
    return 1


def recorded_versions(db: StateDatabase) -> dict[str, int]:
    """Component -> version recorded (empty for a database never migrated), for `rls-screen state status`."""
    with db.transaction() as tx:
        if db.dialect == "postgresql":
            _pg_prepare(tx)
        else:
            tx.execute(_TABLE)
        rows = tx.execute("SELECT component, MAX(version) FROM schema_migration GROUP BY component").rows
    return {component: int(version) for component, version in rows}


def _pg_prepare(tx: Transaction) -> None:
    tx.execute("SELECT pg_advisory_xact_lock(?)", (_PG_LOCK_KEY,))
    tx.execute(_TABLE)


def migrate(
    db: StateDatabase,
    component: str,
    steps: Sequence[Migration],
    *,
    adopt: Adopt | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> int:
    """Bring ``component`` to its last step; returns the version it was at before (0: new)."""
    latest = steps[-1].version if steps else 0
    if [s.version for s in steps] != list(range(1, latest + 1)):
        raise ValueError(f"{component}: migration versions must be 1..n in order")
    where = db.target.described()
    with db.transaction() as tx:
        if db.dialect == "postgresql":
            _pg_prepare(tx)
        else:
            tx.execute(_TABLE)
        found = tx.execute("SELECT MAX(version) FROM schema_migration WHERE component = ?", (component,)).scalar()
        if found is None:
            current = adopt(tx, db.dialect) if adopt is not None else 0
            if current:
                _record(tx, component, current, "adopted: tables of an earlier release, checked", clock)
        else:
            current = int(found)
        if current > latest:
            raise ConfigurationError(
                f"state database {where}: {component} is at schema version {current}, newer than this release "
                f"reads ({latest}); use the release that wrote it"
            )
        for step in steps[current:]:
            for statement in step.for_dialect(db.dialect):
                tx.execute(statement)
            _record(tx, component, step.version, step.description, clock)
    return current


def _record(tx: Transaction, component: str, version: int, description: str, clock: Callable[[], datetime]) -> None:
    tx.execute(
        "INSERT INTO schema_migration (component, version, description, applied_at) VALUES (?, ?, ?, ?)",
        (component, version, description, clock().isoformat()),
    )
