"""The FHIR server killed (SIGKILL) in the middle of a batch, restarted, and the job resumed.

It runs against a separate HAPI instance of its own (``separate_hapi``), so the shared server is
never touched. That server keeps its data in memory: the restart wipes it, so the test reloads the
panel before resuming, exactly as an operator would restore a server before ``batch --resume``.
The batch runs with two short retry rounds, so it gives up while the server is still down (riding
out a short outage in the same run is test_batch_rides_out_outage.py). The wipe also makes "each
patient screened once" visible: patients the job had finished before the kill have no write-back
on the restarted server, so any write-back found for them would mean the resumed job screened
them again.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.resilience.hapi_instance import SeparateHapi
from tests.resilience.helpers import (
    assert_written_exactly_once,
    batch_args,
    cli_env,
    done_count,
    expected_findings,
    job_ids,
    job_rows,
    load_panel,
    make_panel,
    run_cli,
    server_state,
)

pytestmark = [pytest.mark.fhir, pytest.mark.slow]

PATIENTS = 40
KILL_AFTER_DONE = 8


def test_server_killed_mid_batch_then_restarted_and_the_job_resumes_to_completion(
    separate_hapi: SeparateHapi, unique_prefix: str, tmp_path: Path
) -> None:
    base_url = separate_hapi.base_url
    panel = make_panel(unique_prefix, PATIENTS, seed=11)
    load_panel(base_url, panel)
    expected = expected_findings(panel)
    job_db, reports = tmp_path / "jobs.sqlite", tmp_path / "reports"
    # One client retry per read (not three) keeps the rounds against a dead server short.
    env = cli_env(tmp_path / "state", base_url, RLS_SCREEN_FHIR_MAX_RETRIES="1")

    with (tmp_path / "first.out").open("w") as out, (tmp_path / "first.err").open("w") as err:
        first = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rls_screen.cli",
                "-v",
                # Two short retry rounds (the defaults wait about two minutes for the server to come
                # back): this test is about a server that stays down until the job ends, then --resume.
                # Groups of 2: the job store fills in small steps, so the kill lands midway.
                *batch_args(
                    f"Group/{unique_prefix}-panel",
                    job_db,
                    reports,
                    "--retry-rounds",
                    "2",
                    "--retry-pause",
                    "2",
                    "--group-size",
                    "2",
                ),
            ],
            env=env,
            stdout=out,
            stderr=err,
            text=True,
        )
        try:
            deadline = time.monotonic() + 120
            while done_count(job_db) < KILL_AFTER_DONE and first.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            assert first.poll() is None, "the batch ended before the server could be killed"
            separate_hapi.kill()
            first_code = first.wait(timeout=180)
        finally:
            if first.poll() is None:
                first.kill()
                first.wait(timeout=30)
    first_out = (tmp_path / "first.out").read_text() + (tmp_path / "first.err").read_text()

    # The batch noticed, recorded transient failures and stopped with exit 1, resumable.
    assert first_code == 1, first_out
    (job_id,) = job_ids(job_db)
    rows = job_rows(job_db, job_id)
    done_before = {pid for pid, row in rows.items() if row.status == "done"}
    failed = {pid: row.reason or "" for pid, row in rows.items() if row.status == "failed"}
    assert KILL_AFTER_DONE <= len(done_before) < PATIENTS, first_out
    assert failed, first_out
    assert all(reason.startswith("transient:") for reason in failed.values()), failed
    assert "pending" not in {row.status for row in rows.values()}
    assert f"--resume {job_id}" in first_out

    separate_hapi.restart()
    assert server_state(base_url, expected).risk_assessments == dict.fromkeys(expected, ()), "not a fresh server"
    load_panel(base_url, panel)

    resumed = run_cli(["batch", "--resume", job_id, "--job-db", str(job_db), "--report-dir", str(reports)], env)

    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"{PATIENTS} screened, 0 failed, 0 pending" in resumed.stdout
    rows = job_rows(job_db, job_id)
    assert {row.status for row in rows.values()} == {"done"}
    state = server_state(base_url, expected)
    rescreened = {pid: codes for pid, codes in expected.items() if pid not in done_before}
    assert_written_exactly_once(state, rescreened)
    # Patients finished before the kill were not screened again by the resumed job.
    assert {pid: state.risk_assessments[pid] for pid in done_before} == dict.fromkeys(done_before, ())
    assert {pid: state.flags[pid] for pid in done_before} == dict.fromkeys(done_before, ())
