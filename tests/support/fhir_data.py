"""Builders for small FHIR test data sets, each under a caller-chosen id prefix (tests share a server)."""

from __future__ import annotations

from typing import Any

import requests

UCUM = "http://unitsofmeasure.org"
LOINC = "http://loinc.org"


def observation(
    prefix: str, n: int, loinc: str, value: float, unit: str, day: str, *, status: str = "final"
) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": f"{prefix}-o{n}",
        "status": status,
        "category": [
            {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}
        ],
        "code": {"coding": [{"system": LOINC, "code": loinc}]},
        "subject": {"reference": f"Patient/{prefix}"},
        "effectiveDateTime": day,
        "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
    }


def patient(prefix: str, gender: str = "female", birth: str = "1970-03-02") -> dict[str, Any]:
    return {"resourceType": "Patient", "id": prefix, "gender": gender, "birthDate": birth}


def put_all(base_url: str, resources: list[dict[str, Any]]) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in resources
        ],
    }
    response = requests.post(base_url, json=bundle, headers={"Content-Type": "application/fhir+json"}, timeout=60)
    response.raise_for_status()


def count(base_url: str, resource_type: str, **params: str) -> int:
    response = requests.get(
        f"{base_url}/{resource_type}",
        params={**params, "_summary": "count"},
        headers={"Cache-Control": "no-cache"},
        timeout=30,
    )
    response.raise_for_status()
    return int(response.json()["total"])


def search(base_url: str, resource_type: str, **params: str) -> list[dict[str, Any]]:
    response = requests.get(
        f"{base_url}/{resource_type}",
        params={**params, "_count": "200"},
        headers={"Cache-Control": "no-cache"},
        timeout=30,
    )
    response.raise_for_status()
    return [e["resource"] for e in response.json().get("entry", [])]
