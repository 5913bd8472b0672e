"""Where the batch and re-screen stores live: the state URL when set, else each one's own file as before."""

from __future__ import annotations

from pathlib import Path

import pytest

from rls_screen.batch.jobs import job_store_target
from rls_screen.errors import ConfigurationError
from rls_screen.rescreen.queue import rescreen_state_target
from rls_screen.rescreen.settings import RescreenSettings
from rls_screen.settings import Settings

PG = "postgresql://rls@db.example.org/rls"


def settings(tmp_path: Path, state_url: str | None = None) -> Settings:
    return Settings(state_dir=tmp_path, state_url=state_url)


def test_without_a_state_url_each_store_keeps_its_file_of_the_earlier_release(tmp_path: Path) -> None:
    assert job_store_target(settings(tmp_path)).location == str(tmp_path / "jobs.sqlite")
    assert rescreen_state_target(RescreenSettings(), settings(tmp_path)).location == str(tmp_path / "rescreen.sqlite3")
    own = RescreenSettings(db=tmp_path / "q.sqlite3")
    assert rescreen_state_target(own, settings(tmp_path)).location == str(tmp_path / "q.sqlite3")


def test_with_a_state_url_every_store_uses_it_unless_a_job_file_is_named(tmp_path: Path) -> None:
    shared = settings(tmp_path, PG)
    assert (job_store_target(shared).dialect, job_store_target(shared).location) == ("postgresql", PG)
    assert rescreen_state_target(RescreenSettings(), shared).location == PG
    assert job_store_target(shared, tmp_path / "one-off.sqlite").location == str(tmp_path / "one-off.sqlite")


def test_a_queue_file_and_a_state_url_together_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="both set"):
        rescreen_state_target(RescreenSettings(db=tmp_path / "q.sqlite3"), settings(tmp_path, PG))
