"""Several `rls-screen batch` runners on one job, as real processes against the real HAPI server: the runners
share the patients (each screened and written once), one killed with kill -9 is taken over by the other, and
SIGTERM stops a runner at a checkpoint from which `--resume` finishes the job."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.fhir.test_batch import AS_OF, active_flags, expected_findings, load_panel
from tests.support.fhir_data import count, search

from rls_screen.batch.jobs import JobStore
from rls_screen.state import StateTarget, parse_state_url, sqlite_target

LEASE_S = 4
REPO = Path(__file__).resolve().parents[2]


def runner(env: dict[str, str], log: Path, *args: str) -> subprocess.Popen[bytes]:
    """One `rls-screen batch` process: one group of 3 patients at a time, short leases."""
    command = [sys.executable, "-m", "rls_screen.cli", "batch", "--concurrency", "1", "--group-size", "3"]
    with log.open("ab") as out:  # the child keeps its own descriptor
        return subprocess.Popen(
            [*command, "--lease", str(LEASE_S), *args], env=env, stdout=out, stderr=subprocess.STDOUT
        )


def wait_until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        time.sleep(0.2)
    return value


class Store:
    """The job store as the test reads it, opened afresh each time (as an operator's look would be)."""

    def __init__(self, target: StateTarget) -> None:
        self.target = target

    def read(self, read: Callable[[JobStore], Any]) -> Any:
        if self.target.dialect == "sqlite" and not self.target.path.exists():
            return None
        store = JobStore(self.target)
        try:
            return read(store)
        finally:
            store.close()

    def job(self) -> str | None:
        ids = self.read(lambda store: store.job_ids())
        return ids[0] if ids else None

    def screened_by(self, job_id: str) -> dict[str, str | None]:
        return self.read(lambda store: {row.patient_id: row.screened_by for row in store.rows(job_id)})

    def done(self, job_id: str) -> int:
        return int(self.read(lambda store: store.counts(job_id)["done"]))

    def registered(self) -> str | None:
        """The job's id once its patients are registered (one transaction), None before."""
        job_id = self.job()
        return job_id if job_id and self.read(lambda store: store.patient_count(job_id)) else None


@contextmanager
def stopped_at_the_end(*processes: subprocess.Popen[bytes]) -> Iterator[None]:
    """A test that fails midway leaves no runner behind."""
    try:
        yield
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)


def of_process(runner_id: str, process: subprocess.Popen[bytes]) -> bool:
    """A runner id is host:pid:random (batch/claims.py)."""
    return runner_id.split(":")[1] == str(process.pid)


