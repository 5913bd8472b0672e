"""PostgreSQL for tests (a plugin, registered in tests/conftest.py): the local server, a fresh schema per test.

The server is the one at RLS_SCREEN_TEST_POSTGRES_URL, else the local one on 127.0.0.1:55432 that
deploy/db-up.sh starts (from Debian's postgresql package); when none answers the session starts it and
stops it at the end. Each test gets its own schema (``search_path`` in the URL), so tests share the server
without seeing each other's rows, and the schema is dropped afterwards.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

REPO = Path(__file__).resolve().parents[2]
DEFAULT_URL = "postgresql://postgres@127.0.0.1:55432/rls_screen"


def _answers(url: str) -> bool:
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=3) as connection:
            connection.execute("SELECT 1")
    except psycopg.Error:
        return False
    return True


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The URL of a running PostgreSQL server's test database (started here when none answers)."""
    url = os.environ.get("RLS_SCREEN_TEST_POSTGRES_URL", DEFAULT_URL)
    if _answers(url):
        yield url
        return
    if url != DEFAULT_URL:
        pytest.fail(f"no PostgreSQL server answers at RLS_SCREEN_TEST_POSTGRES_URL ({url.split('@')[-1]})")
    subprocess.run([str(REPO / "deploy" / "db-up.sh")], check=True, timeout=600)
    try:
        yield url
    finally:
        subprocess.run([str(REPO / "deploy" / "db-down.sh")], check=False, timeout=120)


def schema_url(server_url: str, schema: str) -> str:
    separator = "&" if "?" in server_url else "?"
    return f"{server_url}{separator}options={quote(f'-csearch_path={schema}')}"


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A state URL on a schema of its own, dropped after the test."""
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server, autocommit=True) as connection:
        connection.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield schema_url(postgres_server, schema)
    finally:
        with psycopg.connect(postgres_server, autocommit=True) as connection:
            connection.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", "postgresql"])
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty state store of each kind: an SQLite file, and a PostgreSQL schema."""
    if request.param == "sqlite":
        return str(tmp_path / "state.sqlite3")
    return str(request.getfixturevalue("postgres_url"))
