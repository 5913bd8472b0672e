"""The CDS service's SQLite state file, opened the one way every part of the service uses it.

Feedback, override suppression and the JWT replay cache share one file, and every uvicorn worker
opens it: WAL lets readers and one writer work at once across processes; synchronous=NORMAL skips
the disk sync per commit (a power cut may lose the last moments, never corrupt the file).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from rls_screen.errors import ConfigurationError


def open_state_db(path: Path, schema: str, what: str) -> sqlite3.Connection:
    """An autocommit connection usable from any thread (callers hold their own lock), with ``schema`` applied."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=5.0)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(schema)
    except (OSError, sqlite3.Error) as error:
        raise ConfigurationError(f"{what} {path}: cannot open ({type(error).__name__})") from error
    return db
