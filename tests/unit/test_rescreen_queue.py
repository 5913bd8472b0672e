"""The re-screen queue and workers with a hand-moved clock: debounce, re-queue while running, leases, retries;
on both state databases (an SQLite file and PostgreSQL)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from rls_screen.errors import ConfigurationError, FhirNotFoundError, FhirUnavailableError
from rls_screen.rescreen.queue import StateRescreenQueue, Timing
from rls_screen.rescreen.worker import RescreenWorkers, RetryPolicy
from rls_screen.state import parse_state_url

pytestmark = pytest.mark.unit
TIMING = Timing(debounce_s=2.0, max_wait_s=10.0, lease_s=60.0)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def queue(state_url: str, clock: Clock) -> Iterator[StateRescreenQueue]:
    opened = StateRescreenQueue(parse_state_url(state_url), TIMING, clock=clock)
    yield opened
    opened.close()


def test_ten_notifications_in_a_burst_give_one_claim_after_the_debounce(
    queue: StateRescreenQueue, clock: Clock
) -> None:
    for _ in range(10):
        queue.note(["p1"])
        clock.now += 0.1
    assert queue.claim() is None  # still inside the debounce of the last notification
    clock.now += 2.0
    claim = queue.claim()
    assert claim is not None
    assert claim.patient_id == "p1"
    assert claim.noted == 10
    assert queue.claim() is None  # one patient, one claim
    queue.complete(claim, written=True)
    entry = queue.entry("p1")
    assert entry is not None
    assert (entry.state, entry.screens, entry.writes) == ("done", 1, 1)


def test_a_steady_stream_is_screened_by_max_wait(queue: StateRescreenQueue, clock: Clock) -> None:
    start = clock.now
    for second in range(11):  # a notification every second: always inside the 2 s debounce
        clock.now = start + second
        queue.note(["p1"])
        claim = queue.claim()
        if second < 10:
            assert claim is None, f"claimed after {second} s"
        else:
            assert claim is not None, "max_wait_s (10 s) bounds the wait however often notifications come"


def test_a_notification_during_a_screen_queues_the_patient_again(queue: StateRescreenQueue, clock: Clock) -> None:
    queue.note(["p1"])
    clock.now += 2.0
    claim = queue.claim()
    assert claim is not None
    queue.note(["p1"])  # a new result while the screen in flight may have read the data before it
    queue.complete(claim, written=False)
    entry = queue.entry("p1")
    assert entry is not None
    assert entry.state == "pending"
    clock.now += 2.0
    again = queue.claim()
    assert again is not None
    assert again.noted == 2


def test_a_dead_workers_lease_runs_out_and_the_patient_is_claimed_again(
    queue: StateRescreenQueue, clock: Clock
) -> None:
    queue.note(["p1"])
    clock.now += 2.0
    assert queue.claim() is not None
    clock.now += 30.0
    assert queue.claim() is None
    clock.now += 31.0
    assert queue.claim() is not None


def test_the_queue_survives_a_restart(state_url: str, clock: Clock) -> None:
    first = StateRescreenQueue(parse_state_url(state_url), TIMING, clock=clock)
    first.note(["p1", "p2", "p1"])
    first.close()
    clock.now += 2.0
    second = StateRescreenQueue(parse_state_url(state_url), TIMING, clock=clock)
    claimed = {c.patient_id for c in (second.claim(), second.claim()) if c is not None}
    second.close()
    assert claimed == {"p1", "p2"}


def test_workers_of_two_processes_never_claim_one_patient_twice(state_url: str, clock: Clock) -> None:
    setup = StateRescreenQueue(parse_state_url(state_url), TIMING, clock=clock)
    setup.note([f"p{n}" for n in range(60)])
    setup.close()
    clock.now += 2.0
    claimed: list[str] = []
    errors: list[BaseException] = []

    def drain() -> None:
        queue = StateRescreenQueue(parse_state_url(state_url), TIMING, clock=clock)  # as another process would
        try:
            while (claim := queue.claim()) is not None:
                claimed.append(claim.patient_id)
        except BaseException as error:  # reported by the assertion below
            errors.append(error)
        finally:
            queue.close()

    threads = [threading.Thread(target=drain) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(claimed) == sorted(f"p{n}" for n in range(60))


# The queue's table as the release before the shared state store wrote it (rescreen.sqlite3).
EARLIER_RELEASE = """
CREATE TABLE rescreen_queue (patient_id TEXT PRIMARY KEY,
    state TEXT NOT NULL CHECK (state IN ('pending', 'running', 'done', 'failed')), due_at REAL NOT NULL,
    first_noted_at REAL NOT NULL, noted INTEGER NOT NULL DEFAULT 0, claimed_noted INTEGER, lease_until REAL,
    attempts INTEGER NOT NULL DEFAULT 0, screens INTEGER NOT NULL DEFAULT 0, writes INTEGER NOT NULL DEFAULT 0,
    reason TEXT, updated_at REAL NOT NULL);
