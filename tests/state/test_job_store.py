"""The batch job store on both state databases: jobs and outcomes, claims of several runners, leases, adoption."""

from __future__ import annotations

import sqlite3
import threading
from datetime import date
from pathlib import Path

import pytest

from rls_screen.batch.jobs import JobProblem, JobStore
from rls_screen.errors import ConfigurationError
from rls_screen.state import parse_state_url, recorded_versions

AS_OF = date(2026, 11, 25)
LEASE_S = 30.0


def new_store(state_url: str) -> JobStore:
    return JobStore(parse_state_url(state_url))


def test_jobs_patients_outcomes_and_problems_round_trip(state_url: str) -> None:
    store = new_store(state_url)
    try:
        first = store.create_job(created="c1", source="s", as_of=AS_OF, dry_run=True, fhir_base_url="http://f")
        second = store.create_job(created="c1", source="s", as_of=AS_OF, dry_run=False, fhir_base_url="http://f")
        assert store.job_ids() == [first.id, second.id]  # creation order, even within one second
        assert store.add_patients(first.id, ["a", "b", "c", "a"]) == 3
        assert store.pending(first.id) == ["a", "b", "c"]
        store.mark_many(first.id, [("a", '{"findings":{}}', True)], [("b", "transient: 503"), ("c", "bad data: x")])
        assert store.counts(first.id) == {"pending": 0, "done": 1, "failed": 2}
        assert store.pending(first.id) == ["b"]  # a transient failure is screened again
        assert store.pending(first.id, retry_failed_transient=False) == []
        rows = {row.patient_id: row for row in store.rows(first.id)}
        assert (rows["a"].status, rows["a"].result, rows["a"].written) == ("done", {"findings": {}}, True)
        assert (rows["c"].status, rows["c"].reason, rows["c"].attempts) == ("failed", "bad data: x", 1)
        store.add_problems(first.id, [])
        store.add_problems(first.id, [JobProblem("warning", "one")])
        store.add_problems(first.id, [JobProblem("error", "two")])
        assert [p.text for p in store.problems(first.id)] == ["one", "two"]
        store.record_panel_run(first, {"done": 1})
        store.record_panel_run(second, {"done": 0})
        assert store.previous_run(second) == store.job(first.id)
        assert recorded_versions(store._db)["batch-jobs"] == 2
    finally:
        store.close()


def test_two_runners_claim_disjoint_chunks_and_record_only_their_own(state_url: str) -> None:
    store = new_store(state_url)
    try:
        job = store.create_job(created="c", source="s", as_of=AS_OF, dry_run=True, fhir_base_url="http://f")
        store.add_patients(job.id, [f"p{n}" for n in range(10)])
        now = 1000.0
        a = store.claim(job.id, "A", 4, now=now, lease_s=LEASE_S, round_started=now)
        b = store.claim(job.id, "B", 4, now=now, lease_s=LEASE_S, round_started=now)
        assert a == ["p0", "p1", "p2", "p3"]
        assert b == ["p4", "p5", "p6", "p7"]
        assert store.held_by_others(job.id, "A", now=now + 1) == pytest.approx(LEASE_S - 1)
        # A records one of B's patients (it never claimed it): ignored, B's claim stands
        store.mark_many(job.id, [("p4", "{}", False)], runner="A", now=now)
        assert store.counts(job.id)["done"] == 0
        store.mark_many(job.id, [(p, "{}", False) for p in a], runner="A", now=now)
        assert {r.patient_id: r.screened_by for r in store.rows(job.id) if r.status == "done"} == dict.fromkeys(a, "A")
        assert store.release(job.id, "B") == 4
        assert store.claim(job.id, "A", 10, now=now, lease_s=LEASE_S, round_started=now) == [
            "p4",
            "p5",
            "p6",
            "p7",
            "p8",
            "p9",
        ]
    finally:
        store.close()


def test_an_expired_lease_is_claimed_again_and_the_late_runner_records_nothing(state_url: str) -> None:
    store = new_store(state_url)
    try:
        job = store.create_job(created="c", source="s", as_of=AS_OF, dry_run=True, fhir_base_url="http://f")
        store.add_patients(job.id, ["p1", "p2"])
        now = 1000.0
        assert store.claim(job.id, "A", 2, now=now, lease_s=LEASE_S, round_started=now) == ["p1", "p2"]
        assert store.claim(job.id, "B", 2, now=now + LEASE_S - 1, lease_s=LEASE_S, round_started=now) == []
        assert store.renew(job.id, "A", until=now + 2 * LEASE_S) == 2  # A works on: its lease moves
        assert store.claim(job.id, "B", 2, now=now + LEASE_S + 1, lease_s=LEASE_S, round_started=now) == []
        later = now + 2 * LEASE_S + 1  # A was killed: no renewal, the lease runs out
        assert store.claim(job.id, "B", 2, now=later, lease_s=LEASE_S, round_started=now) == ["p1", "p2"]
        store.mark_many(job.id, [("p1", "{}", True), ("p2", "{}", True)], runner="A", now=later)  # A, too late
        assert store.counts(job.id)["done"] == 0
        store.mark_many(job.id, [("p1", "{}", True), ("p2", "{}", True)], runner="B", now=later)
        rows = list(store.rows(job.id))
        assert [(r.status, r.attempts, r.screened_by) for r in rows] == [("done", 1, "B")] * 2
    finally:
        store.close()


