"""fhir_reader against scripted loopback servers: what the pre-write read sends, and bad answers."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date
from typing import Any

import pytest
from tests.support.scripted_server import Received, Reply, base_url, scripted_server

from rls_screen.errors import FhirOperationError, FhirResponseError, FhirUnavailableError
from rls_screen.fhir_client import Allowlist, FhirClient
from rls_screen.fhir_reader import UnattributableError, read_existing_state
from rls_screen.writeback import FLAG_ID_SYSTEM, RISK_ASSESSMENT_ID_SYSTEM

FLAG = {
    "resourceType": "Flag",
    "id": "f1",
    "status": "active",
    "identifier": [{"system": FLAG_ID_SYSTEM, "value": "p1.iron-deficiency"}],
    "subject": {"reference": "Patient/p1"},
}
RISK_ASSESSMENT = {
    "resourceType": "RiskAssessment",
    "id": "ra1",
    "identifier": [{"system": RISK_ASSESSMENT_ID_SYSTEM, "value": "ra-1"}],
}


def _batch_response(received: Received) -> Reply:
    searchsets = [
        {"resourceType": "Bundle", "type": "searchset", "total": 1, "entry": [{"resource": FLAG}]},
        {"resourceType": "Bundle", "type": "searchset", "total": 0},
        {"resourceType": "Bundle", "type": "searchset", "total": 1, "entry": [{"resource": RISK_ASSESSMENT}]},
    ]
    return Reply(
        200,
        {
            "resourceType": "Bundle",
            "type": "batch-response",
            "entry": [{"resource": b, "response": {"status": "200 OK"}} for b in searchsets],
        },
    )


def _client(url: str) -> FhirClient:
    return FhirClient(url, allowlist=Allowlist((url,)), sleep=lambda s: None)


def test_the_read_before_a_write_asks_the_server_not_to_answer_from_its_search_cache() -> None:
    with scripted_server(_batch_response) as server:
        state = read_existing_state(_client(base_url(server)), "p1", "ra-1")
        [sent] = server.received
        assert sent.method == "POST"
        assert sent.headers["Cache-Control"] == "no-cache"
        batch = json.loads(sent.body)
        assert batch["type"] == "batch"
        assert [e["request"]["method"] for e in batch["entry"]] == ["GET"] * 3
        assert state.risk_assessment_exists
        assert state.service_request is None
        assert set(state.flags) == {"iron-deficiency"}


def test_one_patients_read_before_a_write_asks_what_a_groups_read_asks() -> None:
    """One pre-write read for every path: a patient's own read is the group read for a group of one."""
    with scripted_server(_batch_response) as server:
        read_existing_state(_client(base_url(server)), "p1", "ra-1")
        [sent] = server.received
    urls = [e["request"]["url"] for e in json.loads(sent.body)["entry"]]
    assert [url.split("?")[0] for url in urls] == ["Flag", "ServiceRequest", "RiskAssessment"]
    assert "subject=Patient/p1&" in urls[0]
    assert "p1.missing-iron-studies" in urls[1]
    assert urls[2].startswith(f"RiskAssessment?identifier={RISK_ASSESSMENT_ID_SYSTEM}|ra-1&")


@pytest.mark.parametrize(
    ("value", "subject"),
    [("p2.iron-deficiency", "Patient/p1"), ("p1.iron-deficiency", "Patient/p2")],
    ids=["identifier of another patient", "subject another patient"],
)
def test_a_flag_of_ours_for_another_patient_refuses_one_patients_read(value: str, subject: str) -> None:
    """Never guessed: a Flag that is not this patient's by identifier and subject both is an error, not indexed."""
    flag = {**FLAG, "identifier": [{"system": FLAG_ID_SYSTEM, "value": value}], "subject": {"reference": subject}}
    answer = json.loads(json.dumps(_batch_response(Received("POST", "/fhir", {}, b"")).body))
    answer["entry"][0]["resource"]["entry"] = [{"resource": flag}]
    with scripted_server(lambda r: Reply(200, answer)) as server, pytest.raises(UnattributableError):
        read_existing_state(_client(base_url(server)), "p1", "ra-1")


def test_the_read_before_a_write_answered_by_a_login_page_is_a_typed_error() -> None:
    page = b"<html><body>Please sign in</body></html>"
    with scripted_server(lambda r: Reply(200, page, headers={"Content-Type": "text/html"})) as server:
        with pytest.raises(FhirResponseError, match=rf"POST \(system\): expected FHIR JSON, .*\({len(page)} bytes\)"):
            read_existing_state(_client(base_url(server)), "p1", "ra-1")
        assert len(server.received) == 1


