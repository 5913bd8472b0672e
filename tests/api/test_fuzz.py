"""Schemathesis fuzzing of the service's own OpenAPI schema, bounded: no input may cause a 5xx.

Every generated request carries a fresh, valid JWT for its path (so the fuzzing reaches the
validation and the services, not just the 401), in positive (schema-valid) and negative modes.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from tests.api.helpers import (
    NORMAL,
    ORDER_SIGN,
    PATIENT_VIEW,
    ServerFactory,
    full_prefetch,
    labs,
    medication_request,
    order_request,
    patient_view_request,
)

pytestmark = [pytest.mark.net, pytest.mark.slow]
EXAMPLES_PER_OPERATION = 25


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["positive", "negative"])
def test_no_input_causes_a_server_error(cds_server: ServerFactory, mode: GenerationMode) -> None:
    server, ehr = cds_server(cds_deadline_ms=2000)
    raw: dict[str, Any] = requests.get(server.base_url + "/openapi.json", timeout=10).json()
    schema = schemathesis.openapi.from_dict(raw)
    failures: list[str] = []
    calls = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if mode == GenerationMode.NEGATIVE and operation.method.upper() != "POST":
            continue  # a GET without parameters has nothing to make invalid

        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def call(case: Any) -> None:
            nonlocal calls
            calls += 1
            headers = dict(case.headers or {})
            headers["Authorization"] = f"Bearer {ehr.token(case.formatted_path)}"
            response = case.call(base_url=server.base_url, headers=headers, timeout=30)
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:200]}")

        call()
    assert calls >= EXAMPLES_PER_OPERATION
    assert failures == []


def _mutate(node: Any, rng: random.Random) -> None:
    junk: list[Any] = [None, 0, -1.5, "x", "", [], {}, [1], {"a": 1}, True, "2026-13-45", "<5", [{"coding": 5}]]
    if isinstance(node, dict):
        for key in list(node):
            roll = rng.random()
            if roll < 0.08:
                node[key] = rng.choice(junk)
            elif roll < 0.12:
                del node[key]
            else:
                _mutate(node[key], rng)
    elif isinstance(node, list):
        for index in range(len(node)):
            if rng.random() < 0.08:
                node[index] = rng.choice(junk)
            else:
                _mutate(node[index], rng)


def test_mangled_fhir_in_prefetch_and_draft_orders_never_causes_a_server_error(cds_server: ServerFactory) -> None:
    """Schemathesis knows our schema, not FHIR: here the FHIR inside the request is mangled instead."""
    _, ehr = cds_server()
    rng = random.Random(20261125)
    statuses: set[int] = set()
    for n in range(40):
        prefix = f"fz{n}"
        body = patient_view_request(prefix, full_prefetch(prefix, labs(prefix, **{**NORMAL, "ferritin": 30.0})))
        _mutate(body["prefetch"], rng)
        statuses.add(ehr.call(PATIENT_VIEW, body).status_code)
        orders = [
            medication_request(prefix, 1, code="746741", text="pramipexole"),
            medication_request(prefix, 2, text="sertraline 50 mg", reason=True),
        ]
        order_body = order_request("order-sign", prefix, orders, full_prefetch(prefix, labs(prefix, ferritin=30.0)))
        _mutate(order_body["context"], rng)
        _mutate(order_body["prefetch"], rng)
        statuses.add(ehr.call(ORDER_SIGN, order_body).status_code)
    assert statuses <= {200, 400, 412}
    assert 200 in statuses
