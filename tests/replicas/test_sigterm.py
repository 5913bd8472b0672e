"""SIGTERM: ``rls-screen serve`` stops accepting, finishes the calls in flight, and exits 0.

The call in flight is a real slow one: its Observations are not prefetched, so the service reads them
from a FHIR server (a scripted loopback server, tests/support/scripted_server.py) that takes seconds
to answer. Checked with one process and with the multiprocess supervisor (``--workers 2``), with
``--drain-seconds`` (``/ready`` answers 503 while the replica still serves) and with a
``--graceful-timeout`` shorter than the call (the call is cut, the process still exits 0 in time).
"""

from __future__ import annotations

import argparse
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from tests.api.helpers import (
    NORMAL,
    PATIENT_VIEW,
    Ehr,
    SigningKey,
    labs,
    patient_view_request,
    rls_condition,
    searchset,
)
from tests.replicas.cluster import Replica, free_port, refuses_connections, wait_until
from tests.replicas.conftest import replica_env
from tests.support.fhir_data import patient
from tests.support.scripted_server import Received, Reply, base_url, scripted_server

from rls_screen.cli import serve

pytestmark = [pytest.mark.replicas, pytest.mark.slow]

FHIR_DELAY_S = 4.0


@pytest.fixture
def slow_fhir(unique_prefix: str) -> Iterator[tuple[str, list[Received]]]:
    """A FHIR server whose Observation search answers after FHIR_DELAY_S (ferritin 9 µg/L); the rest at once."""
    observations = labs(unique_prefix, **{**NORMAL, "ferritin": 9.0})

    def script(received: Received) -> Reply:
        if received.method == "GET" and "/Observation" in received.path:
            return Reply(200, searchset(observations), delay_s=FHIR_DELAY_S)
        return Reply(200, searchset([]))

    with scripted_server(script) as server:
        yield base_url(server), server.received


def _slow_call_body(prefix: str, fhir_url: str) -> dict[str, Any]:
    prefetch = {
        "patient": patient(prefix),
        "conditions": searchset([rls_condition(prefix)]),
        "medications": searchset([]),
    }  # no "observations": the service reads them from fhirServer
    return patient_view_request(
        prefix,
        prefetch,
        fhirServer=fhir_url,
        fhirAuthorization={
            "access_token": "opaque-test-token",
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "patient/*.read",
            "subject": "rls-screen",
        },
    )


def _replica(tmp_path: Path, issuers_file: Path, fhir_url: str, *args: str) -> Replica:
    port = free_port()
    env = replica_env(
        issuers_file,
        f"http://127.0.0.1:{port}",
        RLS_SCREEN_STATE_DIR=str(tmp_path / "state"),
        RLS_SCREEN_FHIR_ALLOWLIST=fhir_url,
    )
    return Replica(port, env, tmp_path / "replica.log", list(args)).start().wait_ready()


def _call_in_background(ehr: Ehr, body: dict[str, Any]) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {}

    def call() -> None:
        try:
            response = ehr.call(PATIENT_VIEW, body)
            outcome["status"] = response.status_code
            outcome["cards"] = response.json().get("cards") if response.status_code == 200 else None
        except requests.RequestException as error:
            outcome["error"] = type(error).__name__
        outcome["ended"] = time.monotonic()

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    return thread, outcome


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_call_in_flight_completes_after_sigterm_and_new_connections_are_refused(
    tmp_path: Path,
    issuers_file: Path,
    es_key: SigningKey,
    slow_fhir: tuple[str, list[Received]],
    unique_prefix: str,
    workers: str,
) -> None:
    fhir_url, received = slow_fhir
    replica = _replica(tmp_path, issuers_file, fhir_url, "--workers", workers)
    try:
        thread, outcome = _call_in_background(Ehr(replica.url, es_key), _slow_call_body(unique_prefix, fhir_url))
        assert wait_until(lambda: len(received) > 0, 20), replica.log()[-3000:]  # the call waits on FHIR now
        signalled = time.monotonic()
        replica.signal(signal.SIGTERM)
        assert wait_until(lambda: refuses_connections(replica.port), FHIR_DELAY_S - 1), "still accepting"
        assert "ended" not in outcome, "the call was still in flight when connections were refused"
        thread.join(timeout=30)
        assert outcome.get("status") == 200, (outcome, replica.log()[-3000:])
        assert [c["source"]["topic"]["code"] for c in outcome["cards"]] == ["iron-deficiency"]
        assert outcome["ended"] - signalled >= FHIR_DELAY_S - 1.5
        assert replica.wait(30) == 0
    finally:
        replica.stop()


def test_drain_answers_ready_503_while_serving_then_stops(
    tmp_path: Path, issuers_file: Path, es_key: SigningKey, slow_fhir: tuple[str, list[Received]]
) -> None:
    fhir_url, _ = slow_fhir
    replica = _replica(tmp_path, issuers_file, fhir_url, "--drain-seconds", "2")
    try:
        assert requests.get(replica.url + "/ready", timeout=5).status_code == 200
        replica.signal(signal.SIGTERM)
        assert wait_until(lambda: requests.get(replica.url + "/ready", timeout=5).status_code == 503, 1.5)
        assert requests.get(replica.url + "/ready", timeout=5).json()["status"] == "draining"
        # Still serving while the load balancer takes it out of rotation.
        assert requests.get(replica.url + "/health", timeout=5).status_code == 200
        assert wait_until(lambda: refuses_connections(replica.port), 5)
        assert replica.wait(20) == 0
    finally:
        replica.stop()


def test_the_graceful_timeout_bounds_the_wait_for_calls_in_flight(
    tmp_path: Path,
    issuers_file: Path,
    es_key: SigningKey,
    slow_fhir: tuple[str, list[Received]],
    unique_prefix: str,
) -> None:
    fhir_url, received = slow_fhir
    replica = _replica(tmp_path, issuers_file, fhir_url, "--graceful-timeout", "0.5")
    try:
        thread, outcome = _call_in_background(Ehr(replica.url, es_key), _slow_call_body(unique_prefix, fhir_url))
        assert wait_until(lambda: len(received) > 0, 20)
        signalled = time.monotonic()
        replica.signal(signal.SIGTERM)
        assert replica.wait(FHIR_DELAY_S) == 0  # before the FHIR server would have answered
        assert time.monotonic() - signalled < FHIR_DELAY_S - 0.5
        thread.join(timeout=30)
        assert outcome.get("status") != 200, outcome
    finally:
        replica.stop()


def _serve_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="rls-screen")
    serve.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["serve", *argv])


@pytest.mark.unit
def test_shutdown_flags_default_to_a_bounded_wait_and_no_drain() -> None:
    args = _serve_args()
    assert (args.graceful_timeout, args.drain_seconds) == (15.0, 0.0)
    assert _serve_args("--graceful-timeout", "2.5", "--drain-seconds", "3").drain_seconds == 3.0


@pytest.mark.unit
@pytest.mark.parametrize("value", ["-1", "601", "soon"])
def test_shutdown_flags_refuse_what_is_not_a_sensible_number_of_seconds(value: str) -> None:
    with pytest.raises(SystemExit):
        _serve_args("--graceful-timeout", value)
    with pytest.raises(SystemExit):
        _serve_args("--drain-seconds", value)