def test_a_retry_round_takes_earlier_transient_failures_not_its_own(state_url: str) -> None:
    store = new_store(state_url)
    try:
        job = store.create_job(created="c", source="s", as_of=AS_OF, dry_run=True, fhir_base_url="http://f")
        store.add_patients(job.id, ["p1", "p2"])
        round0 = 1000.0
        assert store.claim(job.id, "A", 2, now=round0, lease_s=LEASE_S, round_started=round0) == ["p1", "p2"]
        store.mark_many(job.id, [("p2", "{}", False)], [("p1", "transient: 503")], runner="A", now=round0 + 1)
        assert store.claim(job.id, "A", 2, now=round0 + 2, lease_s=LEASE_S, round_started=round0) == []
        assert store.claimable(job.id, now=round0 + 2, round_started=round0) == 0
        round1 = round0 + 10
        assert store.claimable(job.id, now=round1, round_started=round1) == 1
        assert store.claim(job.id, "B", 2, now=round1, lease_s=LEASE_S, round_started=round1) == ["p1"]
    finally:
        store.close()


def test_concurrent_runners_never_claim_one_patient_twice(state_url: str) -> None:
    setup = new_store(state_url)
    job = setup.create_job(created="c", source="s", as_of=AS_OF, dry_run=True, fhir_base_url="http://f")
    setup.add_patients(job.id, [f"p{n:03}" for n in range(200)])
    setup.close()
    claimed: dict[str, list[str]] = {}
    errors: list[BaseException] = []

    def runner(name: str) -> None:
        store = new_store(state_url)  # a runner of its own, as another process would be
        try:
            mine: list[str] = []
            while chunk := store.claim(job.id, name, 7, now=1000.0, lease_s=LEASE_S, round_started=1000.0):
                mine += chunk
                store.mark_many(job.id, [(p, "{}", False) for p in chunk], runner=name, now=1000.0)
            claimed[name] = mine
        except BaseException as error:  # reported by the assertion below
            errors.append(error)
        finally:
            store.close()

    threads = [threading.Thread(target=runner, args=(f"r{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    every = [p for chunk in claimed.values() for p in chunk]
    assert sorted(every) == [f"p{n:03}" for n in range(200)]  # each patient once, by one runner
    check = new_store(state_url)
    try:
        assert {(r.status, r.attempts) for r in check.rows(job.id)} == {("done", 1)}
    finally:
        check.close()


# The job store's tables as the release before the shared state store wrote them (jobs.sqlite).
EARLIER_RELEASE = """
CREATE TABLE job (id TEXT PRIMARY KEY, created TEXT NOT NULL, source TEXT NOT NULL, as_of TEXT NOT NULL,
    dry_run INTEGER NOT NULL, fhir_base_url TEXT NOT NULL, status TEXT NOT NULL);
CREATE TABLE patient (job_id TEXT NOT NULL REFERENCES job(id), position INTEGER NOT NULL, patient_id TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'done', 'failed')), attempts INTEGER NOT NULL DEFAULT 0,
    reason TEXT, result TEXT, written INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (job_id, patient_id));
CREATE INDEX patient_by_status ON patient (job_id, status, position);
CREATE TABLE panel_run (seq INTEGER PRIMARY KEY AUTOINCREMENT, panel TEXT NOT NULL,
    job_id TEXT NOT NULL UNIQUE REFERENCES job(id), counts TEXT NOT NULL);
CREATE INDEX panel_run_by_panel ON panel_run (panel, seq);
CREATE TABLE job_problem (job_id TEXT NOT NULL REFERENCES job(id), position INTEGER NOT NULL,
    severity TEXT NOT NULL CHECK (severity IN ('error', 'warning')), text TEXT NOT NULL);
INSERT INTO job VALUES ('job-b', 'c', 's', '2026-11-25', 1, 'http://f', 'incomplete');
INSERT INTO job VALUES ('job-a', 'c', 's', '2026-11-25', 1, 'http://f', 'incomplete');
INSERT INTO patient VALUES ('job-b', 0, 'p1', 'done', 1, NULL, '{}', 0);
INSERT INTO patient VALUES ('job-b', 1, 'p2', 'pending', 0, NULL, NULL, 0);
"""


@pytest.mark.parametrize("without", [(), ("panel_run", "job_problem")])
def test_a_job_file_of_the_earlier_release_is_adopted_and_resumes(tmp_path: Path, without: tuple[str, ...]) -> None:
    path = tmp_path / "jobs.sqlite"
    with sqlite3.connect(path) as db:
        db.executescript(EARLIER_RELEASE)
        for table in without:
            db.execute(f"DROP TABLE {table}")
    store = JobStore(path)
    try:
        assert store.job_ids() == ["job-b", "job-a"]  # the order they were made in
        assert store.claim("job-b", "A", 5, now=1.0, lease_s=LEASE_S, round_started=1.0) == ["p2"]
        assert store.problems("job-b") == []
        versions = store._db.execute("SELECT version, description FROM schema_migration ORDER BY version").rows
        assert [v for v, _ in versions] == [1, 2]
        assert versions[0][1].startswith("adopted") is (not without)
    finally:
        store.close()


def test_a_table_of_another_layout_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE job (id TEXT PRIMARY KEY, owner TEXT)")
    with pytest.raises(ConfigurationError, match="columns id, owner"):
        JobStore(path)


@pytest.mark.parametrize("page", [1, 2, 3, 7, 2000])
def test_rows_are_read_page_by_page_in_order_without_loss(state_url: str, page: int) -> None:
    store = new_store(state_url)
    try:
        job = store.create_job(created="c1", source="s", as_of=AS_OF, dry_run=True, fhir_base_url="http://f")
        store.add_patients(job.id, ["p0", "p1", "p2", "p3"])
        store.add_patients(job.id, ["q1", "q0"], start=2)  # positions 2 and 3 again: order falls back to the id
        ids = [row.patient_id for row in store.rows(job.id, page=page)]
        assert ids == ["p0", "p1", "p2", "q1", "p3", "q0"]
    finally:
        store.close()
