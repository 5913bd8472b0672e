"""Discovery, feedback with override suppression, the hard deadline, CORS."""

from __future__ import annotations

import json
import logging
import sqlite3
import time
import uuid
from pathlib import Path

import pytest
from tests.api.helpers import (
    NORMAL,
    ORDER_SELECT,
    ORDER_SIGN,
    PATIENT_VIEW,
    ServerFactory,
    full_prefetch,
    labs,
    patient_view_request,
    rls_condition,
    searchset,
)
from tests.support.fhir_data import observation, patient
from tests.support.scripted_server import Reply, base_url, scripted_server

pytestmark = pytest.mark.net


def test_discovery_lists_the_three_services_with_r4_prefetch(cds_server: ServerFactory) -> None:
    _, ehr = cds_server()
    response = ehr.get("/cds-services")
    assert response.status_code == 200
    services = {s["id"]: s for s in response.json()["services"]}
    assert {sid: s["hook"] for sid, s in services.items()} == {
        PATIENT_VIEW: "patient-view",
        ORDER_SELECT: "order-select",
        ORDER_SIGN: "order-sign",
    }
    for service in services.values():
        assert service["title"]
        assert service["description"]
        assert service["prefetch"]["patient"] == "Patient/{{context.patientId}}"
        assert "_sort=-date" in service["prefetch"]["observations"]
        assert "sort:desc" not in service["prefetch"]["observations"]
        assert "http://loinc.org|2276-4" in service["prefetch"]["observations"]
        assert None not in service.values()
    assert "medications" in services[PATIENT_VIEW]["prefetch"]


def _feedback(card: str, outcome: str = "overridden") -> dict[str, object]:
    item: dict[str, object] = {"card": card, "outcome": outcome, "outcomeTimestamp": "2026-11-20T10:00:00Z"}
    if outcome == "overridden":
        item["overrideReason"] = {
            "reason": {
                "system": "https://rls-screen.org/fhir/CodeSystem/cds-override-reason",
                "code": "already-addressed",
            },
            "userComment": "free text that is not stored",
        }
    return {"feedback": [item]}


def test_overridden_one_card_is_suppressed_until_the_data_changes(cds_server: ServerFactory) -> None:
    """One card: an override says 'this screen was reviewed'; it stays hidden until what it rests on changes."""
    _, ehr = cds_server()
    observations = labs("fb1", **{**NORMAL, "ferritin": 30.0, "k": 3.2})
    (first,) = ehr.call(PATIENT_VIEW, patient_view_request("fb1", full_prefetch("fb1", observations))).json()["cards"]
    assert first["summary"].startswith("Iron below RLS target")
    assert "+ 1 more" in first["summary"]
    response = ehr.post(f"/cds-services/{PATIENT_VIEW}/feedback", _feedback(first["uuid"]))
    assert (response.status_code, response.json()) == (200, {})

    again = ehr.call(PATIENT_VIEW, patient_view_request("fb1", full_prefetch("fb1", observations))).json()["cards"]
    assert again == []
    other_patient = ehr.call(
        PATIENT_VIEW, patient_view_request("fb2", full_prefetch("fb2", labs("fb2", ferritin=30.0)))
    )
    assert [c["source"]["topic"]["code"] for c in other_patient.json()["cards"]] == ["iron-insufficient-for-rls"]

    # A new ferritin result (new data) brings the whole card back.
    newer = [*observations, observation("fb1", 99, "2276-4", 25.0, "ug/L", time.strftime("%Y-%m-%d"))]
    (back,) = ehr.call(PATIENT_VIEW, patient_view_request("fb1", full_prefetch("fb1", newer))).json()["cards"]
    assert "+ 1 more" in back["summary"]

    # So does an amended version of the same Observation, and a finding that resolves (the set changed).
    amended = [dict(o) for o in observations]
    amended[0]["meta"] = {"versionId": "2"}
    assert ehr.call(PATIENT_VIEW, patient_view_request("fb1", full_prefetch("fb1", amended))).json()["cards"]
    resolved = labs("fb1", **{**NORMAL, "ferritin": 30.0})
    assert ehr.call(PATIENT_VIEW, patient_view_request("fb1", full_prefetch("fb1", resolved))).json()["cards"]


