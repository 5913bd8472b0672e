"""rls_screen.observability without a server: bounded labels, the JSON log form, progress, batch counters."""

from __future__ import annotations

import io
import json
import logging
from datetime import date
from pathlib import Path

import pytest
from engine_helpers import knowledge
from prometheus_client import generate_latest
from tests.support.metrics_text import samples, total

from rls_screen.batch import sources
from rls_screen.batch.jobs import JobStore
from rls_screen.batch.runner import BatchOptions, run_job
from rls_screen.errors import ConfigurationError
from rls_screen.observability import logs, metrics, tracing
from rls_screen.observability.progress import Progress
from rls_screen.observability.settings import ObservabilitySettings
from rls_screen.synth import generate_panel, write_ndjson

pytestmark = pytest.mark.unit
AS_OF = date(2026, 11, 25)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


# --- labels -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "label"),
    [
        ("Observation", "Observation"),
        ("$export", "$export"),
        ("(system)", "(system)"),
        ("metadata", "metadata"),
        ("Patient/p-123", "other"),
        ("http:", "other"),
        ("Observation?patient=p1", "other"),
        ("x" * 80, "other"),
    ],
)
def test_resource_labels_are_types_or_operations_never_ids(kind: str, label: str) -> None:
    assert metrics.resource_label(kind) == label


@pytest.mark.parametrize(
    ("reason", "label"),
    [
        ("no Authorization header", "missing"),
        ("bearer token is not a compact JWS", "malformed"),
        ("alg 'none' not allowed (ES384, RS384 only)", "alg-not-allowed"),
        ("JWT header typ is missing or not JWT", "header-invalid"),
        ("JWT lacks required claims: jti", "claims-missing"),
        ("claim exp is missing or not a number", "claims-invalid"),
        ("issuer is not on the trusted-issuers list", "issuer-untrusted"),
        ("signature not valid (InvalidSignatureError)", "signature-invalid"),
        ("jti already used (replay)", "replay"),
        ("token expired", "expired"),
        ("aud is not this endpoint's URL", "audience-mismatch"),
        ("jku is not one of the issuer's JWK Set URLs", "jku-refused"),
        ("JWK Set could not be fetched (ConnectionError)", "jwks-unavailable"),
        ("kid not found in the issuer's JWK Set", "kid-unknown"),
        ("the key type does not fit the token's alg", "key-unusable"),
        ("Patient/p-123 Jane Doe", "other"),
    ],
)
def test_jwt_rejection_reasons_map_to_a_fixed_vocabulary(reason: str, label: str) -> None:
    assert metrics.jwt_reason_label(reason) == label


@pytest.mark.parametrize(
    ("reason", "label"),
    [
        ("transient: FHIR server at x did not answer", "transient"),
        ("not found: patient not found on the FHIR server", "not-found"),
        ("rejected by the server: HTTP 422", "rejected-by-the-server"),
        ("internal error (KeyError)", "internal-error"),
        ("bad data: Observation/o1", "bad-data"),
        ("something else", "other"),
    ],
)
def test_batch_failure_reasons_map_to_their_kind(reason: str, label: str) -> None:
    assert metrics.failure_label(reason) == label


def test_retry_reasons_are_status_codes_or_error_names() -> None:
    assert metrics.retry_reason_label("HTTP 503") == "http-503"
    assert metrics.retry_reason_label("HTTP 200 body cut off") == "body-cut-off"
    assert metrics.retry_reason_label("ReadTimeout") == "ReadTimeout"
    assert metrics.retry_reason_label("Patient/p1 gone") == "other"


# --- logs -----------------------------------------------------------------------------------------------


def _record(message: str, *args: object, exc: BaseException | None = None) -> logging.LogRecord:
    info = (type(exc), exc, exc.__traceback__) if exc else None
    return logging.LogRecord("rls_screen.test", logging.WARNING, __file__, 1, message, args, info)


def test_a_json_event_is_one_line_with_the_correlation_ids() -> None:
    logs.bind_hook_instance("hook-1")
    logs.bind_job_id("job-7")
    try:
        record = _record("first line\nsecond %s", "line")
        logs.CorrelationFilter().filter(record)
        line = logs.JsonFormatter().format(record)
    finally:
        logs.HOOK_INSTANCE.set(None)
        logs.bind_job_id(None)  # type: ignore[arg-type]
    assert "\n" not in line
    event = json.loads(line)
    assert event["message"] == "first line\nsecond line"
    assert (event["level"], event["logger"], event["hookInstance"], event["jobId"]) == (
        "WARNING",
        "rls_screen.test",
        "hook-1",
        "job-7",
    )
    assert "traceId" not in event  # tracing is off


