"""The local HAPI FHIR server does what the module relies on: transactions, sorted search,
conditional create, $validate."""

from __future__ import annotations

from datetime import date

import requests
from tests.support.fhir_data import count, observation, patient, put_all

from rls_screen.fhir_client import Allowlist, FhirClient, validation_errors
from rls_screen.synth import chunked_transaction_bundles, generate_panel

FHIR_JSON = {"Content-Type": "application/fhir+json", "Cache-Control": "no-cache"}


def test_the_synthetic_panel_loads_as_transaction_bundles(fhir_base_url: str, unique_prefix: str) -> None:
    panel = generate_panel(10, seed=4, as_of=date(2026, 11, 25), id_prefix=unique_prefix)
    client = FhirClient(fhir_base_url, allowlist=Allowlist((fhir_base_url,)))
    for bundle in chunked_transaction_bundles(panel, patients_per_bundle=4):
        response = client.transaction(bundle)
        assert all(e["response"]["status"][:3] in ("200", "201") for e in response["entry"])
    group = client.read("Group", f"{unique_prefix}-panel")
    assert len(group["member"]) == 10
    first = panel.patients[0]
    expected = sum(1 for r in first.resources if r["resourceType"] == "Observation")
    assert count(fhir_base_url, "Observation", subject=f"Patient/{first.patient['id']}") == expected


def test_ferritin_search_sorted_by_date_returns_the_newest_first(fhir_base_url: str, unique_prefix: str) -> None:
    put_all(
        fhir_base_url,
        [
            patient(unique_prefix),
            observation(unique_prefix, 1, "2276-4", 20, "ug/L", "2025-03-01"),
            observation(unique_prefix, 2, "2276-4", 30, "ug/L", "2026-09-01"),
            observation(unique_prefix, 3, "2276-4", 10, "ug/L", "2026-01-15"),
            observation(unique_prefix, 4, "718-7", 12, "g/dL", "2026-10-01"),
        ],
    )
    response = requests.get(
        f"{fhir_base_url}/Observation?subject=Patient/{unique_prefix}&code=http://loinc.org%7C2276-4&_sort=-date",
        headers=FHIR_JSON,
        timeout=30,
    )
    response.raise_for_status()
    ids = [e["resource"]["id"] for e in response.json()["entry"]]
    assert ids == [f"{unique_prefix}-o2", f"{unique_prefix}-o3", f"{unique_prefix}-o1"]


def test_conditional_create_with_if_none_exist_does_not_duplicate(fhir_base_url: str, unique_prefix: str) -> None:
    device = {
        "resourceType": "Device",
        "identifier": [{"system": "https://rls-screen.org/fhir/identifier/test", "value": unique_prefix}],
    }
    headers = {**FHIR_JSON, "If-None-Exist": f"identifier=https://rls-screen.org/fhir/identifier/test|{unique_prefix}"}
    first = requests.post(f"{fhir_base_url}/Device", json=device, headers=headers, timeout=30)
    second = requests.post(f"{fhir_base_url}/Device", json=device, headers=headers, timeout=30)
    assert first.status_code == 201
    assert second.status_code == 200
    assert (
        count(fhir_base_url, "Device", identifier=f"https://rls-screen.org/fhir/identifier/test|{unique_prefix}") == 1
    )


def test_validate_rejects_an_invalid_observation_with_an_operation_outcome(fhir_base_url: str) -> None:
    client = FhirClient(fhir_base_url, allowlist=Allowlist((fhir_base_url,)))
    invalid = {"resourceType": "Observation", "status": "bogus", "valueQuantity": {"value": "abc"}}
    outcome = client.validate(invalid)
    assert outcome["resourceType"] == "OperationOutcome"
    assert validation_errors(outcome)
    valid = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "2276-4"}]},
        "valueQuantity": {"value": 12, "unit": "ug/L", "system": "http://unitsofmeasure.org", "code": "ug/L"},
    }
    assert validation_errors(client.validate(valid)) == []
