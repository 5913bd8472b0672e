"""The ``--since`` marks on both state databases: a mark moves only when its job finished, once."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from rls_screen.errors import ConfigurationError, InputError
from rls_screen.rescreen.since import SinceMarks
from rls_screen.state import parse_state_url

SCOPE = "http://fhir.example/fhir all"
MARK = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def test_a_proposed_mark_becomes_the_mark_when_its_job_finishes_once(state_url: str) -> None:
    marks = SinceMarks(parse_state_url(state_url))
    try:
        with pytest.raises(InputError, match="no earlier --since run"):
            marks.resolve("last", SCOPE)
        marks.propose(SCOPE, MARK, "job-1")
        assert marks.mark(SCOPE) is None  # not before every patient of job-1 was screened
        assert marks.job_finished("job-other") is None
        assert marks.job_finished("job-1") == MARK
        assert marks.job_finished("job-1") is None  # a second runner finishing the same job moves nothing
        assert marks.resolve("last", SCOPE) == MARK
        later = datetime(2026, 12, 2, tzinfo=UTC)
        marks.propose(SCOPE, later, "job-2")
        assert marks.resolve("last", SCOPE) == MARK
        assert marks.job_finished("job-2") == later
    finally:
        marks.close()


def test_marks_of_the_earlier_release_are_adopted_and_another_layout_refused(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "rescreen.sqlite3") as db:
        db.execute("CREATE TABLE since_mark (scope TEXT PRIMARY KEY, mark TEXT, pending_mark TEXT, pending_job TEXT)")
        db.execute("INSERT INTO since_mark VALUES (?, ?, NULL, NULL)", (SCOPE, MARK.isoformat()))
    marks = SinceMarks(tmp_path / "rescreen.sqlite3")
    try:
        assert marks.mark(SCOPE) == MARK
    finally:
        marks.close()
    with sqlite3.connect(tmp_path / "other.sqlite3") as db:
        db.execute("CREATE TABLE since_mark (scope TEXT PRIMARY KEY, mark TEXT)")
    with pytest.raises(ConfigurationError, match="columns scope, mark"):
        SinceMarks(tmp_path / "other.sqlite3")
