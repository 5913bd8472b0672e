"""A FHIR server that goes away for a few seconds in the middle of a batch: the job rides it out.

``rls-screen batch`` runs as a real process through the fault proxy in front of the shared HAPI
server. Once a few patients are done, the proxy resets every request (the server is unreachable)
until the batch's probe (``GET metadata``) has met the outage and a few seconds have passed, then
lets everything through again. The job must complete in the same run (exit 0, no ``--resume``),
with every patient written exactly once.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.resilience.helpers import (
    assert_written_exactly_once,
    batch_args,
    cli_env,
    done_count,
    expected_findings,
    job_rows,
    load_panel,
    make_panel,
    server_state,
)
from tests.support.fault_proxy import Fault, FaultProxy, wait_for

pytestmark = [pytest.mark.fhir, pytest.mark.slow]

PATIENTS = 16
DOWN_AFTER_DONE = 4
DOWN_FOR_AT_LEAST_S = 3.0


def test_batch_rides_out_a_short_outage_and_completes_in_the_same_run(
    fhir_base_url: str, proxy: FaultProxy, unique_prefix: str, tmp_path: Path
) -> None:
    panel = make_panel(unique_prefix, PATIENTS, seed=23)
    load_panel(fhir_base_url, panel)
    expected = expected_findings(panel)
    job_db, reports = tmp_path / "jobs.sqlite", tmp_path / "reports"
    # One client retry per request keeps each failure short; latency keeps the batch from finishing
    # before the outage starts.
    env = cli_env(tmp_path / "state", proxy.base_url, RLS_SCREEN_FHIR_MAX_RETRIES="1")
    proxy.set_faults(Fault.latency(0.05))
    args = batch_args(
        f"Group/{unique_prefix}-panel",
        job_db,
        reports,
        "--concurrency",
        "2",
        "--retry-rounds",
        "4",
        "--retry-pause",
        "1",
        "--group-size",  # small groups: the job store fills in steps, so the outage starts midway
        "2",
    )

    with (tmp_path / "batch.out").open("w") as out, (tmp_path / "batch.err").open("w") as err:
        batch = subprocess.Popen([sys.executable, "-m", "rls_screen.cli", "-v", *args], env=env, stdout=out, stderr=err)
        try:
            assert wait_for(lambda: done_count(job_db) >= DOWN_AFTER_DONE or batch.poll() is not None, 60)
            assert batch.poll() is None, "the batch ended before the outage"
            down_at = time.monotonic()
            # Every request reset before it reaches the server (request stage, so the proxy records
            # what each reset request was for, the probe's ``metadata`` included).
            (outage,) = proxy.set_faults(Fault.reset())
            probed_while_down = wait_for(
                lambda: any("/metadata" in e.target for e in proxy.fired("reset")) or batch.poll() is not None, 30
            )
            time.sleep(max(0.0, DOWN_FOR_AT_LEAST_S - (time.monotonic() - down_at)))
            proxy.clear()
            down_for = time.monotonic() - down_at
            code = batch.wait(timeout=90)
        finally:
            if batch.poll() is None:
                batch.kill()
                batch.wait(timeout=30)
    output = (tmp_path / "batch.out").read_text()
    log = (tmp_path / "batch.err").read_text()

    assert code == 0, output + log
    assert f"{PATIENTS} screened, 0 failed, 0 pending" in output
    # The outage really happened and the runner waited it out with its probe, in this run.
    assert probed_while_down, log
    assert outage.fired > 0
    patients_hit = {e.target for e in proxy.fired("reset") if "/metadata" not in e.target}
    assert patients_hit, "no patient request met the outage"
    assert "after transient errors (round 1 of 4, in 1 s)" in log
    assert "starts now" in log, log  # a round started when the server answered again
    assert down_for >= DOWN_FOR_AT_LEAST_S
    rows = job_rows(job_db)
    assert sorted(rows) == sorted(expected)
    assert {row.status for row in rows.values()} == {"done"}
    assert max(row.attempts for row in rows.values()) >= 2
    # Every patient once: one RiskAssessment, one Provenance, the expected Flags, nothing duplicated.
    assert_written_exactly_once(server_state(fhir_base_url, expected), expected)