def test_per_finding_override_suppresses_only_that_finding(cds_server: ServerFactory) -> None:
    _, ehr = cds_server(cds_card_mode="per-finding")
    observations = labs("fb3", **{**NORMAL, "ferritin": 30.0, "k": 3.2})
    first = ehr.call(PATIENT_VIEW, patient_view_request("fb3", full_prefetch("fb3", observations))).json()["cards"]
    assert [c["source"]["topic"]["code"] for c in first] == ["iron-insufficient-for-rls", "hypokalemia"]
    assert ehr.post(f"/cds-services/{PATIENT_VIEW}/feedback", _feedback(first[0]["uuid"])).status_code == 200
    again = ehr.call(PATIENT_VIEW, patient_view_request("fb3", full_prefetch("fb3", observations))).json()["cards"]
    assert [c["source"]["topic"]["code"] for c in again] == ["hypokalemia"]
    newer = [*observations, observation("fb3", 99, "2276-4", 25.0, "ug/L", time.strftime("%Y-%m-%d"))]
    back = ehr.call(PATIENT_VIEW, patient_view_request("fb3", full_prefetch("fb3", newer))).json()["cards"]
    assert "iron-insufficient-for-rls" in [c["source"]["topic"]["code"] for c in back]


def test_feedback_is_stored_without_free_text_or_patient_ids(cds_server: ServerFactory, tmp_path: Path) -> None:
    _, ehr = cds_server(cds_feedback_db=tmp_path / "fb.sqlite3")
    # The patient id has letters no hex digest or uuid holds (the file keeps card uuids and JWT jti too).
    cards = ehr.call(PATIENT_VIEW, patient_view_request("fbqz3", full_prefetch("fbqz3", []))).json()["cards"]
    card = cards[0]
    suggestion = card["suggestions"][0]["uuid"]
    accepted = {
        "feedback": [
            {
                "card": card["uuid"],
                "outcome": "accepted",
                "acceptedSuggestions": [{"id": suggestion}],
                "outcomeTimestamp": "2026-11-20T10:00:00Z",
            }
        ]
    }
    assert ehr.post(f"/cds-services/{PATIENT_VIEW}/feedback", accepted).status_code == 200
    assert ehr.post(f"/cds-services/{PATIENT_VIEW}/feedback", _feedback(card["uuid"])).status_code == 200
    with sqlite3.connect(tmp_path / "fb.sqlite3") as db:
        rows = db.execute(
            "SELECT outcome, override_code, had_user_comment, accepted_suggestions FROM feedback"
        ).fetchall()
        dump = "\n".join(db.iterdump())
    assert rows == [("accepted", None, 0, f'["{suggestion}"]'), ("overridden", "already-addressed", 1, None)]
    assert "free text" not in dump
    assert "fbqz3" not in dump


def test_order_feedback_suppresses_the_order_card(cds_server: ServerFactory) -> None:
    _, ehr = cds_server()
    prefetch = {
        "patient": patient("fb4"),
        "conditions": searchset([rls_condition("fb4")]),
        "observations": None,
        "procedures": None,
        "medications": None,
    }
    order = {
        "resourceType": "MedicationRequest",
        "id": "fb4-mr1",
        "status": "draft",
        "intent": "order",
        "subject": {"reference": "Patient/fb4"},
        "medicationCodeableConcept": {"text": "ropinirole 0.25 mg tablet"},
    }
    body = {
        "hook": "order-sign",
        "hookInstance": str(uuid.uuid4()),
        "context": {
            "userId": "Practitioner/1",
            "patientId": "fb4",
            "draftOrders": {"resourceType": "Bundle", "entry": [{"resource": order}]},
        },
        "prefetch": prefetch,
    }
    (card,) = ehr.call(ORDER_SIGN, body).json()["cards"]
    assert ehr.post(f"/cds-services/{ORDER_SIGN}/feedback", _feedback(card["uuid"])).status_code == 200
    assert ehr.call(ORDER_SIGN, body | {"hookInstance": str(uuid.uuid4())}).json() == {"cards": []}


def test_deadline_answers_no_cards_and_logs_why(cds_server: ServerFactory, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="rls_screen.cds")
    with scripted_server(
        lambda received: Reply(200, {"resourceType": "Bundle", "type": "searchset"}, delay_s=3.0)
    ) as slow:
        fhir = base_url(slow)
        _, ehr = cds_server(fhir_base_url=fhir, cds_deadline_ms=400)
        body = patient_view_request("dl1", None, fhirServer=fhir)
        started = time.monotonic()
        response = ehr.call(PATIENT_VIEW, body)
        elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert response.json() == {"cards": []}
    assert elapsed < 2.0
    assert any("deadline" in r.getMessage() for r in caplog.records)