def test_the_read_before_a_write_cut_off_is_retried_with_the_same_header() -> None:
    replies = iter([Reply(200, b'{"resourceType": "Bundle", "type": "batch-resp'), None])

    def answer(received: Received) -> Reply:
        return next(replies) or _batch_response(received)

    with scripted_server(answer) as server:
        read_existing_state(_client(base_url(server)), "p1", "ra-1")
        assert [r.headers["Cache-Control"] for r in server.received] == ["no-cache", "no-cache"]


def test_the_read_before_a_write_that_stays_cut_off_is_transient() -> None:
    with scripted_server(lambda r: Reply(200, b'{"resourceType": "Bun')) as server:
        with pytest.raises(FhirUnavailableError, match="ends before the JSON does"):
            read_existing_state(_client(base_url(server)), "p1", "ra-1")
        assert len(server.received) == 4  # the first try and max_retries (3) more


MALFORMED: dict[str, Callable[[Any], None]] = {
    "entry an object": lambda answer: answer.update(entry=answer["entry"][0]),
    "entry null": lambda answer: answer.update(entry=None),
    "response a string": lambda answer: answer["entry"][0].update(response="200 OK"),
    "resource a string": lambda answer: answer["entry"][1].update(resource="Bundle"),
    "inner entry an object": lambda answer: answer["entry"][0]["resource"].update(entry={"resource": FLAG}),
    "flag identifier a string": lambda answer: answer["entry"][0]["resource"].update(
        entry=[{"resource": {**FLAG, "identifier": "x"}}]
    ),
    "risk assessment identifier a string": lambda answer: answer["entry"][2]["resource"]["entry"][0].update(
        resource={**RISK_ASSESSMENT, "identifier": "ra-1"}
    ),
}


@pytest.mark.parametrize("change", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_answer_to_the_read_before_a_write_is_a_typed_error(change: Callable[[Any], None]) -> None:
    """Not an AttributeError or TypeError: the batch records a reason and the CDS never sees a 500."""
    answer = json.loads(json.dumps(_batch_response(Received("POST", "/fhir", {}, b"")).body))
    change(answer)
    with scripted_server(lambda r: Reply(200, answer)) as server:
        client = _client(base_url(server))
        with pytest.raises((FhirResponseError, FhirOperationError)):
            read_existing_state(client, "p1", "ra-1")


def test_a_patient_read_answered_with_another_patient_is_an_error_and_nothing_else_is_read() -> None:
    """D1: ``GET Patient/p1`` answered with Patient/p2 is never used (its sex and birth date would be)."""
    from rls_screen.fhir_reader import read_patient_data
    from rls_screen.knowledge import load_knowledge

    def script(received: Received) -> Reply:
        if received.path.startswith("/fhir/Patient/"):
            return Reply(200, {"resourceType": "Patient", "id": "p2", "gender": "female"})
        return Reply(200, {"resourceType": "Bundle", "type": "searchset", "total": 0})

    with scripted_server(script) as server:
        with pytest.raises(FhirResponseError, match="returned a different Patient than the one asked for"):
            read_patient_data(_client(base_url(server)), "p1", load_knowledge(), date(2026, 12, 1))
        assert [r.path.split("?")[0] for r in server.received] == ["/fhir/Patient/p1"]


def test_the_rest_read_links_absolute_references_on_its_own_base_only() -> None:
    """A server answering with absolute subject URLs: its own base is the patient; another server's is not."""
    from rls_screen.fhir_reader import read_patient_data
    from rls_screen.knowledge import load_knowledge

    holder: dict[str, str] = {}

    def observation(n: int, reference: str) -> dict[str, Any]:
        return {
            "resourceType": "Observation",
            "id": f"k{n}",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "2823-3"}]},
            "subject": {"reference": reference},
            "effectiveDateTime": "2026-11-30",
            "valueQuantity": {"value": 4.1, "unit": "mmol/L", "system": "http://unitsofmeasure.org", "code": "mmol/L"},
        }

    def script(received: Received) -> Reply:
        if received.path.startswith("/fhir/Patient/"):
            return Reply(200, {"resourceType": "Patient", "id": "p1"})
        if received.path.startswith("/fhir/Observation"):
            entries = [
                {"resource": observation(1, f"{holder['base']}/Patient/p1")},
                {"resource": observation(2, "https://other.example/fhir/Patient/p1")},
            ]
            return Reply(200, {"resourceType": "Bundle", "type": "searchset", "entry": entries})
        return Reply(200, {"resourceType": "Bundle", "type": "searchset", "total": 0})

    with scripted_server(script) as server:
        holder["base"] = base_url(server)
        data = read_patient_data(_client(holder["base"]), "p1", load_knowledge(), date(2026, 12, 1))
    assert [o["id"] for o in data.observations] == ["k1"]
    assert [(r["id"], why) for r, why in data.unlinked] == [
        ("k2", "the subject is a Patient on another FHIR server, or another patient")
    ]
