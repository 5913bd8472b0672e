"""The Prometheus metrics of the CDS service, the FHIR seam and the batch, and how they are exposed.

``get_metrics()`` makes the metrics once per process (on first use, never at import) in
prometheus-client's default registry. Label values are bounded and PHI-free by construction: each
``*_label`` function maps free text (a resource path, a JWT refusal reason, a failure reason) onto a
fixed vocabulary, so neither a patient id nor an attacker's string can become a label.

Several uvicorn workers (``rls-screen serve --workers N``) are N processes, each with its own counters;
a scrape reaches one of them. prometheus-client's multiprocess mode makes every scrape see the sum:
each process writes its values to memory-mapped files in PROMETHEUS_MULTIPROC_DIR and ``exposition``
reads them all. The directory is chosen before any worker starts (``use_multiprocess``, called by
``serve``), and emptied then, as prometheus-client requires. There are no gauges, only counters and
histograms, so a dead worker's files stay valid (its calls did happen) and need no clean-up.

A batch job is a short-lived process (a CronJob) that no scrape would find alive: ``push_batch``
sends its figures to a Pushgateway when RLS_SCREEN_METRICS_PUSHGATEWAY is set.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
    push_to_gateway,
    values,
)

from rls_screen.observability.settings import get_observability_settings

log = logging.getLogger(__name__)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
BATCH_PUSH_JOB = "rls-screen-batch"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""Seconds: CDS Hooks asks for answers "on the order of 500 ms"; the default deadline is 3 s."""


@dataclass(frozen=True)
class Metrics:
    cds_call_seconds: Histogram
    cds_cards: Counter
    cds_suppressed: Counter
    cds_deadline: Counter
    jwt_rejections: Counter
    fhir_requests: Counter
    fhir_request_seconds: Histogram
    fhir_retries: Counter
    fhir_errors: Counter
    batch_patients: Counter


@lru_cache(maxsize=1)
def get_metrics() -> Metrics:
    """The process's metrics, made on first use (after ``use_multiprocess``, when that is called)."""
    return Metrics(
        cds_call_seconds=Histogram(
            "rls_screen_cds_call_seconds",
            "Time to answer one CDS Hooks call, by service and outcome (ok, deadline, http-<status> of an error).",
            ["service", "outcome"],
            buckets=LATENCY_BUCKETS,
        ),
        cds_cards=Counter(
            "rls_screen_cds_cards",
            "Cards returned, by service, finding (the card's topic code) and indicator.",
            ["service", "finding", "indicator"],
        ),
        cds_suppressed=Counter(
            "rls_screen_cds_cards_suppressed", "Cards not returned because the client overrode them.", ["service"]
        ),
        cds_deadline=Counter(
            "rls_screen_cds_deadline_hits",
            "Calls answered with no cards because they passed RLS_SCREEN_CDS_DEADLINE_MS.",
            ["service"],
        ),
        jwt_rejections=Counter("rls_screen_cds_jwt_rejections", "Requests refused with 401, by reason.", ["reason"]),
        fhir_requests=Counter(
            "rls_screen_fhir_requests",
            "FHIR requests sent (each attempt), by method, resource type and HTTP status or transport error.",
            ["method", "resource", "status"],
        ),
        fhir_request_seconds=Histogram(
            "rls_screen_fhir_request_seconds",
            "Time of one FHIR request attempt until its response headers, by method and resource type.",
            ["method", "resource"],
            buckets=LATENCY_BUCKETS,
        ),
        fhir_retries=Counter(
            "rls_screen_fhir_retries",
            "FHIR requests retried, by method, resource and reason.",
            ["method", "resource", "reason"],
        ),
        fhir_errors=Counter(
            "rls_screen_fhir_errors", "FHIR errors given to the caller after retries, by kind.", ["kind"]
        ),
        batch_patients=Counter(
            "rls_screen_batch_patients",
            "Batch patients finished, by result (done, failed) and failure kind ('-' when done).",
            ["result", "failure"],
        ),
    )


def use_multiprocess(directory: Path) -> None:
    """Aggregate the metrics of several worker processes through ``directory`` (emptied here).

    Must run in the parent before any worker starts and before this process makes its metrics:
    prometheus-client picks its value store when it is imported, so it is picked again here.
    """
    if get_metrics.cache_info().currsize:
        raise RuntimeError("metrics were made before multiprocess mode was chosen")
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):  # another run's values would be added to this run's
        stale.unlink()
    os.environ[MULTIPROC_ENV] = str(directory)
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]


