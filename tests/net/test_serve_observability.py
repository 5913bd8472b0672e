"""The real ``rls-screen serve`` process: metrics summed over workers, traces over OTLP, JSON log lines.

- ``--workers 2``: every scrape of /metrics, whichever worker answers it, counts every call
  (prometheus-client's multiprocess mode).
- RLS_SCREEN_OTLP_ENDPOINT set: a loopback scripted server stands in as the OTLP collector (a real
  HTTP endpoint taking the real protobuf export); the EHR's ``traceparent`` is continued, the FHIR
  server receives a valid ``traceparent`` of the same trace whose parent is the exported FHIR client
  span, and no span carries the patient id.
- stderr not a terminal: each line is one JSON event; a call's lines carry its hookInstance.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from tests.api.helpers import NORMAL, PATIENT_VIEW, full_prefetch, labs, patient_view_request
from tests.resilience.hapi_instance import free_port
from tests.support.metrics_text import total
from tests.support.scripted_server import Received, Reply, base_url, scripted_server

pytestmark = [pytest.mark.net, pytest.mark.slow]
TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-0[01]")
EMPTY = {"resourceType": "Bundle", "type": "searchset", "total": 0, "entry": []}


@contextmanager
def serve(tmp_path: Path, *args: str, **env: str) -> Iterator[tuple[str, Path]]:
    """``rls-screen serve`` in dev mode on a free loopback port; yields its base URL and its log file."""
    port = free_port()
    log_path = tmp_path / f"serve-{port}.log"
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("RLS_SCREEN_", "OTEL_", "PROMETHEUS_"))}
    environment |= {"RLS_SCREEN_CDS_DEV_MODE": "true", "RLS_SCREEN_STATE_DIR": str(tmp_path / "state"), **env}
    command = [sys.executable, "-m", "rls_screen.cli", "serve", "--port", str(port), *args]
    with log_path.open("w") as log:
        process = subprocess.Popen(command, env=environment, stdout=log, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log_path.read_text()[-3000:]
            try:
                if requests.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "the service did not start"
            time.sleep(0.2)
        yield base, log_path
    finally:
        process.send_signal(signal.SIGINT)  # uvicorn's graceful shutdown: the span processor flushes at exit
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def test_two_workers_every_scrape_counts_every_call(tmp_path: Path) -> None:
    body = patient_view_request("mw1", full_prefetch("mw1", labs("mw1", **NORMAL)))

    def call(_: int) -> int:  # a new connection each time, so either worker may take it
        headers = {"Connection": "close"}
        return requests.post(f"{base}/cds-services/{PATIENT_VIEW}", json=body, headers=headers, timeout=30).status_code

    calls = 0
    with serve(tmp_path, "--workers", "2") as (base, _):
        metrics_dir = tmp_path / "state" / f"metrics-{base.rsplit(':', 1)[1]}"
        # Concurrent calls keep one worker busy so that the other takes some: go on until both have
        # answered (each worker's values are files named by its pid), so the sum is not one worker's.
        give_up = time.monotonic() + 90  # the second worker may still be starting (spawned, importing)
        with ThreadPoolExecutor(8) as pool:
            while len({re.sub(r"\D", "", p.name) for p in metrics_dir.glob("*.db")}) < 2 and time.monotonic() < give_up:
                assert set(pool.map(call, range(16))) == {200}
                calls += 16
        scrapes = [requests.get(f"{base}/metrics", headers={"Connection": "close"}, timeout=10).text for _ in range(8)]
    assert len({re.sub(r"\D", "", p.name) for p in metrics_dir.glob("*.db")}) == 2
    counted = {total(text, "rls_screen_cds_call_seconds_count", service=PATIENT_VIEW, outcome="ok") for text in scrapes}
    assert counted == {calls}


def test_traces_continue_the_ehr_trace_into_the_fhir_server_and_are_exported_over_otlp(tmp_path: Path) -> None:
    patient_id = f"trq{uuid.uuid4().hex[:10]}"
    ehr_trace, ehr_span = secrets.token_hex(16), secrets.token_hex(8)
    with (
        scripted_server(lambda received: Reply(200, b"", {"Content-Type": "application/x-protobuf"})) as collector,
        scripted_server(lambda received: Reply(200, EMPTY)) as fhir_server,
    ):
        fhir = base_url(fhir_server)
        env = {
            "FHIR_BASE_URL": fhir,
            "RLS_SCREEN_OTLP_ENDPOINT": base_url(collector, ""),
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        }
        with serve(tmp_path, **env) as (base, log_path):
            response = requests.post(
                f"{base}/cds-services/{PATIENT_VIEW}",
                json=patient_view_request(patient_id, None, fhirServer=fhir),
                headers={"traceparent": f"00-{ehr_trace}-{ehr_span}-01"},
                timeout=30,
            )
            assert response.status_code == 200
        exports: list[Received] = list(collector.received)
        fhir_requests: list[Received] = list(fhir_server.received)

    assert fhir_requests, "the service read from the FHIR server"
    parents = []
    for received in fhir_requests:
        header = {k.lower(): v for k, v in received.headers.items()}.get("traceparent", "")
        match = TRACEPARENT.fullmatch(header)
        assert match, f"no valid traceparent on {received.method} {received.path.split('?')[0]}: {header!r}"
        assert match.group(1) == ehr_trace  # the EHR's trace, continued
        parents.append(match.group(2))

    assert exports
    assert {r.path for r in exports} == {"/v1/traces"}
    spans = []
    for received in exports:
        request = ExportTraceServiceRequest()
        request.ParseFromString(received.body)
        for resource_spans in request.resource_spans:
            service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}["service.name"]
            assert service == "rls-screen"
            for scope_spans in resource_spans.scope_spans:
                spans.extend(scope_spans.spans)
        assert patient_id.encode() not in received.body
    by_id = {span.span_id.hex(): span for span in spans}
    (server,) = [s for s in spans if s.name == f"POST /cds-services/{PATIENT_VIEW}"]
    assert server.trace_id.hex() == ehr_trace
    assert server.parent_span_id.hex() == ehr_span
    for parent in parents:  # each FHIR request's traceparent names an exported client span under the server span
        client = by_id[parent]
        assert client.name.startswith("FHIR ")
        assert client.parent_span_id == server.span_id
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    call_lines = [e for e in lines if e["message"].startswith("cds: rls-secondary-causes patient-view")]
    assert call_lines
    assert call_lines[0]["traceId"] == ehr_trace


def test_log_lines_are_json_events_with_the_hook_instance(tmp_path: Path) -> None:
    hook_instance = str(uuid.uuid4())
    with scripted_server(lambda received: Reply(200, EMPTY)) as fhir_server:
        fhir = base_url(fhir_server)
        with serve(tmp_path, FHIR_BASE_URL=fhir) as (base, log_path):
            body = patient_view_request("mj1", None, fhirServer=fhir) | {"hookInstance": hook_instance}
            assert requests.post(f"{base}/cds-services/{PATIENT_VIEW}", json=body, timeout=30).status_code == 200
            time.sleep(0.5)  # the access line is written after the response
    events = [json.loads(line) for line in log_path.read_text().splitlines()]  # every line is one JSON event
    assert all({"time", "level", "logger", "message", "pid"} <= event.keys() for event in events)
    of_call = [e for e in events if e.get("hookInstance") == hook_instance]
    messages = [e["message"] for e in of_call]
    assert any(m.startswith("fhir GET Condition -> 200") for m in messages), messages
    assert any(m.startswith("cds: rls-secondary-causes patient-view") for m in messages), messages
    assert any(e["logger"] == "uvicorn.access" and f"/cds-services/{PATIENT_VIEW}" in e["message"] for e in of_call)
