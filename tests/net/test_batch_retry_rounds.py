"""The batch's retry rounds against a scripted loopback FHIR server that is down (503), then back.

The server answers a dry-run batch (Patient read, the contract searches, the Device
conditional create, the pre-write batch read) and counts what it received, so the tests see how often
each patient was read, when the rounds ran and whether the runner probed ``metadata`` in between.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from tests.support.scripted_server import Received, Reply, base_url, scripted_server

from rls_screen.batch.jobs import JobStore
from rls_screen.batch.runner import BatchOptions, run_job, server_answers
from rls_screen.cli import main
from rls_screen.fhir_client import Allowlist, FhirClient
from rls_screen.knowledge import load_knowledge
from rls_screen.settings import get_settings

AS_OF = date(2026, 11, 25)
PATIENTS = [f"retry-p{n}" for n in range(4)]
DOWN = Reply(
    503,
    {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "transient", "diagnostics": "down"}]},
)


def _searchset() -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "searchset", "total": 0}


class FhirServerScript:
    """A tiny FHIR server for a dry run; ``down`` answers 503 to everything (``metadata`` included)."""

    def __init__(self, *, down: bool = False, up_after_probes: int | None = None) -> None:
        self.down = down
        self.up_after_probes = up_after_probes
        """When set, the server comes back after that many failed ``metadata`` probes."""
        self.failed_probes = 0
        self.lock = threading.Lock()

    def __call__(self, received: Received) -> Reply:
        with self.lock:
            if self.down:
                if received.path.startswith("/fhir/metadata"):
                    self.failed_probes += 1
                    if self.up_after_probes is not None and self.failed_probes >= self.up_after_probes:
                        self.down = False
                return DOWN
        path = received.path
        if path.startswith("/fhir/metadata"):
            return Reply(200, {"resourceType": "CapabilityStatement", "status": "active", "kind": "instance"})
        if path.startswith("/fhir/Patient/"):
            patient_id = path.removeprefix("/fhir/Patient/")
            return Reply(
                200, {"resourceType": "Patient", "id": patient_id, "gender": "female", "birthDate": "1970-03-02"}
            )
        if path.startswith(("/fhir/Observation?", "/fhir/Condition?", "/fhir/Procedure?", "/fhir/MedicationRequest?")):
            return Reply(200, _searchset())
        if path == "/fhir/Device":
            return Reply(201, None, headers={"Location": "http://127.0.0.1/fhir/Device/dev-1/_history/1"})
        if received.method == "POST" and path in ("/fhir", "/fhir/"):
            entries = [{"resource": _searchset(), "response": {"status": "200 OK"}} for _ in range(3)]
            return Reply(200, {"resourceType": "Bundle", "type": "batch-response", "entry": entries})
        return Reply(404, {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "not-found"}]})


def _patient_reads(received: list[Received]) -> Counter[str]:
    return Counter(r.path.removeprefix("/fhir/Patient/") for r in received if r.path.startswith("/fhir/Patient/"))


def _probes(received: list[Received]) -> list[Received]:
    return [r for r in received if r.path.startswith("/fhir/metadata")]


def _run(url: str, tmp_path: Path, **options: Any) -> tuple[dict[str, int], JobStore, str]:
    # No client-side retries and no backoff: each patient fails at once while the server is down.
    client = FhirClient(url, allowlist=Allowlist((url,)), max_retries=0, sleep=lambda s: None)
    store = JobStore(tmp_path / "jobs.sqlite")
    job = store.create_job(created="c", source="patients:test", as_of=AS_OF, dry_run=True, fhir_base_url=url)
    store.add_patients(job.id, PATIENTS)
    # One by one (group_size=1): these tests count each patient's own reads per round; the rounds are
    # the same for groups (tests/net/test_batch_groups.py, tests/resilience).
    batch_options = BatchOptions(
        knowledge=load_knowledge(),
        recorded=datetime(2026, 11, 25, tzinfo=UTC),
        concurrency=2,
        group_size=1,
        **options,
    )
    try:
        counts = run_job(store, job, client, batch_options)
    finally:
        client.close()
    return counts, store, job.id


def _retry_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("retrying ")]


def test_a_retry_round_starts_as_soon_as_the_server_answers_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Down for the first round and three probes; a 5 s pause must be cut short by the fourth probe."""
    script = FhirServerScript(down=True, up_after_probes=3)
    caplog.set_level(logging.INFO)
    with scripted_server(script) as server:
        started = time.monotonic()
        counts, store, job_id = _run(base_url(server), tmp_path, retry_rounds=3, retry_pause_s=5.0, probe_every_s=0.02)
        elapsed = time.monotonic() - started
        received = list(server.received)

    assert counts == {"pending": 0, "done": 4, "failed": 0}
    assert elapsed < 3, f"the round waited out the pause ({elapsed:.1f} s) instead of starting when the server answered"
    probes = _probes(received)
    assert len(probes) == 4  # three answered 503, the fourth 200
    assert {(p.method, p.path) for p in probes} == {("GET", "/fhir/metadata?_summary=true")}
    assert _patient_reads(received) == dict.fromkeys(PATIENTS, 2)  # once down, once back: each patient once more
    assert {(row.status, row.attempts) for row in store.rows(job_id)} == {("done", 2)}
    assert _retry_lines(caplog) == ["retrying 4 patient(s) after transient errors (round 1 of 3, in 5 s)"]
    assert any("retry round 1 starts now" in r.getMessage() for r in caplog.records)
    store.close()


