"""`rls-screen batch` and `screen` through a real fault proxy in front of HAPI: latency, connection
resets, 429 with Retry-After (valid and malformed), 503, a stalled read, a body cut short, and
transactions the server applied whose answer never came back.

What must hold: the batch completes (exit 0), every patient is done, the expected Flags are active,
nothing is written twice (one RiskAssessment and one Provenance per patient, Flag identifiers
unique), and a re-run writes nothing. Every fault is asserted to have fired as scheduled, so a test
cannot pass because the proxy did nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.resilience.helpers import (
    AS_OF,
    assert_written_exactly_once,
    batch_args,
    cli_env,
    expected_findings,
    job_rows,
    load_panel,
    make_panel,
    run_cli,
    server_state,
)
from tests.support.fault_proxy import Event, Fault, FaultProxy

pytestmark = [pytest.mark.fhir, pytest.mark.slow]

TRANSACTION = {"method": "POST", "bundle_type": "transaction"}
READ_TIMEOUT_S = "2"  # so that a stalled answer costs seconds, not the default 30


def patients_of(event: Event) -> set[str]:
    """The patients a recorded write-back transaction was for (a group's transaction holds several)."""
    assert event.body is not None
    bundle = json.loads(event.body)
    return {
        e["resource"]["subject"]["reference"].removeprefix("Patient/")
        for e in bundle["entry"]
        if "subject" in e["resource"]
    }


def assert_all_fired(faults: list[Fault]) -> None:
    """Scheduled faults fired exactly ``times``; unbounded ones (latency) at least once."""
    unfired = [
        f"{f.label} {f.method or ''} {f.path or f.bundle_type or ''}: fired {f.fired} of {f.times}"
        for f in faults
        if (f.fired != f.times if f.times is not None else f.fired == 0)
    ]
    assert not unfired, "faults that did not fire as scheduled:\n" + "\n".join(unfired)


def test_batch_completes_with_every_fault_and_writes_each_patient_once(
    fhir_base_url: str, proxy: FaultProxy, unique_prefix: str, tmp_path: Path
) -> None:
    panel = make_panel(unique_prefix, 30, seed=7)
    load_panel(fhir_base_url, panel)
    expected = expected_findings(panel)
    faults = proxy.set_faults(
        Fault.latency(0.02, rate=0.5),  # seeded jitter on about half the requests
        Fault.reset(stage="connect", skip=2, times=2),  # new connections reset as soon as accepted
        # the reads: each group's data and its pre-write state are one batch request each
        Fault.reset(method="POST", bundle_type="batch", skip=3, times=3),
        Fault.too_many_requests("1", method="POST", bundle_type="batch", skip=2, times=3),
        Fault.too_many_requests("soon", method="POST", bundle_type="batch", skip=1, times=1),  # malformed
        Fault.truncate(method="POST", bundle_type="batch", skip=8, times=2),  # body cut mid-way
        Fault.stall(6, method="POST", bundle_type="batch", skip=6, times=1),  # past the read timeout
        Fault.unavailable(retry_after="1", method="POST", bundle_type="batch", skip=4, times=2),
        Fault.unavailable(skip=1, times=2, **TRANSACTION),  # 503: the server did not process it
        Fault.reset(skip=4, times=1, **TRANSACTION),  # never reached the server
        Fault.drop_response(skip=6, times=2, **TRANSACTION),  # applied, but the answer is lost
    )
    env = cli_env(tmp_path / "state", proxy.base_url, RLS_SCREEN_FHIR_READ_TIMEOUT_S=READ_TIMEOUT_S)
    job_db, reports = tmp_path / "jobs.sqlite", tmp_path / "reports"
    group = f"Group/{unique_prefix}-panel"

    # groups of 2: 15 group reads and transactions, enough for every scheduled fault to fire
    run = run_cli(batch_args(group, job_db, reports, "--concurrency", "4", "--group-size", "2"), env)

    assert run.returncode == 0, run.stdout + run.stderr
    assert "30 screened, 0 failed, 0 pending" in run.stdout
    assert_all_fired(faults)
    rows = job_rows(job_db)
    assert sorted(rows) == sorted(expected)
    assert all(row.status == "done" for row in rows.values())
    state = server_state(fhir_base_url, expected)
    assert_written_exactly_once(state, expected)
    # The dropped transactions really were applied (the server answered 200), and their patients
    # were screened again in a later round that found everything in place (written exactly once,
    # above). A group meets more of the scheduled faults than one patient did (its reads and its
    # transaction carry several patients), so a dropped group may also have failed a round before
    # the drop: at least one attempt more than the one whose answer was lost.
    dropped = proxy.fired("drop_response")
    assert [event.upstream_status for event in dropped] == [200, 200]
    for event in dropped:
        for patient_id in patients_of(event):
            assert rows[patient_id].attempts >= 2

    # A re-run on unchanged data, without faults, writes nothing (same ids, same Flag versions).
    proxy.clear()
    before = proxy.forwarded()
    rerun = run_cli(batch_args(group, job_db, reports), env)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "Patients with new or changed write-back: 0." in rerun.stdout
    assert server_state(fhir_base_url, expected) == state
    new_requests = proxy.forwarded()[len(before) :]
    assert not [e for e in new_requests if e.method == "POST" and e.body is not None and b'"transaction"' in e.body]


def test_dropped_transaction_answers_duplicate_nothing(
    fhir_base_url: str, proxy: FaultProxy, unique_prefix: str, tmp_path: Path
) -> None:
    """Every patient's first write-back is applied by the server and its answer lost (a reset after
    the server processed it). The retry round must find it all in place and send nothing. Two
    groups of three patients: two transactions, both answers lost."""
    panel = make_panel(unique_prefix, 6, seed=3)
    load_panel(fhir_base_url, panel)
    expected = expected_findings(panel)
    (drop,) = proxy.set_faults(Fault.drop_response(times=2, **TRANSACTION))
    env = cli_env(tmp_path / "state", proxy.base_url)
    job_db = tmp_path / "jobs.sqlite"
    args = ("--concurrency", "2", "--group-size", "3")

    run = run_cli(batch_args(f"Group/{unique_prefix}-panel", job_db, tmp_path / "reports", *args), env)

    assert run.returncode == 0, run.stdout + run.stderr
    assert drop.fired == 2
    dropped = proxy.fired("drop_response")
    assert sorted(p for e in dropped for p in patients_of(e)) == sorted(expected)
    assert {e.upstream_status for e in dropped} == {200}
    transactions = [e for e in proxy.events if e.method == "POST" and b'"transaction"' in (e.body or b"")]
    assert len(transactions) == 2, "the retry round must not send a second transaction"
    rows = job_rows(job_db)
    assert {row.status for row in rows.values()} == {"done"}
    assert {row.attempts for row in rows.values()} == {2}
    assert_written_exactly_once(server_state(fhir_base_url, expected), expected)


def test_screen_whose_answer_is_lost_reports_it_and_the_next_run_writes_nothing(
    fhir_base_url: str, proxy: FaultProxy, unique_prefix: str, tmp_path: Path
) -> None:
    panel = make_panel(unique_prefix, 1, seed=5)
    load_panel(fhir_base_url, panel)
    expected = expected_findings(panel)
    (patient_id,) = expected
    proxy.set_faults(Fault.drop_response(times=1, **TRANSACTION))
    env = cli_env(tmp_path / "state", proxy.base_url)
    args = ["screen", "--patient", patient_id, "--as-of", AS_OF.isoformat()]

    lost = run_cli(args, env)
    assert lost.returncode == 4, lost.stdout + lost.stderr  # FhirError: one clear line, no traceback
    assert "did not answer" in lost.stderr
    assert "Traceback" not in lost.stderr
    assert proxy.fired("drop_response")[0].upstream_status == 200

    again = run_cli(args, env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "Nothing written: the server already holds this result." in again.stdout
    assert_written_exactly_once(server_state(fhir_base_url, expected), expected)
