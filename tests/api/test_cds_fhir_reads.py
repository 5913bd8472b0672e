"""How the CDS service reads from the EHR's FHIR server when data was not prefetched: scripted servers
that misbehave in one precise way (pages that fail, slow pages, foreign next links, late answers)."""

from __future__ import annotations

import time
from typing import Any

from tests.api.helpers import NORMAL, PATIENT_VIEW, ServerFactory, labs, patient_view_request, rls_condition, searchset
from tests.support.fhir_data import patient
from tests.support.scripted_server import Received, Reply, base_url, scripted_server

AUTHORIZATION = {"access_token": "t", "token_type": "Bearer", "expires_in": 300, "subject": "s"}


def _batch_response(*resources: dict[str, Any]) -> dict[str, Any]:
    ok = {"status": "200 OK"}
    return {
        "resourceType": "Bundle",
        "type": "batch-response",
        "entry": [{"resource": r, "response": ok} for r in resources],
    }


def _topics(response: Any) -> list[str]:
    return [card["source"]["topic"]["code"] for card in response.json()["cards"]]


def test_a_failing_later_page_of_the_optional_medications_in_a_batch_still_gives_the_cards(
    cds_server: ServerFactory,
) -> None:
    """Medications are optional: their failure skips the medication check, batched or not."""

    def script(received: Received) -> Reply:
        if received.path.startswith("/fhir/Condition"):
            return Reply(200, searchset([rls_condition("mp1")]))
        if received.method == "POST":
            medications = searchset([], next_url=f"{base_url(fhir_server)}/MedicationRequest?page=2")
            labs_bundle = searchset(labs("mp1", **{**NORMAL, "ferritin": 11.0}))
            return Reply(200, _batch_response(patient("mp1"), labs_bundle, searchset([]), medications))
        return Reply(500, {"resourceType": "OperationOutcome", "issue": []})  # page 2 and its own read

    with scripted_server(script) as fhir_server:
        fhir = base_url(fhir_server)
        _, ehr = cds_server(fhir_base_url=fhir)
        body = patient_view_request("mp1", None, fhirServer=fhir, fhirAuthorization=AUTHORIZATION)
        response = ehr.call(PATIENT_VIEW, body)
        assert response.status_code == 200, response.text
        assert _topics(response) == ["iron-deficiency"]


def test_a_batch_answer_in_the_wrong_shape_is_not_trusted(cds_server: ServerFactory) -> None:
    """A server answering the batch with entries in another order: each key is read on its own."""

    def script(received: Received) -> Reply:
        path = received.path
        if path.startswith("/fhir/Condition"):
            return Reply(200, searchset([rls_condition("ws1")]))
        if received.method == "POST":  # the labs and the medications swapped
            labs_bundle = searchset(labs("ws1", **{**NORMAL, "hb": 95.0}))
            order = {"resourceType": "MedicationRequest", "id": "ws1-mr", "status": "active", "intent": "order"}
            return Reply(200, _batch_response(patient("ws1"), searchset([order]), searchset([]), labs_bundle))
        if path.startswith("/fhir/Observation"):
            return Reply(200, searchset(labs("ws1", **{**NORMAL, "hb": 95.0})))
        return Reply(200, searchset([]))

    with scripted_server(script) as fhir_server:
        fhir = base_url(fhir_server)
        _, ehr = cds_server(fhir_base_url=fhir)
        body = patient_view_request("ws1", None, fhirServer=fhir, fhirAuthorization=AUTHORIZATION)
        response = ehr.call(PATIENT_VIEW, body)
        assert _topics(response) == ["anemia"]
        read_alone = [r.path.split("?")[0] for r in fhir_server.received if r.method == "GET"]
        assert read_alone == ["/fhir/Condition", "/fhir/Observation", "/fhir/MedicationRequest"]  # Procedures fit


def test_pages_stop_at_the_deadline(cds_server: ServerFactory) -> None:
    """An abandoned call does not go on paging through the EHR's server after its answer went out."""

    def script(received: Received) -> Reply:
        path = received.path
        if received.method == "POST":
            return Reply(405)
        if path.startswith("/fhir/Condition"):
            return Reply(200, searchset([rls_condition("pd1")]))
        if path.startswith("/fhir/Patient/"):
            return Reply(200, patient("pd1"))
        # Observations: 0.3 s per page, always another page.
        return Reply(200, searchset([], next_url=f"{base_url(fhir_server)}/Observation?page=n"), delay_s=0.3)

    with scripted_server(script) as fhir_server:
        fhir = base_url(fhir_server)
        _, ehr = cds_server(fhir_base_url=fhir, cds_deadline_ms=800)
        body = patient_view_request("pd1", None, fhirServer=fhir, fhirAuthorization=AUTHORIZATION)
        response = ehr.call(PATIENT_VIEW, body)
        assert (response.status_code, response.json()) == (200, {"cards": []})
        time.sleep(1.5)  # without the deadline check, five more pages would be asked for meanwhile
        pages = [r for r in fhir_server.received if r.path.startswith("/fhir/Observation")]
        assert 1 <= len(pages) <= 3


def test_the_bearer_token_never_follows_a_next_link_to_another_allowed_server(cds_server: ServerFactory) -> None:
    """fhirServer's token stays with fhirServer, even when a next link names a server the module may call."""

    def other(received: Received) -> Reply:
        return Reply(200, searchset([]))

    with scripted_server(other) as elsewhere:

        def script(received: Received) -> Reply:
            path = received.path
            if received.method == "POST":
                return Reply(405)
            if path.startswith("/fhir/Condition"):
                return Reply(200, searchset([rls_condition("nl1")]))
            if path.startswith("/fhir/Patient/"):
                return Reply(200, patient("nl1"))
            return Reply(200, searchset([], next_url=f"{base_url(elsewhere)}/Observation?page=2"))

        with scripted_server(script) as fhir_server:
            fhir = base_url(fhir_server)
            _, ehr = cds_server(fhir_base_url=fhir, fhir_allowlist=base_url(elsewhere))
            body = patient_view_request("nl1", None, fhirServer=fhir, fhirAuthorization=AUTHORIZATION)
            response = ehr.call(PATIENT_VIEW, body)
            assert response.status_code == 412, response.text
            assert "outside the allowed FHIR server" in response.text
            assert elsewhere.received == []


def test_a_batch_rejected_for_another_reason_is_not_taken_as_no_batch_support(cds_server: ServerFactory) -> None:
    """409 (or 422, ...) on one batch says nothing about batch support: the next call batches again."""

    def script(received: Received) -> Reply:
        path = received.path
        if received.method == "POST":
            return Reply(409, {"resourceType": "OperationOutcome", "issue": []})
        if path.startswith("/fhir/Condition"):
            return Reply(200, searchset([rls_condition("cf1")]))
        if path.startswith("/fhir/Patient/"):
            return Reply(200, patient("cf1"))
        if path.startswith("/fhir/Observation"):
            return Reply(200, searchset(labs("cf1", **{**NORMAL, "hb": 95.0})))
        return Reply(200, searchset([]))

    with scripted_server(script) as fhir_server:
        fhir = base_url(fhir_server)
        _, ehr = cds_server(fhir_base_url=fhir)
        for _ in range(2):
            body = patient_view_request("cf1", None, fhirServer=fhir, fhirAuthorization=AUTHORIZATION)
            assert _topics(ehr.call(PATIENT_VIEW, body)) == ["anemia"]
        assert [r.method for r in fhir_server.received].count("POST") == 2
