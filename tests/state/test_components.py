"""Every registered component migrates on both dialects; `rls-screen state status|migrate` reports and upgrades them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rls_screen.state import migrate, open_database, parse_state_url, recorded_versions
from rls_screen.state.components import STORE_MODULES, components


def test_components_have_unique_names_and_steps_from_1() -> None:
    found = components()
    assert len(found) >= len(STORE_MODULES)
    assert len({c.name for c in found}) == len(found)
    for component in found:
        assert [step.version for step in component.steps] == list(range(1, component.latest + 1))


def test_every_component_migrates_once_beside_the_others(state_url: str) -> None:
    db = open_database(parse_state_url(state_url))
    try:
        for component in components():
            assert migrate(db, component.name, component.steps, adopt=component.adopt) == 0
        for component in components():  # a second run (another pod, the pre-upgrade hook) changes nothing
            assert migrate(db, component.name, component.steps, adopt=component.adopt) == component.latest
        assert recorded_versions(db) == {c.name: c.latest for c in components()}
    finally:
        db.close()


def _cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rls_screen.cli", *args],
        env={**os.environ, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_status_then_migrate_then_status(state_url: str, tmp_path: Path) -> None:
    # A password in the URL (ignored by the local server's trust auth) must never be printed.
    url = state_url.replace("postgres@", "postgres:not-for-print@", 1)
    env = {"RLS_SCREEN_STATE_URL": url, "RLS_SCREEN_STATE_DIR": str(tmp_path / "var")}
    before = _cli("state", "status", env=env, cwd=tmp_path)
    assert before.returncode == 1, before.stderr  # migrate has work to do
    assert "cds-feedback" in before.stdout
    assert "not recorded" in before.stdout
    done = _cli("state", "migrate", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "cds-feedback: 1 (migrated from nothing)" in done.stdout
    after = _cli("state", "status", env=env, cwd=tmp_path)
    assert after.returncode == 0, after.stderr
    assert "jwt-replay" in after.stdout
    assert "1, up to date" in after.stdout
    assert parse_state_url(url).described() in after.stdout
    assert "not-for-print" not in before.stdout + done.stdout + after.stdout + after.stderr
    assert not (tmp_path / "var").exists()  # with RLS_SCREEN_STATE_URL, no default file is created


def test_status_reports_a_newer_component_and_migrate_refuses(state_url: str, tmp_path: Path) -> None:
    db = open_database(parse_state_url(state_url))
    try:
        recorded_versions(db)  # creates the migration table
        db.execute(
            "INSERT INTO schema_migration VALUES ('cds-feedback', 7, 'from a later release', '2027-01-01T00:00:00')"
        )
    finally:
        db.close()
    env = {"RLS_SCREEN_STATE_URL": state_url}
    status = _cli("state", "status", env=env, cwd=tmp_path)
    assert status.returncode == 3
    assert "NEWER than this release" in status.stdout
    refused = _cli("state", "migrate", env=env, cwd=tmp_path)
    assert refused.returncode == 3
    assert "newer than this release" in refused.stderr


def test_without_a_state_url_the_default_file_is_used(tmp_path: Path) -> None:
    env = {"RLS_SCREEN_STATE_DIR": str(tmp_path / "var")}
    environment = {k: v for k, v in os.environ.items() if k != "RLS_SCREEN_STATE_URL"}
    result = subprocess.run(
        [sys.executable, "-m", "rls_screen.cli", "state", "migrate"],
        env={**environment, **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "var" / "cds.sqlite3").exists()
    db = open_database(parse_state_url(str(tmp_path / "var" / "cds.sqlite3")))
    try:
        assert recorded_versions(db) == {"cds-feedback": 1, "jwt-replay": 1}
    finally:
        db.close()


@pytest.mark.parametrize("action", ["status", "migrate"])
def test_an_unreachable_server_is_one_line_without_password(action: str, tmp_path: Path) -> None:
    env = {"RLS_SCREEN_STATE_URL": "postgresql://rls:hidden@127.0.0.1:9/rls?connect_timeout=1"}
    result = _cli("state", action, env=env, cwd=tmp_path)
    assert result.returncode == 3
    assert "cannot connect" in result.stderr
    assert "hidden" not in result.stderr