def exposition() -> tuple[bytes, str]:
    """The text served at GET /metrics and its media type: every worker's values in multiprocess mode."""
    get_metrics()
    directory = os.environ.get(MULTIPROC_ENV)
    if not directory:
        return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    return generate_latest(registry), CONTENT_TYPE_LATEST


def push_batch_metrics(gateway: str | None = None) -> bool:
    """Send this process's figures to the Pushgateway (RLS_SCREEN_METRICS_PUSHGATEWAY), replacing the batch
    job's last push; True when pushed. A Pushgateway that does not answer costs a warning, not the job."""
    gateway = gateway or get_observability_settings().metrics_pushgateway
    if not gateway:
        return False
    get_metrics()
    try:
        push_to_gateway(gateway, job=BATCH_PUSH_JOB, registry=REGISTRY, timeout=10)
    except OSError as error:  # URLError, a refused connection, a timeout
        log.warning("metrics: the Pushgateway did not take the batch figures (%s)", type(error).__name__)
        return False
    return True


def batch_patient_finished(failure: str | None) -> None:
    """One batch patient done (``failure`` None) or failed with the runner's reason text."""
    if failure is None:
        get_metrics().batch_patients.labels("done", "-").inc()
    else:
        get_metrics().batch_patients.labels("failed", failure_label(failure)).inc()


# --- bounded label values -------------------------------------------------------------------------

_RESOURCE = re.compile(r"[A-Z][A-Za-z]{1,63}|\$[a-z][a-z-]{0,63}|\(system\)|metadata|bulk output")


def resource_label(kind: str) -> str:
    """A resource type or operation name as the FHIR client logs it; anything else (a path, an id) is 'other'."""
    return kind if _RESOURCE.fullmatch(kind) else "other"


def status_label(status: int) -> str:
    return str(status) if 100 <= status <= 599 else "other"


_ERROR_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")


def error_label(name: str) -> str:
    """An exception class name (never its message)."""
    return name if _ERROR_NAME.fullmatch(name) else "other"


def retry_reason_label(why: str) -> str:
    """The FHIR client's retry reason ('HTTP 503', 'ReadTimeout', 'HTTP 200 body cut off') as a label."""
    if why.endswith("body cut off"):
        return "body-cut-off"
    match = re.fullmatch(r"HTTP (\d{3})", why)
    return f"http-{match.group(1)}" if match else error_label(why)


JWT_REASONS: tuple[tuple[str, str], ...] = (
    # (text the reason starts with, label); first match wins. Reasons: rls_screen.cds.auth.
    ("no Authorization header", "missing"),
    ("more than one Authorization header", "malformed"),
    ("Authorization is not a Bearer", "not-bearer"),
    ("bearer token is not a compact JWS", "malformed"),
    ("JWT header unreadable", "malformed"),
    ("JWT payload unreadable", "malformed"),
    ("alg ", "alg-not-allowed"),
    ("JWT header", "header-invalid"),
    ("JWT lacks required claims", "claims-missing"),
    ("claim ", "claims-invalid"),
    ("issuer is not on the trusted-issuers list", "issuer-untrusted"),
    ("signature not valid", "signature-invalid"),
    ("jti already used", "replay"),
    ("replay check unavailable", "replay-check-unavailable"),
    ("token expired", "expired"),
    ("token issued in the future", "issued-in-future"),
    ("token lifetime exceeds", "lifetime-too-long"),
    ("token not yet valid", "not-yet-valid"),
    ("aud is not", "audience-mismatch"),
    ("jku", "jku-refused"),
    ("JWK Set", "jwks-unavailable"),
    ("issuer has no JWK Set", "jwks-unavailable"),
    ("kid not found", "kid-unknown"),
    ("the key", "key-unusable"),
    ("RSA key shorter", "key-unusable"),
    ("token could not be checked", "unverifiable"),
)


def jwt_reason_label(reason: str) -> str:
    for text, label in JWT_REASONS:
        if reason.startswith(text):
            return label
    return "other"


BATCH_FAILURES = (
    "transient",
    "not found",
    "redirected",
    "not sent",
    "rejected by the server",
    "bad data",
    "internal error",
)
"""The kinds of ``batch.runner._classify_failure``: the text before its first ':' or ' ('."""


def failure_label(reason: str) -> str:
    head = re.split(r":| \(", reason, maxsplit=1)[0]
    return head.replace(" ", "-") if head in BATCH_FAILURES else "other"