CREATE INDEX rescreen_queue_due ON rescreen_queue (state, due_at);
INSERT INTO rescreen_queue (patient_id, state, due_at, first_noted_at, noted, updated_at)
    VALUES ('p1', 'pending', 1000000.0, 1000000.0, 3, 1000000.0);
"""


def test_a_queue_file_of_the_earlier_release_is_adopted_and_one_of_another_layout_refused(
    tmp_path: Path, clock: Clock
) -> None:
    with sqlite3.connect(tmp_path / "rescreen.sqlite3") as db:
        db.executescript(EARLIER_RELEASE)
    queue = StateRescreenQueue(tmp_path / "rescreen.sqlite3", TIMING, clock=clock)
    claim = queue.claim()
    queue.close()
    assert claim is not None
    assert (claim.patient_id, claim.noted) == ("p1", 3)
    with sqlite3.connect(tmp_path / "other.sqlite3") as db:
        db.execute("CREATE TABLE rescreen_queue (patient_id TEXT PRIMARY KEY, due REAL)")
    with pytest.raises(ConfigurationError, match="columns patient_id, due"):
        StateRescreenQueue(tmp_path / "other.sqlite3", TIMING, clock=clock)


def worker(queue: StateRescreenQueue, clock: Clock, error: Exception | None) -> RescreenWorkers:
    def screen(patient_id: str) -> bool:
        if error is not None:
            raise error
        return True

    return RescreenWorkers(
        queue, screen, workers=1, retry=RetryPolicy(max_attempts=3, base_s=5.0, max_s=60.0), clock=clock
    )


def test_transient_failures_are_retried_with_backoff_then_failed_with_the_reason(
    queue: StateRescreenQueue, clock: Clock
) -> None:
    workers = worker(queue, clock, FhirUnavailableError("GET Observation: server unreachable"))
    queue.note(["p1"])
    clock.now += 2.0
    pauses = []
    for _ in range(3):
        claim = queue.claim()
        assert claim is not None
        workers.process(claim)
        entry = queue.entry("p1")
        assert entry is not None
        assert entry.reason is not None
        assert entry.reason.startswith("transient:")
        pauses.append(entry.due_at - clock.now)
        clock.now = max(clock.now, entry.due_at)
    entry = queue.entry("p1")
    assert entry is not None
    assert entry.state == "failed"
    assert entry.attempts == 3
    assert 4.0 <= pauses[0] <= 6.0
    assert 8.0 <= pauses[1] <= 12.0


def test_a_permanent_failure_is_not_retried_until_the_next_notification(
    queue: StateRescreenQueue, clock: Clock
) -> None:
    workers = worker(queue, clock, FhirNotFoundError("GET Patient: not found", status=404))
    queue.note(["p1"])
    clock.now += 2.0
    claim = queue.claim()
    assert claim is not None
    workers.process(claim)
    entry = queue.entry("p1")
    assert entry is not None
    assert entry.state == "failed"
    assert entry.reason == ("not found: patient not found on the FHIR server")
    clock.now += 3600
    assert queue.claim() is None
    queue.note(["p1"])
    entry = queue.entry("p1")
    assert entry is not None
    assert (entry.state, entry.attempts, entry.reason) == ("pending", 0, None)
