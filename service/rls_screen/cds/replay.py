"""The JWT replay cache: each (iss, jti) pair is accepted once until its token expires.

In memory for one process, or in the state store (``rls_screen.state``: the service's SQLite file,
or the PostgreSQL database that every replica shares), so every uvicorn worker process and every
replica sees every other's tokens. Fails closed: without the replay check a token could be used twice.

Component ``jwt-replay`` in ``schema_migration``; version 1 is the table earlier releases created in
the service's SQLite file (adopted when its columns are exactly these).
"""

from __future__ import annotations

import threading
from pathlib import Path

from rls_screen.cds.errors import AuthenticationError
from rls_screen.cds.settings import get_cds_settings
from rls_screen.errors import ConfigurationError
from rls_screen.settings import get_settings
from rls_screen.state import Dialect, Migration, StateDatabase, StateStoreError, Transaction, migrate, table_columns
from rls_screen.state.components import Component


class ReplayCache:
    """(iss, jti) pairs seen, kept until their token expires; bounded by the token lifetime cap.

    In memory: right for one process (tests, a single uvicorn worker). Several workers must share
    what they have seen, or a token replayed to another worker would pass: see ``StoredReplayCache``.
    """

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()
        self._next_sweep = 0.0

    def first_use(self, issuer: str, jti: str, expires_at: float, now: float) -> bool:
        with self._lock:
            if now >= self._next_sweep:
                self._seen = {k: exp for k, exp in self._seen.items() if exp > now}
                self._next_sweep = now + 60.0
            key = (issuer, jti)
            previous = self._seen.get(key)
            if previous is not None and previous > now:
                return False
            self._seen[key] = expires_at
            return True

    def __len__(self) -> int:
        return len(self._seen)


COMPONENT = "jwt-replay"
COLUMNS = ("issuer", "jti", "expires_at")
STEPS = (
    Migration(
        1,
        "jwt_seen: (issuer, jti) until the token expires",
        by_dialect={
            # Epoch seconds: SQLite's REAL is a double; PostgreSQL's REAL would be single precision
            # (about 2 minutes of resolution at today's epoch), so DOUBLE PRECISION there.
            "sqlite": (
                "CREATE TABLE jwt_seen (issuer TEXT NOT NULL, jti TEXT NOT NULL, expires_at REAL NOT NULL, "
                "PRIMARY KEY (issuer, jti)) WITHOUT ROWID",
            ),
            "postgresql": (
                "CREATE TABLE jwt_seen (issuer TEXT NOT NULL, jti TEXT NOT NULL, "
                "expires_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (issuer, jti))",
            ),
        },
    ),
)


def adopt_replay_table(tx: Transaction, dialect: Dialect) -> int:
    """Earlier releases kept ``jwt_seen`` in the SQLite file without a version: these exact columns are version 1."""
    found = table_columns(tx, dialect, "jwt_seen")
    if not found:
        return 0
    if dialect == "sqlite" and found == COLUMNS:
        return 1
    # No release before the migration table used PostgreSQL, and other columns mean another layout.
    raise ConfigurationError(
        f"state database: table jwt_seen ({', '.join(found)}) has no recorded {COMPONENT} version; "
        "refusing to guess what it holds"
    )


def _default_file() -> Path:
    return get_cds_settings().feedback_db_path(get_settings().state_dir)


STATE_COMPONENTS = (Component(COMPONENT, STEPS, adopt_replay_table, default_file=_default_file),)

_FIRST_USE = (
    "INSERT INTO jwt_seen (issuer, jti, expires_at) VALUES (?, ?, ?) "
    "ON CONFLICT (issuer, jti) DO UPDATE SET expires_at = excluded.expires_at WHERE jwt_seen.expires_at <= ?"
)


class StoredReplayCache:
    """The replay cache shared by every worker process and replica, in the state store.

    One statement decides first use atomically across processes on both dialects: the insert
    succeeds for a new (iss, jti), or replaces a row whose token has expired; otherwise it changes
    nothing (a replay). PostgreSQL's ``ON CONFLICT`` waits for a concurrent insert of the same key
    and then tests the ``WHERE`` on the row it wrote, so two replicas never both see a first use.
    SQLite: about 0.1 ms per call (WAL with synchronous=NORMAL does not sync on every commit; a power
    cut may forget the last few jti, whose tokens expire within minutes anyway).
    """

    def __init__(self, db: StateDatabase) -> None:
        self.db = db
        self._lock = threading.Lock()
        self._next_sweep = 0.0
        migrate(db, COMPONENT, STEPS, adopt=adopt_replay_table)

    def first_use(self, issuer: str, jti: str, expires_at: float, now: float) -> bool:
        try:
            with self._lock:
                sweep = now >= self._next_sweep
                if sweep:
                    self._next_sweep = now + 60.0
            if sweep:
                self.db.execute("DELETE FROM jwt_seen WHERE expires_at <= ?", (now,))
            changed = self.db.execute(_FIRST_USE, (issuer, jti, expires_at, now)).rowcount
        except StateStoreError as error:
            # Fail closed: without the replay check a token could be used twice.
            raise AuthenticationError(f"replay check unavailable ({error})") from error
        return changed == 1

    def __len__(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM jwt_seen").scalar())
