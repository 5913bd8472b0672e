"""GET /metrics: Prometheus text that prometheus-client's parser reads, and counters that move with real calls.

Each test reads /metrics before and after real calls to a live service (metrics are per process, so
other tests' calls may have moved them too: every check is a difference). Labels never carry a
patient id: the calls use ids found nowhere else, and the exposition is searched for them.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
import requests
from tests.api.helpers import NORMAL, PATIENT_VIEW, Ehr, ServerFactory, full_prefetch, labs, patient_view_request
from tests.support.metrics_text import samples, total
from tests.support.scripted_server import Received, Reply, base_url, scripted_server

pytestmark = pytest.mark.net
EMPTY = {"resourceType": "Bundle", "type": "searchset", "total": 0, "entry": []}


def scrape(ehr: Ehr) -> str:
    response = requests.get(f"{ehr.base_url}/metrics", timeout=10)  # no JWT: Prometheus sends none
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples(response.text)  # parses
    return response.text


def _override(card_uuid: str) -> dict[str, Any]:
    reason = {"code": "already-addressed", "system": "https://rls-screen.org/fhir/CodeSystem/cds-override-reason"}
    return {
        "feedback": [
            {
                "card": card_uuid,
                "outcome": "overridden",
                "overrideReason": {"reason": reason},
                "outcomeTimestamp": "2026-11-20T10:00:00Z",
            }
        ]
    }


def test_calls_count_latency_cards_by_finding_and_indicator_and_suppressed_cards(cds_server: ServerFactory) -> None:
    _, ehr = cds_server()
    patient_id = f"mzq{uuid.uuid4().hex[:8]}"
    observations = labs(patient_id, **{**NORMAL, "ferritin": 30.0, "k": 3.2})
    before = scrape(ehr)
    cards = ehr.call(PATIENT_VIEW, patient_view_request(patient_id, full_prefetch(patient_id, observations))).json()[
        "cards"
    ]
    after = scrape(ehr)
    assert len(cards) == 1  # one card per call (low iron and low potassium in its table), by its lead finding
    calls = "rls_screen_cds_call_seconds_count"
    ok = {"service": PATIENT_VIEW, "outcome": "ok"}
    assert total(after, calls, **ok) - total(before, calls, **ok) == 1
    for card in cards:
        labels = {"service": PATIENT_VIEW, "finding": card["source"]["topic"]["code"], "indicator": card["indicator"]}
        assert (
            total(after, "rls_screen_cds_cards_total", **labels) - total(before, "rls_screen_cds_cards_total", **labels)
            >= 1
        )

    # Overridden, the card is hidden on the next call (nothing it rests on changed): counted as suppressed.
    assert ehr.post(f"/cds-services/{PATIENT_VIEW}/feedback", _override(cards[0]["uuid"])).status_code == 200
    again = ehr.call(PATIENT_VIEW, patient_view_request(patient_id, full_prefetch(patient_id, observations)))
    assert again.json()["cards"] == []
    last = scrape(ehr)
    suppressed = "rls_screen_cds_cards_suppressed_total"
    assert total(last, suppressed, service=PATIENT_VIEW) - total(after, suppressed, service=PATIENT_VIEW) == 1
    assert patient_id not in last


def test_jwt_rejections_are_counted_by_reason(cds_server: ServerFactory) -> None:
    _, ehr = cds_server()
    path = f"/cds-services/{PATIENT_VIEW}"
    before = scrape(ehr)
    assert requests.post(ehr.base_url + path, json={}, timeout=10).status_code == 401
    assert ehr.post(path, {}, token="not.a.jwt").status_code == 401
    expired = ehr.token(path, exp=int(time.time()) - 3600, iat=int(time.time()) - 3700)
    assert ehr.post(path, {}, token=expired).status_code == 401
    replayed = ehr.token(path)
    body = patient_view_request("jwt-r1", full_prefetch("jwt-r1", []))
    assert ehr.post(path, body, token=replayed).status_code == 200
    assert ehr.post(path, body, token=replayed).status_code == 401
    after = scrape(ehr)
    name = "rls_screen_cds_jwt_rejections_total"
    for reason in ("missing", "malformed", "expired", "replay"):
        assert total(after, name, reason=reason) - total(before, name, reason=reason) == 1, reason
    assert total(after, name, reason="other") == total(before, name, reason="other")


def test_fhir_requests_retries_and_errors_are_counted_by_kind(cds_server: ServerFactory) -> None:
    answered: list[Received] = []

    def script(received: Received) -> Reply:
        answered.append(received)
        if len(answered) == 1:
            return Reply(503, {"resourceType": "OperationOutcome"}, {"Retry-After": "0"})
        return Reply(200, EMPTY)

    with scripted_server(script) as fhir_server:
        fhir = base_url(fhir_server)
        _, ehr = cds_server(fhir_base_url=fhir)
        before = scrape(ehr)
        response = ehr.call(PATIENT_VIEW, patient_view_request(f"mf{uuid.uuid4().hex[:8]}", None, fhirServer=fhir))
        after = scrape(ehr)
    assert response.status_code == 200
    assert response.json() == {"cards": []}  # no RLS Condition
    requests_total = "rls_screen_fhir_requests_total"
    assert total(after, requests_total, status="503") - total(before, requests_total, status="503") == 1
    assert total(after, requests_total, status="200") - total(before, requests_total, status="200") == len(answered) - 1
    retries = "rls_screen_fhir_retries_total"
    assert total(after, retries, reason="http-503") - total(before, retries, reason="http-503") == 1
    seconds = "rls_screen_fhir_request_seconds_count"
    assert total(after, seconds) - total(before, seconds) == len(answered)
    resources = {dict(labels)["resource"] for (name, labels) in samples(after) if name == requests_total}
    assert resources <= {"Condition", "Observation", "Patient", "Procedure", "MedicationRequest", "(system)", "other"}
    # With tracing off (no RLS_SCREEN_OTLP_ENDPOINT), no trace context is sent.
    assert not any("traceparent" in {k.lower() for k in r.headers} for r in answered)

    # A server that is down: the typed error the caller gets is counted by kind.
    with scripted_server(lambda received: Reply(500, {"resourceType": "OperationOutcome"})) as down:
        fhir = base_url(down)
        _, ehr = cds_server(fhir_base_url=fhir)
        status = ehr.call(PATIENT_VIEW, patient_view_request("mf-down", None, fhirServer=fhir)).status_code
        errors = scrape(ehr)
    assert status == 412
    name = "rls_screen_fhir_errors_total"
    assert total(errors, name, kind="FhirUnavailableError") - total(after, name, kind="FhirUnavailableError") >= 1
    refused = "rls_screen_cds_call_seconds_count"
    assert (
        total(errors, refused, service=PATIENT_VIEW, outcome="http-412")
        - total(after, refused, service=PATIENT_VIEW, outcome="http-412")
        == 1
    )


def test_deadline_hits_are_counted(cds_server: ServerFactory) -> None:
    with scripted_server(lambda received: Reply(200, EMPTY, delay_s=3.0)) as slow:
        fhir = base_url(slow)
        _, ehr = cds_server(fhir_base_url=fhir, cds_deadline_ms=400)
        before = scrape(ehr)
        response = ehr.call(PATIENT_VIEW, patient_view_request("md1", None, fhirServer=fhir))
        after = scrape(ehr)
    assert response.json() == {"cards": []}
    hits = "rls_screen_cds_deadline_hits_total"
    assert total(after, hits, service=PATIENT_VIEW) - total(before, hits, service=PATIENT_VIEW) == 1
    calls = "rls_screen_cds_call_seconds_count"
    assert total(after, calls, outcome="deadline") - total(before, calls, outcome="deadline") == 1
    slow_bucket = "rls_screen_cds_call_seconds_bucket"
    assert total(after, slow_bucket, outcome="deadline", le="0.25") == total(
        before, slow_bucket, outcome="deadline", le="0.25"
    )
