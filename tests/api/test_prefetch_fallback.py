"""Prefetch semantics against the local HAPI FHIR server: missing keys, failed and paginated prefetch, 412."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from tests.api.helpers import (
    NORMAL,
    PATIENT_VIEW,
    ServerFactory,
    labs,
    patient_view_request,
    rls_condition,
    searchset,
)
from tests.support.fault_proxy import Fault, FaultProxy, fault_proxy
from tests.support.fhir_data import patient, put_all

pytestmark = pytest.mark.fhir


def _load(fhir_base_url: str, prefix: str, **values: float) -> list[dict[str, Any]]:
    observations = labs(prefix, **values)
    put_all(fhir_base_url, [patient(prefix), rls_condition(prefix), *observations])
    return observations


def _fhir(fhir_base_url: str) -> dict[str, Any]:
    return {
        "fhirServer": fhir_base_url,
        "fhirAuthorization": {
            "access_token": "opaque-test-token",
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "patient/*.read",
            "subject": "rls-screen",
        },
    }


def test_missing_keys_are_read_from_the_fhir_server(
    cds_server: ServerFactory, fhir_base_url: str, unique_prefix: str
) -> None:
    _load(fhir_base_url, unique_prefix, **{**NORMAL, "ferritin": 11.0})
    _, ehr = cds_server(fhir_base_url=fhir_base_url)
    body = patient_view_request(unique_prefix, {"patient": patient(unique_prefix)}, **_fhir(fhir_base_url))
    response = ehr.call(PATIENT_VIEW, body)
    assert response.status_code == 200, response.text
    (card,) = response.json()["cards"]
    assert card["source"]["topic"]["code"] == "iron-deficiency"
    assert "ferritin 11 µg/L" in card["summary"]


def test_no_prefetch_at_all_reads_everything(cds_server: ServerFactory, fhir_base_url: str, unique_prefix: str) -> None:
    _load(fhir_base_url, unique_prefix, **{**NORMAL, "hb": 95.0})
    _, ehr = cds_server(fhir_base_url=fhir_base_url)
    response = ehr.call(PATIENT_VIEW, patient_view_request(unique_prefix, None, **_fhir(fhir_base_url)))
    assert [c["source"]["topic"]["code"] for c in response.json()["cards"]] == ["anemia"]


def test_operation_outcome_prefetch_means_read_it(
    cds_server: ServerFactory, fhir_base_url: str, unique_prefix: str
) -> None:
    _load(fhir_base_url, unique_prefix, **{**NORMAL, "tsat": 12.0})
    _, ehr = cds_server(fhir_base_url=fhir_base_url)
    failed = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "timeout", "diagnostics": "prefetch timed out"}],
    }
    prefetch = {
        "patient": patient(unique_prefix),
        "conditions": searchset([rls_condition(unique_prefix)]),
        "observations": failed,
        "medications": searchset([]),
    }
    response = ehr.call(PATIENT_VIEW, patient_view_request(unique_prefix, prefetch, **_fhir(fhir_base_url)))
    assert [c["source"]["topic"]["code"] for c in response.json()["cards"]] == ["iron-insufficient-for-rls"]


def test_paginated_prefetch_bundle_is_followed(
    cds_server: ServerFactory, fhir_base_url: str, unique_prefix: str
) -> None:
    _load(fhir_base_url, unique_prefix, **{**NORMAL, "ferritin": 8.0})
    first_page = requests.get(
        f"{fhir_base_url}/Observation",
        params={"subject": f"Patient/{unique_prefix}", "_count": "2", "_sort": "-date"},
        headers={"Cache-Control": "no-cache"},
        timeout=30,
    ).json()
    assert any(link["relation"] == "next" for link in first_page["link"])
    _, ehr = cds_server(fhir_base_url=fhir_base_url)
    prefetch = {
        "patient": patient(unique_prefix),
        "conditions": searchset([rls_condition(unique_prefix)]),
        "observations": first_page,
        "medications": searchset([]),
    }
    response = ehr.call(PATIENT_VIEW, patient_view_request(unique_prefix, prefetch, **_fhir(fhir_base_url)))
    # Ferritin is the first lab, TSAT the second: both pages' results were used, nothing is missing.
    assert [c["source"]["topic"]["code"] for c in response.json()["cards"]] == ["iron-deficiency"]


def test_no_data_and_no_fhir_server_is_412(cds_server: ServerFactory, unique_prefix: str) -> None:
    _, ehr = cds_server()
    prefetch = {"patient": patient(unique_prefix), "conditions": searchset([rls_condition(unique_prefix)])}
    response = ehr.call(PATIENT_VIEW, patient_view_request(unique_prefix, prefetch))
    assert response.status_code == 412
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert "lab Observations" in outcome["issue"][0]["diagnostics"]
    assert "no fhirServer" in outcome["issue"][0]["diagnostics"]


def test_unlisted_fhir_server_is_never_called_and_gives_412(
    cds_server: ServerFactory, fhir_base_url: str, unique_prefix: str
) -> None:
    _, ehr = cds_server(fhir_base_url="https://only-this.example.org/fhir")
    response = ehr.call(PATIENT_VIEW, patient_view_request(unique_prefix, None, **_fhir(fhir_base_url)))
    assert response.status_code == 412
    assert "allowlist" in response.json()["issue"][0]["diagnostics"]


def test_patient_unknown_to_the_server_is_412(
    cds_server: ServerFactory, fhir_base_url: str, unique_prefix: str
) -> None:
    _, ehr = cds_server(fhir_base_url=fhir_base_url)
    prefetch = {"conditions": searchset([rls_condition(unique_prefix)])}
    response = ehr.call(PATIENT_VIEW, patient_view_request(unique_prefix, prefetch, **_fhir(fhir_base_url)))
    assert response.status_code == 412
    assert response.json()["issue"][0]["diagnostics"].startswith("the Patient")
    assert unique_prefix not in response.text  # no patient data in the error


# --- request budget without prefetch: the Conditions first, then one batch for the rest -------------------


def _targets(proxy: FaultProxy) -> list[tuple[str, str]]:
    """(method, path without query or base) of every request that reached the server."""
    return [(e.method, e.target.split("?")[0].removeprefix("/fhir")) for e in proxy.forwarded()]


def test_no_prefetch_costs_two_requests_the_conditions_then_one_batch(
    cds_server: ServerFactory, fhir_base_url: str, unique_prefix: str
) -> None:
    _load(fhir_base_url, unique_prefix, **{**NORMAL, "ferritin": 11.0})
    with fault_proxy(fhir_base_url) as proxy:
        _, ehr = cds_server(fhir_base_url=proxy.base_url)
        response = ehr.call(PATIENT_VIEW, patient_view_request(unique_prefix, None, **_fhir(proxy.base_url)))
        assert response.status_code == 200, response.text
        assert [c["source"]["topic"]["code"] for c in response.json()["cards"]] == ["iron-deficiency"]
        assert _targets(proxy) == [("GET", "/Condition"), ("POST", "/")]
        (batch,) = [e for e in proxy.forwarded() if e.method == "POST"]
        assert batch.upstream_status == 200


def test_a_patient_without_rls_costs_one_request(
    cds_server: ServerFactory, fhir_base_url: str, unique_prefix: str
) -> None:
    put_all(fhir_base_url, [patient(unique_prefix), *labs(unique_prefix, **{**NORMAL, "ferritin": 11.0})])
    with fault_proxy(fhir_base_url) as proxy:
        _, ehr = cds_server(fhir_base_url=proxy.base_url)
        response = ehr.call(PATIENT_VIEW, patient_view_request(unique_prefix, None, **_fhir(proxy.base_url)))
        assert (response.status_code, response.json()) == (200, {"cards": []})
        assert _targets(proxy) == [("GET", "/Condition")]


def test_a_server_refusing_batch_is_read_key_by_key_and_not_asked_again(
    cds_server: ServerFactory, fhir_base_url: str, unique_prefix: str
) -> None:
    _load(fhir_base_url, unique_prefix, **{**NORMAL, "hb": 95.0})
    refuse = Fault("respond", method="POST", bundle_type="batch", status=405)
    with fault_proxy(fhir_base_url, refuse) as proxy:
        _, ehr = cds_server(fhir_base_url=proxy.base_url)
        for _ in range(2):
            response = ehr.call(PATIENT_VIEW, patient_view_request(unique_prefix, None, **_fhir(proxy.base_url)))
            assert [c["source"]["topic"]["code"] for c in response.json()["cards"]] == ["anemia"]
        assert refuse.fired == 1
        reads = [("GET", "/Condition"), ("GET", f"/Patient/{unique_prefix}"), ("GET", "/Observation")]
        rest = [("GET", "/Procedure"), ("GET", "/MedicationRequest")]
        assert _targets(proxy) == [*reads, *rest, *reads, *rest]