def test_fhir_server_gets_the_bearer_token_and_nothing_else_does(cds_server: ServerFactory) -> None:
    def script(received: object) -> Reply:
        path = received.path  # type: ignore[attr-defined]
        if path.startswith("/fhir/Condition"):
            return Reply(200, searchset([rls_condition("tk1")]))
        # The Patient, the windowed lab search and the Procedures, asked for together in one batch.
        ok = {"status": "200 OK"}
        answers = [
            {"resource": patient("tk1"), "response": ok},
            {"resource": searchset(labs("tk1", **NORMAL)), "response": ok},
            {"resource": searchset([]), "response": ok},
        ]
        return Reply(200, {"resourceType": "Bundle", "type": "batch-response", "entry": answers})

    with scripted_server(script) as fhir_server:
        fhir = base_url(fhir_server)
        _, ehr = cds_server(fhir_base_url=fhir)
        body = patient_view_request(
            "tk1",
            {"medications": None},
            fhirServer=fhir,
            fhirAuthorization={
                "access_token": "ehr-token-123",
                "token_type": "Bearer",
                "expires_in": 300,
                "scope": "patient/*.read",
                "subject": "rls-screen",
            },
        )
        response = ehr.call(PATIENT_VIEW, body)
        assert response.status_code == 200, response.text
        assert response.json() == {"cards": []}
        assert [r.headers.get("Authorization") for r in fhir_server.received] == ["Bearer ehr-token-123"] * 2
        batch = json.loads(fhir_server.received[-1].body)
        assert [e["request"]["url"].split("?")[0] for e in batch["entry"]] == [
            "Patient/tk1",
            "Observation",
            "Procedure",
        ]
        assert "combo-code=" in batch["entry"][1]["request"]["url"]  # panels whose component is an analyte (D5)
        assert "date=" not in batch["entry"][1]["request"]["url"]  # the window is applied in memory (D2, D4)


def test_cors_is_configurable(cds_server: ServerFactory) -> None:
    server, ehr = cds_server(cds_cors_origins="https://ehr.example.test")
    preflight = ehr.session.options(
        server.base_url + f"/cds-services/{PATIENT_VIEW}",
        headers={
            "Origin": "https://ehr.example.test",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
        timeout=10,
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://ehr.example.test"
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    other = ehr.session.options(
        server.base_url + "/cds-services",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
        timeout=10,
    )
    assert "access-control-allow-origin" not in other.headers


def test_a_call_abandoned_at_its_deadline_sends_no_further_reads(cds_server: ServerFactory) -> None:
    """The EHR got {"cards": []} at 1 s; the worker still reading must not go on querying the EHR's server."""

    def script(received: object) -> Reply:
        path = received.path  # type: ignore[attr-defined]
        if received.method == "POST":  # type: ignore[attr-defined]
            return Reply(405)  # no batch support: the reads go one by one
        if path.startswith("/fhir/Condition"):
            return Reply(200, searchset([rls_condition("ab1")]))
        if path.startswith("/fhir/Patient/"):
            return Reply(200, patient("ab1"), delay_s=0.6)
        if path.startswith("/fhir/Observation"):
            return Reply(200, searchset(labs("ab1", **NORMAL)), delay_s=0.6)  # answers at ~1.2 s
        return Reply(200, searchset([]))

    with scripted_server(script) as fhir_server:
        fhir = base_url(fhir_server)
        _, ehr = cds_server(fhir_base_url=fhir, cds_deadline_ms=1000)
        authorization = {"access_token": "t", "token_type": "Bearer", "expires_in": 300, "subject": "s"}
        body = patient_view_request("ab1", None, fhirServer=fhir, fhirAuthorization=authorization)
        response = ehr.call(PATIENT_VIEW, body)
        assert (response.status_code, response.json()) == (200, {"cards": []})
        time.sleep(1.0)  # long enough for the abandoned worker to have sent the MedicationRequest search
        paths = [r.path.split("?")[0] for r in fhir_server.received]
        assert paths == ["/fhir/Condition", "/fhir/", "/fhir/Patient/ab1", "/fhir/Observation"]


def test_a_failing_batch_read_gives_412_without_reading_key_by_key(cds_server: ServerFactory) -> None:
    """A server failing the batch would fail the single reads too: say so at once, within the deadline."""

    def script(received: object) -> Reply:
        if received.path.startswith("/fhir/Condition"):  # type: ignore[attr-defined]
            return Reply(200, searchset([rls_condition("bf1")]))
        return Reply(503, {"resourceType": "OperationOutcome", "issue": []})

    with scripted_server(script) as fhir_server:
        fhir = base_url(fhir_server)
        _, ehr = cds_server(fhir_base_url=fhir)
        authorization = {"access_token": "t", "token_type": "Bearer", "expires_in": 300, "subject": "s"}
        response = ehr.call(
            PATIENT_VIEW, patient_view_request("bf1", None, fhirServer=fhir, fhirAuthorization=authorization)
        )
        assert response.status_code == 412, response.text
        assert "the Patient, the patient's lab Observations" in response.text
        assert "did not answer in time or failed" in response.text
        assert [r.method for r in fhir_server.received] == ["GET", "POST", "POST"]  # one retry, no single reads
