"""The CDS service's deadline with its FHIR reads going through the fault proxy.

Each patient-view call prefetches the Observations (as EHRs usually do) and leaves the Conditions,
the Patient and the MedicationRequests to be read from the FHIR server through the proxy (the
Conditions first, then the other two in one batch request). (The
Observation search is the one read whose time on the shared, much-loaded test server varies by
hundreds of milliseconds; the log audit covers calls without any prefetch.) With latency, resets,
429 and 503, a body cut short, a stalled server or a server that is gone, the service must answer
within RLS_SCREEN_CDS_DEADLINE_MS every time: the right card when the faults are survivable inside
the deadline, ``{"cards": []}`` when they are not (a late answer is worth nothing to the clinician),
412 when the data cannot be had at all; and a late call must not hold up the next one.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from tests.api.helpers import (
    ES_KID,
    ISSUER,
    NORMAL,
    PATIENT_VIEW,
    Ehr,
    LiveServer,
    SigningKey,
    jwk,
    labs,
    patient_view_request,
    rls_condition,
    searchset,
)
from tests.support.fault_proxy import Fault, FaultProxy
from tests.support.fhir_data import patient, put_all

from rls_screen.cds import create_app
from rls_screen.cds.settings import CdsSettings
from rls_screen.knowledge import Knowledge, load_knowledge
from rls_screen.settings import Settings

pytestmark = [pytest.mark.fhir, pytest.mark.slow]

SLACK_S = 0.75
"""What the answer may take beyond the deadline: JWT check, thread hand-off, HTTP, a loaded machine."""

CdsFactory = Callable[[int], Ehr]
CONDITION = r"/fhir/Condition\?"
BATCH = {"method": "POST", "bundle_type": "batch"}
"""The Patient and the MedicationRequests, read together in one batch after the Conditions."""


@dataclass(frozen=True)
class Patient:
    id: str
    observations: list[dict[str, Any]]
    """Prefetched with every call."""


@pytest.fixture(scope="module")
def knowledge() -> Knowledge:
    return load_knowledge()


@pytest.fixture(scope="module")
def signing_key() -> SigningKey:
    private = ec.generate_private_key(ec.SECP384R1())
    return SigningKey(ES_KID, "ES384", private, jwk(private.public_key(), ES_KID, "ES384"))


@pytest.fixture
def cds(proxy: FaultProxy, tmp_path: Path, signing_key: SigningKey, knowledge: Knowledge) -> Iterator[CdsFactory]:
    """Start the CDS app (uvicorn, loopback) with the given deadline, reading FHIR through the proxy."""
    issuers = tmp_path / "issuers.json"
    issuers.write_text(json.dumps({ISSUER: {"jwks": {"keys": [signing_key.jwk]}}}))
    servers: list[LiveServer] = []

    def start(deadline_ms: int) -> Ehr:
        server = LiveServer()
        servers.append(server)
        settings = CdsSettings(
            public_url=server.base_url,
            cds_trusted_issuers_file=issuers,
            cds_feedback_db=tmp_path / f"cds-{len(servers)}.sqlite3",
            cds_subject_salt="test-salt",
            cds_deadline_ms=deadline_ms,
        )
        base = Settings(FHIR_BASE_URL=proxy.base_url, state_dir=tmp_path)
        server.start(create_app(settings, base, knowledge=knowledge))
        return Ehr(server.base_url, signing_key)

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def iron_deficient(fhir_base_url: str, unique_prefix: str) -> Patient:
    """A patient with RLS and ferritin 11 ug/L on the shared server: one iron-deficiency card."""
    observations = labs(unique_prefix, **{**NORMAL, "ferritin": 11.0})
    put_all(fhir_base_url, [patient(unique_prefix), rls_condition(unique_prefix), *observations])
    return Patient(unique_prefix, observations)


def call(ehr: Ehr, subject: Patient, fhir_server: str) -> tuple[int, Any, float]:
    """One patient-view call with the Observations prefetched; (status, body, seconds)."""
    body = patient_view_request(
        subject.id,
        {"observations": searchset(subject.observations)},
        fhirServer=fhir_server,
        fhirAuthorization={"access_token": f"t-{uuid.uuid4().hex}", "token_type": "Bearer", "expires_in": 300},
    )
    started = time.monotonic()
    response = ehr.call(PATIENT_VIEW, body)
    return response.status_code, response.json(), time.monotonic() - started


def topics(answer: Any) -> list[str]:
    return [card["source"]["topic"]["code"] for card in answer["cards"]]


SURVIVABLE = {
    "latency on every read": [Fault.latency(0.2)],
    "one fault on each read": [
        Fault.truncate(method="GET", path=CONDITION, times=1),
        Fault.unavailable(times=1, **BATCH),
    ],
    "resets on a new connection and on a read, with jitter": [
        Fault.reset(stage="connect", times=1),
        Fault.reset(times=1, **BATCH),
        Fault.latency(0.05, rate=0.5),
    ],
}


@pytest.mark.parametrize("faults", SURVIVABLE.values(), ids=SURVIVABLE.keys())
def test_survivable_faults_still_give_the_card_within_the_deadline(
    cds: CdsFactory, proxy: FaultProxy, iron_deficient: Patient, faults: list[Fault]
) -> None:
    ehr = cds(3000)
    proxy.set_faults(*faults)
    status, answer, elapsed = call(ehr, iron_deficient, proxy.base_url)
    assert status == 200, answer
    assert topics(answer) == ["iron-deficiency"]
    assert elapsed < 3.0
    assert all(f.fired == f.times if f.times is not None else f.fired > 0 for f in faults), faults


LATE = {
    "a stalled read": ([Fault.stall(10, method="GET", path=CONDITION, times=1)], 3000),
    "latency adding up past the deadline": ([Fault.latency(1.6)], 3000),  # two reads: Conditions, then a batch
}


@pytest.mark.parametrize(("faults", "deadline_ms"), LATE.values(), ids=LATE.keys())
def test_faults_past_the_deadline_give_no_cards_in_time_and_the_next_call_is_served(
    cds: CdsFactory, proxy: FaultProxy, iron_deficient: Patient, faults: list[Fault], deadline_ms: int
) -> None:
    ehr = cds(deadline_ms)
    proxy.set_faults(*faults)
    status, answer, elapsed = call(ehr, iron_deficient, proxy.base_url)
    assert (status, answer) == (200, {"cards": []})
    assert deadline_ms / 1000 <= elapsed < deadline_ms / 1000 + SLACK_S
    assert all(f.fired > 0 for f in faults)

    # The late call's worker is still waiting on the proxy; the next call is not held up by it.
    proxy.clear()
    status, answer, elapsed = call(ehr, iron_deficient, proxy.base_url)
    assert status == 200, answer
    assert topics(answer) == ["iron-deficiency"]
    assert elapsed < deadline_ms / 1000 + SLACK_S


def test_a_server_that_is_gone_gives_412_well_within_the_deadline(
    cds: CdsFactory, proxy: FaultProxy, iron_deficient: Patient
) -> None:
    ehr = cds(3000)
    proxy.set_faults(Fault.reset(), Fault.reset(stage="connect"))
    status, answer, elapsed = call(ehr, iron_deficient, proxy.base_url)
    assert status == 412, answer
    assert answer["resourceType"] == "OperationOutcome"
    assert "did not answer in time or failed" in json.dumps(answer)
    assert elapsed < 3.0


def test_a_retry_after_longer_than_the_deadline_fails_fast_and_sends_no_late_retry(
    cds: CdsFactory, proxy: FaultProxy, iron_deficient: Patient
) -> None:
    """A 20 s Retry-After cannot be waited out within a 2 s deadline: the service says so at once
    (412) instead of leaving a worker thread asleep for 20 s that then reads for an abandoned call."""
    ehr = cds(2000)
    (throttle,) = proxy.set_faults(Fault.too_many_requests("20", method="GET", path=CONDITION, times=1))
    status, answer, elapsed = call(ehr, iron_deficient, proxy.base_url)
    assert (status, throttle.fired) == (412, 1), answer
    assert "did not answer in time or failed" in json.dumps(answer)
    assert elapsed < 2.0
    time.sleep(2.5)
    assert not [e for e in proxy.forwarded() if "/fhir/Condition?" in e.target], "a late retry was sent"


def test_retry_after_waits_adding_up_past_the_deadline_fail_fast_with_412(
    cds: CdsFactory, proxy: FaultProxy, iron_deficient: Patient
) -> None:
    """1 s waited out on the Conditions leaves less than the 3 s the batch is asked to wait: the data cannot
    be had in time, so the service says so (412) at once rather than sleeping into the deadline."""
    ehr = cds(3000)
    faults = proxy.set_faults(
        Fault.too_many_requests("1", method="GET", path=CONDITION, times=1),
        Fault.too_many_requests("3", times=1, **BATCH),
    )
    status, answer, elapsed = call(ehr, iron_deficient, proxy.base_url)
    assert status == 412, answer
    assert "did not answer in time or failed" in json.dumps(answer)
    assert 1.0 <= elapsed < 3.0
    assert [f.fired for f in faults] == [1, 1]
    time.sleep(3.5)
    assert len([e for e in proxy.forwarded() if e.method == "POST"]) == 0, "the batch was retried late"


def test_a_burst_against_a_throttling_server_does_not_starve_the_service_once_it_recovers(
    cds: CdsFactory, proxy: FaultProxy, iron_deficient: Patient
) -> None:
    """50 calls (more than the 40 worker threads) against a server answering 429 with a 25 s
    Retry-After: each answers in time, and the first call after the server recovers gets its card."""
    ehr = cds(3000)
    proxy.set_faults(Fault.too_many_requests("25", method="GET", path=CONDITION))
    with ThreadPoolExecutor(50) as pool:
        answers = list(pool.map(lambda _: call(ehr, iron_deficient, proxy.base_url), range(50)))
    assert {status for status, _, _ in answers} == {412}
    assert max(elapsed for _, _, elapsed in answers) < 3.0 + SLACK_S
    proxy.clear()
    status, answer, elapsed = call(ehr, iron_deficient, proxy.base_url)
    assert status == 200, answer
    assert topics(answer) == ["iron-deficiency"]
    assert elapsed < 3.0 + SLACK_S
