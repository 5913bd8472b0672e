"""``rls-screen batch`` as a CronJob runs it: no terminal, JSON log events with the job id, progress as
log lines, and its figures pushed to a Pushgateway (a loopback scripted server taking the real push)."""

from __future__ import annotations

import json
import logging
from datetime import date
from pathlib import Path

import pytest
from tests.resilience.helpers import cli_env, run_cli
from tests.support.metrics_text import samples, total
from tests.support.scripted_server import Reply, base_url, scripted_server

from rls_screen.observability.metrics import push_batch_metrics
from rls_screen.synth import generate_panel, write_ndjson

AS_OF = date(2026, 11, 25)


def test_a_batch_logs_json_events_with_its_job_id_and_pushes_its_figures(tmp_path: Path) -> None:
    directory = tmp_path / "export"
    write_ndjson(generate_panel(8, seed=5, as_of=AS_OF, id_prefix="pgw"), directory)
    with scripted_server(lambda received: Reply(200, b"", {"Content-Type": "text/plain"})) as gateway:
        env = cli_env(
            tmp_path / "state",
            "http://127.0.0.1:9/fhir",  # never called: a dry run over NDJSON
            RLS_SCREEN_METRICS_PUSHGATEWAY=base_url(gateway, ""),
        )
        args = ["-v", "batch", "--ndjson", str(directory), "--dry-run", "--as-of", AS_OF.isoformat()]
        run = run_cli([*args, "--report-dir", str(tmp_path / "reports")], env)
        pushes = list(gateway.received)
    assert run.returncode == 0, run.stdout + run.stderr
    (job_id,) = {line.split()[1].rstrip(":") for line in run.stdout.splitlines() if line.startswith("Job ")}
    events = [json.loads(line) for line in run.stderr.splitlines()]  # no terminal: every line one JSON event
    assert {e.get("jobId") for e in events} == {job_id}
    assert any(e["message"].startswith("batch progress: 8/8 patients (0 failed") for e in events)

    (push,) = pushes
    assert push.method == "PUT"
    assert push.path == "/metrics/job/rls-screen-batch"
    text = push.body.decode()
    samples(text)
    assert total(text, "rls_screen_batch_patients_total", result="done") == 8
    assert "pgw-" not in text  # no patient id


def test_a_pushgateway_that_does_not_answer_costs_a_warning_not_the_job(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="rls_screen.observability.metrics")
    with scripted_server(lambda received: Reply(503, b"down")) as gateway:
        assert not push_batch_metrics(base_url(gateway, ""))
    assert not push_batch_metrics("http://127.0.0.1:9")  # nothing listens there
    assert [r.getMessage() for r in caplog.records] == [
        "metrics: the Pushgateway did not take the batch figures (HTTPError)",
        "metrics: the Pushgateway did not take the batch figures (URLError)",
    ]