def env_for(tmp_path: Path, fhir_base_url: str, state_url: str | None = None) -> dict[str, str]:
    env = {
        **os.environ,
        "RLS_SCREEN_STATE_DIR": str(tmp_path / "state"),
        "FHIR_BASE_URL": fhir_base_url,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    env.pop("RLS_SCREEN_STATE_URL", None)
    if state_url is not None:
        env["RLS_SCREEN_STATE_URL"] = state_url
    return env


def assert_written_once(fhir_base_url: str, patient_ids: list[str], expected: dict[str, set[str]]) -> None:
    """One RiskAssessment and one Provenance of it per patient, no duplicate Flag, the expected Flags active."""
    for patient_id in patient_ids:
        assessments = search(fhir_base_url, "RiskAssessment", subject=f"Patient/{patient_id}")
        assert len(assessments) == 1, patient_id
        target = f"RiskAssessment/{assessments[0]['id']}"
        assert count(fhir_base_url, "Provenance", target=target) == 1, patient_id
        flags = [f["identifier"][0]["value"] for f in search(fhir_base_url, "Flag", subject=f"Patient/{patient_id}")]
        assert len(flags) == len(set(flags)), patient_id
        assert active_flags(fhir_base_url, patient_id) == expected[patient_id]


def test_two_runners_on_postgresql_share_the_patients_each_screened_once(
    fhir_base_url: str, unique_prefix: str, tmp_path: Path, postgres_url: str
) -> None:
    panel = load_panel(fhir_base_url, unique_prefix, 36, seed=21)
    env = env_for(tmp_path, fhir_base_url, postgres_url)
    store = Store(parse_state_url(postgres_url))
    first = runner(env, tmp_path / "first.log", "--group", f"Group/{unique_prefix}-panel", "--as-of", AS_OF.isoformat())
    with stopped_at_the_end(first):
        job_id = wait_until(store.registered, 120, "the first runner registers the job")
        second = runner(env, tmp_path / "second.log", "--resume", job_id)  # joins the job while it runs
        with stopped_at_the_end(second):
            assert second.wait(timeout=300) == 0, (tmp_path / "second.log").read_text()
            assert first.wait(timeout=300) == 0, (tmp_path / "first.log").read_text()

    rows = store.read(lambda s: list(s.rows(job_id)))
    assert len(rows) == 36
    assert {(row.status, row.attempts) for row in rows} == {("done", 1)}  # each patient recorded once
    by_runner: dict[str | None, int] = {}
    for row in rows:
        by_runner[row.screened_by] = by_runner.get(row.screened_by, 0) + 1
    assert len(by_runner) == 2, by_runner  # both runners screened, each patient by exactly one of them
    assert None not in by_runner
    assert store.read(lambda s: s.claims(job_id)) == {}
    ids = [record.patient["id"] for record in panel.patients]
    assert_written_once(fhir_base_url, ids, expected_findings(panel))


def test_a_runner_killed_with_sigkill_is_taken_over_by_the_other(
    fhir_base_url: str, unique_prefix: str, tmp_path: Path, postgres_url: str
) -> None:
    panel = load_panel(fhir_base_url, unique_prefix, 45, seed=23)
    env = env_for(tmp_path, fhir_base_url, postgres_url)
    store = Store(parse_state_url(postgres_url))
    first = runner(env, tmp_path / "first.log", "--group", f"Group/{unique_prefix}-panel", "--as-of", AS_OF.isoformat())
    with stopped_at_the_end(first):
        job_id = wait_until(store.registered, 120, "the first runner registers the job")
        second = runner(env, tmp_path / "second.log", "--resume", job_id)
        with stopped_at_the_end(second):
            # kill the first once both are at work (a runner holds the group it works on, and the next one)
            wait_until(lambda: len(set(store.read(lambda s: s.claims(job_id)).values())) == 2, 120, "both claim")
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=30)
            orphaned = {p for p, by in store.read(lambda s: s.claims(job_id)).items() if of_process(by, first)}
            assert orphaned, "the killed runner held patients"
            assert second.wait(timeout=300) == 0, (tmp_path / "second.log").read_text()

    rows = store.read(lambda s: list(s.rows(job_id)))
    assert {row.status for row in rows} == {"done"}
    assert store.read(lambda s: s.claims(job_id)) == {}
    # the killed runner's patients were claimed again (once its lease ran out) and screened by the other
    taken_over = [row for row in rows if row.patient_id in orphaned]
    assert all(row.screened_by is not None and not of_process(row.screened_by, first) for row in taken_over)
    ids = [record.patient["id"] for record in panel.patients]
    assert_written_once(fhir_base_url, ids, expected_findings(panel))


def test_sigterm_checkpoints_and_resume_finishes_the_job(
    fhir_base_url: str, unique_prefix: str, tmp_path: Path
) -> None:
    panel = load_panel(fhir_base_url, unique_prefix, 30, seed=29)
    db = tmp_path / "jobs.sqlite"
    env = env_for(tmp_path, fhir_base_url)
    store = Store(sqlite_target(db))
    group = ("--group", f"Group/{unique_prefix}-panel", "--as-of", AS_OF.isoformat(), "--job-db", str(db))
    process = runner(env, tmp_path / "stopped.log", *group)
    with stopped_at_the_end(process):
        job_id = wait_until(store.registered, 120, "the runner registers the job")
        wait_until(lambda: store.done(job_id) >= 6, 120, "the runner screens two groups")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=120) == 143
    out = (tmp_path / "stopped.log").read_text()
    assert "stopped on SIGTERM at a checkpoint" in out
    assert f"resume with: rls-screen batch --resume {job_id} --job-db {db}" in out
    counts = store.read(lambda s: s.counts(job_id))
    assert 6 <= counts["done"] < 30, counts
    assert counts["failed"] == 0
    assert store.read(lambda s: s.claims(job_id)) == {}  # nothing left half-claimed: no wait for a lease
    done_before = {p for p, by in store.screened_by(job_id).items() if by is not None}
    for patient_id in done_before:  # what is recorded done was written
        assert count(fhir_base_url, "RiskAssessment", subject=f"Patient/{patient_id}") == 1

    resumed = subprocess.run(
        [sys.executable, "-m", "rls_screen.cli", "batch", "--resume", job_id, "--job-db", str(db)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    rows = store.read(lambda s: list(s.rows(job_id)))
    assert {(row.status, row.attempts) for row in rows} == {("done", 1)}
    ids = [record.patient["id"] for record in panel.patients]
    assert_written_once(fhir_base_url, ids, expected_findings(panel))
