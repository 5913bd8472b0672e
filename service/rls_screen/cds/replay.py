"""The JWT replay cache: each (iss, jti) pair is accepted once until its token expires.

In memory for one process, or in the service's SQLite state file, so every uvicorn worker process
sees every other's tokens. Fails closed: without the replay check a token could be used twice.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from rls_screen.cds.errors import AuthenticationError
from rls_screen.cds.state_db import open_state_db


class ReplayCache:
    """(iss, jti) pairs seen, kept until their token expires; bounded by the token lifetime cap.

    In memory: right for one process (tests, a single uvicorn worker). Several workers must share
    what they have seen, or a token replayed to another worker would pass: see ``SqliteReplayCache``.
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


REPLAY_SCHEMA = """
CREATE TABLE IF NOT EXISTS jwt_seen (
    issuer TEXT NOT NULL,
    jti TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (issuer, jti)
) WITHOUT ROWID;
"""


class SqliteReplayCache:
    """The replay cache shared by every worker process of the service, in an SQLite file (WAL).

    One statement decides first use atomically across processes: the insert succeeds for a new
    (iss, jti), or replaces a row whose token has expired; otherwise it changes nothing (a replay).
    About 0.1 ms per call: WAL with synchronous=NORMAL does not sync to disk on every commit (a
    power cut may forget the last few jti, whose tokens expire within minutes anyway).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._next_sweep = 0.0
        self._db = open_state_db(path, REPLAY_SCHEMA, "JWT replay database")

    def first_use(self, issuer: str, jti: str, expires_at: float, now: float) -> bool:
        with self._lock:
            try:
                if now >= self._next_sweep:
                    self._db.execute("DELETE FROM jwt_seen WHERE expires_at <= ?", (now,))
                    self._next_sweep = now + 60.0
                changed = self._db.execute(
                    "INSERT INTO jwt_seen VALUES (?, ?, ?) ON CONFLICT (issuer, jti) DO UPDATE "
                    "SET expires_at = excluded.expires_at WHERE jwt_seen.expires_at <= ?",
                    (issuer, jti, expires_at, now),
                ).rowcount
            except sqlite3.Error as error:
                # Fail closed: without the replay check a token could be used twice.
                raise AuthenticationError(f"replay check unavailable ({type(error).__name__})") from error
        return bool(changed == 1)

    def __len__(self) -> int:
        with self._lock:
            (count,) = self._db.execute("SELECT count(*) FROM jwt_seen").fetchone()
        return int(count)
