"""Where the shared state lives: ``RLS_SCREEN_STATE_URL`` read as an SQLite file or a PostgreSQL URL.

State is what the service and the batch keep between calls and runs: CDS feedback and override
suppression, the cards issued, the JWT replay cache, batch jobs, the re-screen queue and the
``--since`` marks. Without the setting each part keeps its own SQLite file under the state directory,
as one host needs. With it, every part uses the one place it names:

- ``postgresql://user@host:5432/db`` (or ``postgres://``): a PostgreSQL database, what several
  replicas and batch runners share. Anything libpq reads in a URL works (``sslmode=verify-full``,
  ``options=-csearch_path=rls``); a password belongs in a Secret, and is never printed.
- ``sqlite:///abs/path.sqlite3``, ``sqlite:relative.sqlite3`` or a plain file path: one SQLite file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from rls_screen.errors import ConfigurationError

Dialect = Literal["sqlite", "postgresql"]


@dataclass(frozen=True)
class StateTarget:
    """One state location. ``location`` is the file path (sqlite) or the libpq URL (postgresql)."""

    dialect: Dialect
    location: str

    @property
    def path(self) -> Path:
        if self.dialect != "sqlite":
            raise ValueError("only an SQLite target has a path")
        return Path(self.location)

    def described(self) -> str:
        """For messages and logs: the file, or the URL without its password."""
        if self.dialect == "sqlite":
            return self.location
        parts = urlsplit(self.location)
        host = parts.hostname or ""
        netloc = f"{parts.username}@{host}" if parts.username else host
        if parts.port:
            netloc += f":{parts.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def sqlite_target(path: Path) -> StateTarget:
    return StateTarget("sqlite", str(path))


def parse_state_url(text: str) -> StateTarget:
    """The target ``text`` names; a ConfigurationError for anything else (never a guess)."""
    value = text.strip()
    if not value:
        raise ConfigurationError("RLS_SCREEN_STATE_URL is empty: give a PostgreSQL URL or an SQLite file path")
    scheme = value.split(":", 1)[0].lower() if ":" in value else ""
    if scheme in ("postgresql", "postgres"):
        parts = urlsplit(value)
        if not parts.hostname and "host=" not in parts.query:
            raise ConfigurationError("RLS_SCREEN_STATE_URL: a PostgreSQL URL needs a host")
        if not parts.path.strip("/"):
            raise ConfigurationError("RLS_SCREEN_STATE_URL: a PostgreSQL URL needs a database name")
        return StateTarget("postgresql", value)
    if scheme == "sqlite":
        path = value[len("sqlite:") :]
        path = path[2:] if path.startswith("//") else path  # sqlite:///abs -> /abs, sqlite:rel -> rel
        if not path:
            raise ConfigurationError("RLS_SCREEN_STATE_URL: an sqlite: URL needs a file path")
        return sqlite_target(Path(path))
    if scheme and len(scheme) > 1 and "/" not in scheme:  # mysql://, redis://: not ours (C:\ stays a path)
        raise ConfigurationError(
            f"RLS_SCREEN_STATE_URL: scheme {scheme!r} is not supported (postgresql:// or an SQLite file path)"
        )
    return sqlite_target(Path(value))