def test_pauses_double_to_the_cap_and_a_server_that_stays_down_ends_the_job_with_transient_failures(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with scripted_server(FhirServerScript(down=True)) as server:
        started = time.monotonic()
        counts, store, job_id = _run(
            base_url(server),
            tmp_path,
            retry_rounds=4,
            retry_pause_s=0.05,
            retry_pause_max_s=0.15,
            probe_every_s=0.02,
        )
        elapsed = time.monotonic() - started
        received = list(server.received)

    assert counts == {"pending": 0, "done": 0, "failed": 4}
    assert _retry_lines(caplog) == [
        "retrying 4 patient(s) after transient errors (round 1 of 4, in 0.05 s)",
        "retrying 4 patient(s) after transient errors (round 2 of 4, in 0.1 s)",
        "retrying 4 patient(s) after transient errors (round 3 of 4, in 0.15 s)",
        "retrying 4 patient(s) after transient errors (round 4 of 4, in 0.15 s)",
    ]
    assert elapsed >= 0.45  # every pause slept: the probes kept failing
    assert _probes(received), "the runner did not probe the server during its pauses"
    assert _patient_reads(received) == dict.fromkeys(PATIENTS, 5)  # the first round and 4 retries, no more
    rows = list(store.rows(job_id))
    assert all(row.status == "failed" and (row.reason or "").startswith("transient:") for row in rows)
    # The logs name no patient.
    assert not [r.getMessage() for r in caplog.records if any(pid in r.getMessage() for pid in PATIENTS)]
    store.close()


def test_without_probes_the_whole_pause_is_slept(tmp_path: Path) -> None:
    script = FhirServerScript(down=True)

    def back_after_the_first_round(received: Received) -> Reply:
        reply = script(received)
        if sum(_patient_reads(server.received).values()) >= len(PATIENTS):  # every patient failed once
            script.down = False
        return reply

    with scripted_server(back_after_the_first_round) as server:
        started = time.monotonic()
        counts, store, _ = _run(base_url(server), tmp_path, retry_rounds=2, retry_pause_s=0.4, probe_every_s=0)
        elapsed = time.monotonic() - started
        received = list(server.received)

    assert counts == {"pending": 0, "done": 4, "failed": 0}
    assert elapsed >= 0.4
    assert not _probes(received)
    assert _patient_reads(received) == dict.fromkeys(PATIENTS, 2)
    store.close()


def test_no_pause_and_no_probe_when_nothing_failed(tmp_path: Path) -> None:
    with scripted_server(FhirServerScript()) as server:
        started = time.monotonic()
        counts, store, _ = _run(base_url(server), tmp_path, retry_pause_s=60.0)
        assert time.monotonic() - started < 30
        assert counts == {"pending": 0, "done": 4, "failed": 0}
        assert not _probes(list(server.received))
    store.close()


# --- the probe ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "answers"),
    [(200, True), (401, True), (404, True), (429, False), (500, False), (503, False)],
)
def test_the_probe_counts_any_answer_but_a_transient_failure(status: int, answers: bool) -> None:
    with scripted_server(lambda r: Reply(status, {"resourceType": "OperationOutcome", "issue": []})) as server:
        url = base_url(server)
        client = FhirClient(url, allowlist=Allowlist((url,)), max_retries=0, sleep=lambda s: None)
        assert server_answers(client) is answers
        client.close()
        assert [(r.method, r.path) for r in server.received] == [("GET", "/fhir/metadata?_summary=true")]


def test_the_probe_of_a_server_that_is_not_listening_is_false() -> None:
    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/fhir"
    client = FhirClient(url, allowlist=Allowlist((url,)), max_retries=0, sleep=lambda s: None)
    assert server_answers(client) is False
    client.close()


# --- the command line reaches the runner ------------------------------------------------------------


def test_batch_retry_options_on_the_command_line_set_the_rounds_and_pauses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    patients = tmp_path / "patients.txt"
    patients.write_text("\n".join(PATIENTS) + "\n")
    caplog.set_level(logging.WARNING)
    with scripted_server(FhirServerScript(down=True)) as server:
        url = base_url(server)
        monkeypatch.setenv("FHIR_BASE_URL", url)
        monkeypatch.setenv("RLS_SCREEN_STATE_DIR", str(tmp_path / "state"))
        monkeypatch.setenv("RLS_SCREEN_FHIR_MAX_RETRIES", "0")
        get_settings.cache_clear()
        try:
            code = main(
                [
                    "batch",
                    "--patients",
                    str(patients),
                    "--dry-run",
                    "--as-of",
                    AS_OF.isoformat(),
                    "--retry-rounds",
                    "2",
                    "--retry-pause",
                    "0.05",
                    "--job-db",
                    str(tmp_path / "jobs.sqlite"),
                ]
            )
        finally:
            get_settings.cache_clear()
        received = list(server.received)

    assert code == 1
    assert _retry_lines(caplog) == [
        "retrying 4 patient(s) after transient errors (round 1 of 2, in 0.05 s)",
        "retrying 4 patient(s) after transient errors (round 2 of 2, in 0.1 s)",
    ]
    assert _patient_reads(received) == dict.fromkeys(PATIENTS, 3)
