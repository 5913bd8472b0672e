"""A runner's lifecycle pieces: SIGTERM turned into a checkpoint, a retry pause cut short by it, leases renewed."""

from __future__ import annotations

import os
import signal
import threading
import time
from datetime import date
from pathlib import Path

import pytest

from rls_screen.batch.claims import LeaseRenewal, stop_on_sigterm
from rls_screen.batch.jobs import JobStore
from rls_screen.batch.rounds import wait_before_retry

pytestmark = pytest.mark.unit


def test_sigterm_sets_the_stop_and_the_handler_before_comes_back() -> None:
    before = signal.getsignal(signal.SIGTERM)
    stop = threading.Event()
    with stop_on_sigterm(stop):
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.wait(5)  # the process goes on: the runner checkpoints
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_stop_cuts_a_retry_pause_short() -> None:
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    started = time.monotonic()
    assert wait_before_retry(None, 30.0, 1.0, stop=stop) is False
    assert time.monotonic() - started < 5


def test_the_claims_are_renewed_while_the_runner_works(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite")
    try:
        job = store.create_job(created="c", source="s", as_of=date(2026, 11, 25), dry_run=True, fhir_base_url="u")
        store.add_patients(job.id, ["p1", "p2"])
        now = time.time()
        assert store.claim(job.id, "A", 2, now=now, lease_s=1.5, round_started=now) == ["p1", "p2"]
        with LeaseRenewal(store, job.id, "A", 1.5, time.time):
            time.sleep(2.5)  # past the first lease: renewed every 0.5 s
            assert store.claim(job.id, "B", 2, now=time.time(), lease_s=1.5, round_started=now) == []
        time.sleep(1.6)  # renewal over (a killed runner): the lease runs out
        assert store.claim(job.id, "B", 2, now=time.time(), lease_s=1.5, round_started=now) == ["p1", "p2"]
    finally:
        store.close()
