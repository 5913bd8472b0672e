"""The fault proxy itself, against a scripted upstream: each fault does what it says, and only that.

These are the proof that the other resilience tests inject what they claim: a reset before
forwarding never reaches the server, a dropped response did reach it, schedules are exact and
seeded rates reproducible.
"""

from __future__ import annotations

import time

import pytest
import requests
from tests.support.fault_proxy import Fault, FaultProxy
from tests.support.scripted_server import Received, Reply, base_url, scripted_server

pytestmark = pytest.mark.net

BODY = {"resourceType": "Bundle", "type": "searchset", "total": 0, "padding": "x" * 20000}


def ok(received: Received) -> Reply:
    return Reply(200, BODY, {"Location": "http://upstream.invalid/fhir/Patient/1"})


def test_plain_forwarding_keeps_method_body_headers_and_the_client_connection() -> None:
    with scripted_server(ok) as upstream, FaultProxy(base_url(upstream)) as proxy, requests.Session() as session:
        first = session.post(f"{proxy.base_url}/Patient", json={"a": 1}, headers={"Authorization": "Bearer t"})
        second = session.get(f"{proxy.base_url}/Patient?name=x", timeout=5)
    assert first.status_code == second.status_code == 200
    assert first.json() == BODY
    assert [(r.method, r.path) for r in upstream.received] == [
        ("POST", "/fhir/Patient"),
        ("GET", "/fhir/Patient?name=x"),
    ]
    assert upstream.received[0].body == b'{"a": 1}'
    headers = {name.lower(): value for name, value in upstream.received[0].headers.items()}
    assert headers["host"] == f"127.0.0.1:{proxy.port}"  # so the server's links point back at the proxy
    assert headers["authorization"] == "Bearer t"
    assert [e.action for e in proxy.events] == ["forward", "forward"]
    assert len({e.seq for e in proxy.events}) == 2


def test_reset_before_forwarding_never_reaches_the_server() -> None:
    with scripted_server(ok) as upstream, FaultProxy(base_url(upstream)) as proxy:
        proxy.set_faults(Fault.reset(method="POST"))
        with pytest.raises(requests.ConnectionError):
            requests.post(f"{proxy.base_url}/Patient", json={}, timeout=5)
        assert requests.get(f"{proxy.base_url}/Patient", timeout=5).status_code == 200
    assert [r.method for r in upstream.received] == ["GET"]


def test_connect_stage_reset_hits_new_connections_only() -> None:
    with scripted_server(ok) as upstream, FaultProxy(base_url(upstream)) as proxy:
        proxy.set_faults(Fault.reset(stage="connect", skip=1, times=1))
        with requests.Session() as session:
            assert session.get(f"{proxy.base_url}/a", timeout=5).status_code == 200  # connection 1
            assert session.get(f"{proxy.base_url}/b", timeout=5).status_code == 200  # same connection
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{proxy.base_url}/c", timeout=5)  # connection 2: reset
        assert requests.get(f"{proxy.base_url}/d", timeout=5).status_code == 200  # connection 3
    assert [r.path for r in upstream.received] == ["/fhir/a", "/fhir/b", "/fhir/d"]


def test_drop_response_applies_the_request_and_loses_the_answer() -> None:
    with scripted_server(ok) as upstream, FaultProxy(base_url(upstream)) as proxy:
        proxy.set_faults(Fault.drop_response(method="POST", bundle_type="transaction"))
        with pytest.raises(requests.ConnectionError):
            requests.post(proxy.base_url, json={"resourceType": "Bundle", "type": "transaction"}, timeout=5)
        batch = requests.post(proxy.base_url, json={"resourceType": "Bundle", "type": "batch"}, timeout=5)
    assert batch.status_code == 200
    assert len(upstream.received) == 2
    (dropped,) = proxy.fired("drop_response")
    assert dropped.upstream_status == 200
    assert dropped.body is not None
    assert b'"transaction"' in dropped.body


def test_truncate_relays_half_the_body_then_resets() -> None:
    with scripted_server(ok) as upstream, FaultProxy(base_url(upstream)) as proxy:
        proxy.set_faults(Fault.truncate(times=1))
        with pytest.raises(requests.exceptions.ChunkedEncodingError):
            requests.get(f"{proxy.base_url}/Patient", timeout=5)
        assert len(upstream.received) == 1


def test_respond_answers_without_forwarding() -> None:
    with scripted_server(ok) as upstream, FaultProxy(base_url(upstream)) as proxy:
        proxy.set_faults(Fault.too_many_requests("7", times=1), Fault.unavailable(times=1))
        with requests.Session() as session:
            throttled = session.get(f"{proxy.base_url}/Patient", timeout=5)
            unavailable = session.get(f"{proxy.base_url}/Patient", timeout=5)
            fine = session.get(f"{proxy.base_url}/Patient", timeout=5)
    assert (throttled.status_code, throttled.headers["Retry-After"]) == (429, "7")
    assert throttled.json()["resourceType"] == "OperationOutcome"
    assert (unavailable.status_code, fine.status_code) == (503, 200)
    assert len(upstream.received) == 1


def test_stall_outlasts_the_client_read_timeout_and_latency_adds_up() -> None:
    with scripted_server(ok) as upstream, FaultProxy(base_url(upstream)) as proxy:
        proxy.set_faults(Fault.stall(3, path="/slow", times=1))
        started = time.monotonic()
        with pytest.raises(requests.ReadTimeout):
            requests.get(f"{proxy.base_url}/slow", timeout=(2, 0.5))
        assert time.monotonic() - started < 2
        proxy.set_faults(Fault.latency(0.2), Fault.latency(0.1, path="/x"))
        started = time.monotonic()
        assert requests.get(f"{proxy.base_url}/x", timeout=5).status_code == 200
        assert time.monotonic() - started >= 0.3
    assert [r.path for r in upstream.received] == ["/fhir/x"]


def test_schedules_are_exact_and_the_first_terminal_rule_wins() -> None:
    with scripted_server(ok) as upstream, FaultProxy(base_url(upstream)) as proxy:
        first, second = proxy.set_faults(Fault.unavailable(skip=2, times=2), Fault.too_many_requests(times=1))
        with requests.Session() as session:
            statuses = [session.get(f"{proxy.base_url}/p{i}", timeout=5).status_code for i in range(7)]
    # Request 1 and 2 pass rule 1 (skip) and hit rule 2 once; 3 and 4 are rule 1's; the rest forward.
    assert statuses == [429, 200, 503, 503, 200, 200, 200]
    assert (first.matched, first.fired, second.fired) == (7, 2, 1)
    assert len(upstream.received) == 4


def test_seeded_rates_are_reproducible() -> None:
    def pattern(seed: int) -> list[int]:
        with scripted_server(ok) as upstream, FaultProxy(base_url(upstream), seed=seed) as proxy:
            proxy.set_faults(Fault.unavailable(rate=0.3))
            with requests.Session() as session:
                return [session.get(proxy.base_url, timeout=5).status_code for _ in range(30)]

    first = pattern(42)
    assert first == pattern(42)
    assert 0 < first.count(503) < 30
    assert first != pattern(43)


def test_an_upstream_that_is_down_looks_like_a_broken_connection() -> None:
    with scripted_server(ok) as upstream:
        dead = base_url(upstream)
    with FaultProxy(dead) as proxy:
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{proxy.base_url}/Patient", timeout=5)
        assert [e.action for e in proxy.events] == ["upstream-error"]
