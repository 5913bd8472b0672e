"""Schemathesis fuzzing of the service's own OpenAPI schema, bounded: no input may cause a 5xx.

Every generated request carries a fresh, valid JWT for its path (so the fuzzing reaches the
validation and the services, not just the 401), in positive (schema-valid) and negative modes.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from tests.api.conftest import ServerFactory

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
