"""Fixtures of the resilience tests: a fault proxy in front of the shared HAPI server, and a separate
HAPI instance that a test may kill and restart.

The separate instance takes one to two minutes to start, so when a selected test uses it
(``separate_hapi``), it is launched in the background as soon as collection ends and starts while
the other tests run; the fixture then waits for it. It runs from its own run directory on its own
port (deploy/fhir-up.sh with FHIR_RUN_DIR and FHIR_PORT) and is stopped with deploy/fhir-down.sh at
the end of the session, whatever happened.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.resilience.hapi_instance import SeparateHapi
from tests.support.fault_proxy import FaultProxy

SEPARATE_HAPI_FIXTURE = "separate_hapi"
_separate: dict[str, SeparateHapi] = {}


def pytest_collection_finish(session: pytest.Session) -> None:
    if session.config.option.collectonly:
        return
    if any(SEPARATE_HAPI_FIXTURE in getattr(item, "fixturenames", ()) for item in session.items):
        instance = SeparateHapi()
        instance.launch()  # warm start: boots while the other tests run
        _separate["instance"] = instance


def pytest_sessionfinish(session: pytest.Session) -> None:
    instance = _separate.pop("instance", None)
    if instance is not None:
        instance.stop()


@pytest.fixture(scope="session")
def separate_hapi() -> SeparateHapi:
    """The separate HAPI instance, ready (stopped by ``pytest_sessionfinish``, whatever happens)."""
    instance = _separate.get("instance")
    if instance is None:  # not launched at collection (e.g. the test was selected another way)
        instance = _separate["instance"] = SeparateHapi()
    instance.wait_ready()
    return instance


@pytest.fixture
def proxy(fhir_base_url: str) -> Iterator[FaultProxy]:
    """A fault proxy in front of the shared HAPI server, with no faults until the test sets some."""
    with FaultProxy(fhir_base_url, seed=20261125) as started:
        yield started