def test_an_exception_event_has_its_class_and_frames_never_its_message() -> None:
    patient = "-".join(("p", "secret"))  # frames show source lines: a value made at run time is not in them
    try:
        raise ValueError(f"Patient/{patient} Jane Doe")
    except ValueError as error:
        caught = error
    event = json.loads(logs.JsonFormatter().format(_record("failed", exc=caught)))
    assert event["exception"] == "ValueError"
    assert "test_observability.py" in event["frames"]
    assert "p-secret" not in json.dumps(event)
    assert "Jane Doe" in event["frames"]  # the source line (code, never data) is there


def test_json_on_a_pipe_text_on_a_terminal_unless_the_setting_says() -> None:
    auto = ObservabilitySettings(log_format="auto")
    assert logs.wants_json(io.StringIO(), auto)
    assert not logs.wants_json(Terminal(), auto)
    assert logs.wants_json(Terminal(), ObservabilitySettings(log_format="json"))
    assert not logs.wants_json(io.StringIO(), ObservabilitySettings(log_format="text"))
    stream = io.StringIO()
    handler = logs.make_handler(stream, json=False)
    handler.handle(_record("plain %d", 1))
    assert stream.getvalue().endswith("WARNING rls_screen.test: plain 1\n")


# --- progress ------------------------------------------------------------------------------------------


def test_progress_on_a_terminal_is_a_tqdm_bar() -> None:
    terminal = Terminal()
    progress = Progress(4, terminal)
    progress.done = 1  # a resumed job
    for failed in (False, True, False):
        progress.step(failed=failed)
    text = terminal.getvalue()
    assert "4/4" in text
    assert "patient" in text
    assert "failed=1" in text


def test_progress_without_a_terminal_is_a_log_line_now_and_then_and_at_the_end(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="rls_screen.batch.progress")
    progress = Progress(3, io.StringIO(), log_every_s=3600)
    for _ in range(3):
        progress.step()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1
    assert lines[0].startswith("batch progress: 3/3 patients (0 failed, ")
    every = Progress(2, io.StringIO(), log_every_s=1e-9)
    every.step()
    every.step(failed=True)
    assert len(caplog.records) == 3


# --- batch counters -------------------------------------------------------------------------------------


def test_a_batch_job_moves_the_done_and_failed_counters(tmp_path: Path) -> None:
    directory = tmp_path / "export"
    write_ndjson(generate_panel(6, seed=3, as_of=AS_OF, id_prefix="obs"), directory)
    index = sources.NdjsonIndex(tmp_path / "index.sqlite")
    index.load(directory)
    store = JobStore(tmp_path / "jobs.sqlite")
    job = store.create_job(created="c", source="s", as_of=AS_OF, dry_run=True, fhir_base_url="u")
    store.add_patients(job.id, [*index.patient_ids(), "obs-missing"])
    before = generate_latest().decode()
    options = BatchOptions(knowledge=knowledge(), recorded=None, concurrency=1, loader=index.patient_data)  # type: ignore[arg-type]
    counts = run_job(store, job, None, options)
    after = generate_latest().decode()
    store.close()
    index.close()
    name = "rls_screen_batch_patients_total"
    assert total(after, name, result="done") - total(before, name, result="done") == counts["done"] == 6
    failed = total(after, name, result="failed") - total(before, name, result="failed")
    assert failed == counts["failed"] == 1
    kinds = {dict(labels)["failure"] for (sample, labels) in samples(after) if sample == name}
    assert kinds <= {"-", "other", *(kind.replace(" ", "-") for kind in metrics.BATCH_FAILURES)}
    assert "other" not in kinds
    assert not any("obs-" in value for (_, labels) in samples(after) for _, value in labels)


# --- tracing settings -----------------------------------------------------------------------------------


def test_the_otlp_endpoint_gets_the_traces_path_and_must_be_a_url() -> None:
    assert tracing.traces_url("http://collector:4318") == "http://collector:4318/v1/traces"
    assert tracing.traces_url("https://c.example.org/otlp/v1/traces") == "https://c.example.org/otlp/v1/traces"
    with pytest.raises(ConfigurationError):
        tracing.traces_url("collector:4318")


def test_tracing_is_off_without_an_endpoint() -> None:
    assert not tracing.configure_tracing(ObservabilitySettings(otlp_endpoint=None))
    assert not tracing.tracing_enabled()
    with tracing.span("x") as span:
        assert span is None
    headers: dict[str, str] = {}
    tracing.inject_traceparent(headers)
    assert headers == {}
