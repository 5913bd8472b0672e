"""D1 on the CDS paths: only what is provably this patient's is used, in the prefetch and in the fallback reads."""

from __future__ import annotations

from typing import Any

import pytest
from tests.api.helpers import (
    NORMAL,
    ORDER_SIGN,
    PATIENT_VIEW,
    ServerFactory,
    full_prefetch,
    labs,
    medication_request,
    order_request,
    patient,
    patient_view_request,
    rls_condition,
    searchset,
)
from tests.support.scripted_server import Received, Reply, base_url, scripted_server

pytestmark = pytest.mark.net
AUTHORIZATION = {
    "access_token": "t0k3n",
    "token_type": "Bearer",
    "expires_in": 300,
    "scope": "patient/*.read",
    "subject": "rls-screen",
}


def _topics(response: Any) -> list[str]:
    return [card["source"]["topic"]["code"] for card in response.json()["cards"]]


def _of(resource: dict[str, Any], reference: str) -> dict[str, Any]:
    return {**resource, "subject": {"reference": reference}}


def test_another_patients_rls_condition_does_not_open_the_gate(cds_server: ServerFactory) -> None:
    _, ehr = cds_server()
    prefetch = full_prefetch("pi1", labs("pi1", **{**NORMAL, "ferritin": 8.0, "hb": 95.0}))
    prefetch["conditions"] = searchset([_of(rls_condition("pi1"), "Patient/OTHER")])
    response = ehr.call(PATIENT_VIEW, patient_view_request("pi1", prefetch))
    assert response.status_code == 200, response.text
    assert response.json() == {"cards": []}


@pytest.mark.parametrize(
    "reference",
    [
        "https://other-hospital.example/fhir/Patient/pi2",
        "Patient/OTHER/Patient/pi2",
        "urn:uuid:7d1f0c4e-0000-4000-8000-000000000000",
    ],
)
def test_loose_subject_references_are_not_the_patient(cds_server: ServerFactory, reference: str) -> None:
    _, ehr = cds_server()
    observations = [_of(o, reference) for o in labs("pi2", **{**NORMAL, "ferritin": 8.0})]
    response = ehr.call(PATIENT_VIEW, patient_view_request("pi2", full_prefetch("pi2", observations)))
    assert response.status_code == 200, response.text
    # none of the iron-deficient labs is used: iron studies are missing, not low
    assert "iron-deficiency" not in _topics(response)
    assert "missing-iron-studies" in _topics(response)


def test_an_absolute_reference_on_the_calls_own_fhir_server_is_the_patient(cds_server: ServerFactory) -> None:
    with scripted_server(lambda received: Reply(404, {"resourceType": "OperationOutcome", "issue": []})) as server:
        fhir = base_url(server)
        _, ehr = cds_server(fhir_base_url=fhir)
        observations = [_of(o, f"{fhir}/Patient/pi3") for o in labs("pi3", **{**NORMAL, "ferritin": 8.0})]
        body = patient_view_request(
            "pi3", full_prefetch("pi3", observations), fhirServer=fhir, fhirAuthorization=AUTHORIZATION
        )
        response = ehr.call(PATIENT_VIEW, body)
        assert "iron-deficiency" in _topics(response)
        assert server.received == []


def test_a_draft_order_for_another_patient_gives_no_card(cds_server: ServerFactory) -> None:
    _, ehr = cds_server()
    order = _of(medication_request("pi4", 1, code="72302", display="ropinirole"), "Patient/OTHER")
    prefetch = full_prefetch("pi4", labs("pi4", **{**NORMAL, "ferritin": 10.0}))
    response = ehr.call(ORDER_SIGN, order_request("order-sign", "pi4", [order], prefetch))
    assert response.status_code == 200, response.text
    assert response.json() == {"cards": []}
    own = medication_request("pi4", 2, code="72302", display="ropinirole")
    assert _topics(ehr.call(ORDER_SIGN, order_request("order-sign", "pi4", [own], prefetch))) == ["iron-deficiency"]


@pytest.mark.parametrize("batched", [True, False])
def test_a_fallback_read_answered_with_another_patient_is_never_used(cds_server: ServerFactory, batched: bool) -> None:
    """GET Patient/<id> answered with another Patient: the call's data is unavailable (412), nothing guessed."""

    def script(received: Received) -> Reply:
        if received.path.startswith("/fhir/Condition"):
            return Reply(200, searchset([rls_condition("pi5")]))
        if received.method == "POST":
            if not batched:
                return Reply(405, {"resourceType": "OperationOutcome", "issue": []})
            ok = {"status": "200 OK"}
            entries = [{"resource": patient("someone-else"), "response": ok}] + [
                {"resource": searchset([]), "response": ok} for _ in range(3)
            ]
            return Reply(200, {"resourceType": "Bundle", "type": "batch-response", "entry": entries})
        if received.path.startswith("/fhir/Patient/"):
            return Reply(200, patient("someone-else"))
        return Reply(200, searchset([]))

    with scripted_server(script) as server:
        fhir = base_url(server)
        _, ehr = cds_server(fhir_base_url=fhir)
        body = patient_view_request("pi5", None, fhirServer=fhir, fhirAuthorization=AUTHORIZATION)
        response = ehr.call(PATIENT_VIEW, body)
        assert response.status_code == 412, response.text
        assert "different Patient" in response.text
        assert "someone-else" not in response.text
