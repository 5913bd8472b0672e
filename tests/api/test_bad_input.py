"""Malformed requests get a 4xx with an OperationOutcome, never a 5xx; nothing of the input is echoed."""

from __future__ import annotations

import http.client
import json
import uuid
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from tests.api.helpers import (
    NORMAL,
    ORDER_SELECT,
    PATIENT_VIEW,
    Ehr,
    ServerFactory,
    full_prefetch,
    labs,
    patient_view_request,
)

pytestmark = pytest.mark.net
SERVICE = f"/cds-services/{PATIENT_VIEW}"


def _outcome(response: requests.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    body: dict[str, Any] = response.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"]
    assert all(issue["severity"] == "error" and issue["code"] and issue["diagnostics"] for issue in body["issue"])
    return body


def _valid() -> dict[str, Any]:
    return patient_view_request("bi1", full_prefetch("bi1", labs("bi1", **NORMAL)))


@pytest.fixture
def ehr(cds_server: ServerFactory) -> Ehr:
    return cds_server(cds_max_body_bytes=64 * 1024)[1]


@pytest.mark.parametrize(
    "raw",
    [b"{not json", b"", b"null", b"[]", b'"a string"', b"{}", b"[" * 30000 + b"]" * 30000, b"\xff\xfe\x00"],
    ids=["broken", "empty", "null", "array", "string", "empty object", "deep nesting", "not utf-8"],
)
def test_malformed_json(ehr: Ehr, raw: bytes) -> None:
    response = ehr.post(SERVICE, None, raw=raw)
    status = 413 if len(raw) > 64 * 1024 else 400
    _outcome(response, status)


def test_wrong_hook_for_the_service(ehr: Ehr) -> None:
    body = _valid() | {"hook": "order-sign"}
    outcome = _outcome(ehr.post(SERVICE, body), 400)
    assert any("hook" in issue["diagnostics"] for issue in outcome["issue"])
    assert ehr.call(ORDER_SELECT, _valid()).status_code == 400  # a patient-view body for order-select


@pytest.mark.parametrize("missing", ["patientId", "userId"])
def test_missing_context_fields(ehr: Ehr, missing: str) -> None:
    body = _valid()
    del body["context"][missing]
    outcome = _outcome(ehr.post(SERVICE, body), 400)
    assert any(f"context.{missing}" in issue["diagnostics"] for issue in outcome["issue"])


def test_order_select_without_selections_or_draft_orders(ehr: Ehr) -> None:
    body = {
        "hook": "order-select",
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/1", "patientId": "p1"},
    }
    outcome = _outcome(ehr.call(ORDER_SELECT, body), 400)
    problems = " ".join(issue["diagnostics"] for issue in outcome["issue"])
    assert "context.selections" in problems
    assert "context.draftOrders" in problems


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("hookInstance", "not-a-uuid"),
        ("context", "a string"),
        ("prefetch", ["not", "an", "object"]),
        ("fhirServer", "ftp://example.org/fhir"),
    ],
)
def test_wrong_types(ehr: Ehr, field: str, value: Any) -> None:
    _outcome(ehr.post(SERVICE, _valid() | {field: value}), 400)


def test_fhir_authorization_requires_fhir_server(ehr: Ehr) -> None:
    body = _valid() | {"fhirAuthorization": {"access_token": "secret-token-value", "token_type": "Bearer"}}
    response = ehr.post(SERVICE, body)
    _outcome(response, 400)
    assert "secret-token-value" not in response.text


def test_patient_id_that_is_not_a_fhir_id(ehr: Ehr) -> None:
    body = _valid()
    body["context"]["patientId"] = "../../Patient?name=x"
    response = ehr.post(SERVICE, body)
    _outcome(response, 400)
    assert "name=x" not in response.text  # the input is not echoed


def test_prefetch_of_the_wrong_type(ehr: Ehr) -> None:
    body = _valid()
    body["prefetch"]["observations"] = {"resourceType": "Patient", "id": "bi1"}
    _outcome(ehr.post(SERVICE, body), 400)


