"""Rule set 2026.3 against the real HAPI server: the section-11 findings (docs/rules.md section 11) are read
from the server (AUDIT-C as a survey Observation), written back as Flags and RiskAssessment predictions,
and every written resource passes the server's $validate."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest
from tests.support.fhir_data import observation, patient, put_all

from rls_screen.fhir_client import Allowlist, FhirClient, validation_errors
from rls_screen.knowledge import Knowledge, load_knowledge
from rls_screen.screening import screen_patient

AS_OF = date(2026, 11, 25)
RECORDED = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)
SECTION_11 = {
    "b12-deficiency",
    "folate-deficiency",
    "hba1c-diabetes-range",
    "possible-dehydration",
    "hypernatremia",
    "alcohol-use-positive",
}


@pytest.fixture(scope="module")
def knowledge() -> Knowledge:
    return load_knowledge()


def audit_c(prefix: str, score: int) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": f"{prefix}-auditc",
        "status": "final",
        "category": [
            {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "survey"}]}
        ],
        "code": {"coding": [{"system": "http://loinc.org", "code": "75626-2", "display": "Total score [AUDIT-C]"}]},
        "subject": {"reference": f"Patient/{prefix}"},
        "effectiveDateTime": "2026-10-02",
        "valueInteger": score,
    }


def test_section_11_findings_are_written_and_pass_validate(
    fhir_base_url: str, knowledge: Knowledge, unique_prefix: str
) -> None:
    client = FhirClient(fhir_base_url, allowlist=Allowlist((fhir_base_url,)))
    put_all(
        fhir_base_url,
        [
            patient(unique_prefix, gender="male"),
            observation(unique_prefix, 1, "2132-9", 120, "pmol/L", "2026-10-01"),
            observation(unique_prefix, 2, "2284-8", 2.5, "ng/mL", "2026-10-01"),
            observation(unique_prefix, 3, "4548-4", 50, "mmol/mol", "2026-10-01"),  # W8: the unit decides
            observation(unique_prefix, 4, "2692-2", 318, "mosm/kg", "2026-10-01"),
            observation(unique_prefix, 5, "2951-2", 157, "mmol/L", "2026-10-01"),
            audit_c(unique_prefix, 5),
        ],
    )
    result = screen_patient(client, unique_prefix, knowledge=knowledge, as_of=AS_OF, recorded=RECORDED)
    assert result.written
    codes = {f.code for f in result.assessment.findings}
    assert codes >= SECTION_11
    hypernatremia = result.assessment.finding("hypernatremia")
    assert hypernatremia is not None
    assert hypernatremia.severity == "grade-3"
    written = []
    for entry in result.response["entry"]:  # type: ignore[index]
        location = entry["response"]["location"].split("/_history")[0]
        resource_type, resource_id = location.split("/")[-2:]
        written.append(client.read(resource_type, resource_id))
    flags = [r for r in written if r["resourceType"] == "Flag"]
    flagged = {c["code"] for flag in flags for c in flag["code"]["coding"]}
    assert flagged >= SECTION_11
    [risk] = [r for r in written if r["resourceType"] == "RiskAssessment"]
    outcomes = {c["code"] for p in risk["prediction"] for c in p["outcome"]["coding"]}
    assert outcomes >= SECTION_11 | {"39355002", "190634004", "34095006"}
    for resource in written:
        assert validation_errors(client.validate(resource)) == [], resource["resourceType"]