def test_absurd_sizes(ehr: Ehr) -> None:
    huge = _valid()
    huge["prefetch"]["padding"] = {"resourceType": "Basic", "text": "x" * 200_000}
    _outcome(ehr.post(SERVICE, huge), 413)
    long_id = _valid()
    long_id["context"]["patientId"] = "p" * 5000
    _outcome(ehr.post(SERVICE, long_id), 400)
    many_keys = _valid()
    many_keys["prefetch"] = {f"k{n}": None for n in range(500)}
    _outcome(ehr.post(SERVICE, many_keys), 400)


def test_oversized_chunked_body_without_content_length(ehr: Ehr) -> None:
    parts = urlsplit(ehr.base_url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    token = ehr.token(SERVICE)
    chunk = json.dumps({"padding": "x" * 100_000}).encode()
    connection.putrequest("POST", SERVICE)
    connection.putheader("Authorization", f"Bearer {token}")
    connection.putheader("Content-Type", "application/json")
    connection.putheader("Transfer-Encoding", "chunked")
    connection.endheaders()
    connection.send(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n0\r\n\r\n")
    response = connection.getresponse()
    assert response.status == 413
    assert json.loads(response.read())["resourceType"] == "OperationOutcome"
    connection.close()


def test_unknown_service_and_wrong_method(ehr: Ehr) -> None:
    _outcome(ehr.post("/cds-services/no-such-service", _valid()), 404)
    _outcome(ehr.get(SERVICE), 405)


def test_wrong_content_type(ehr: Ehr) -> None:
    response = ehr.post(SERVICE, _valid(), headers={"Content-Type": "text/plain"})
    _outcome(response, 400)


def test_feedback_validation(ehr: Ehr) -> None:
    path = f"/cds-services/{PATIENT_VIEW}/feedback"
    _outcome(ehr.post(path, {"feedback": []}), 400)
    accepted_without_suggestions = {
        "feedback": [{"card": str(uuid.uuid4()), "outcome": "accepted", "outcomeTimestamp": "2026-01-01T00:00:00Z"}]
    }
    _outcome(ehr.post(path, accepted_without_suggestions), 400)
    bad_outcome = {
        "feedback": [{"card": str(uuid.uuid4()), "outcome": "ignored", "outcomeTimestamp": "2026-01-01T00:00:00Z"}]
    }
    _outcome(ehr.post(path, bad_outcome), 400)
    naive_time = {
        "feedback": [{"card": str(uuid.uuid4()), "outcome": "overridden", "outcomeTimestamp": "2026-01-01T00:00:00"}]
    }
    _outcome(ehr.post(path, naive_time), 400)


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b'{"hook": "patient-view", "n": NaN}', "NaN is not JSON"),
        (b'{"hook": "patient-view", "n": 1e400}', "a number out of range"),
        (b'{"hook": "patient-\\ud800"}', "a lone surrogate"),
        (json.dumps({"hook": "patient-view"}).encode("utf-16"), "UTF-16 (RFC 8259: JSON between systems is UTF-8)"),
    ],
)
def test_json_the_decoder_refuses_is_a_400(ehr: Ehr, raw: bytes, why: str) -> None:
    outcome = _outcome(ehr.post(SERVICE, None, raw=raw), 400)
    assert any("not valid JSON" in issue["diagnostics"] for issue in outcome["issue"]), why


def test_a_utf8_byte_order_mark_is_ignored(ehr: Ehr) -> None:
    """RFC 8259 section 8.1 lets a parser ignore a BOM; the standard library's json did, so the service does."""
    body = patient_view_request("bi-bom", full_prefetch("bi-bom", labs("bi-bom", **(NORMAL | {"ferritin": 20.0}))))
    response = ehr.post(SERVICE, None, raw=b"\xef\xbb\xbf" + json.dumps(body).encode())
    assert response.status_code == 200, response.text
    assert response.json()["cards"], "low ferritin gives a card"
    assert response.json() == ehr.post(SERVICE, body).json()
