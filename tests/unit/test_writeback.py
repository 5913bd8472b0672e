"""Write-back planning is pure: deterministic bytes, nothing sent when nothing changed."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle

from rls_screen.engine import evaluate
from rls_screen.knowledge import Knowledge, load_knowledge
from rls_screen.model import Assessment, PatientFacts
from rls_screen.writeback import (
    FLAG_ID_SYSTEM,
    ExistingState,
    flag_text,
    plan_writeback,
    risk_assessment_identifier,
)

AS_OF = date(2026, 11, 25)
RECORDED = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
NOTHING = ExistingState(flags={}, service_request=None, risk_assessment_exists=False)


@pytest.fixture(scope="module")
def knowledge() -> Knowledge:
    return load_knowledge()


def lab(n: int, loinc: str, value: float, unit: str, day: str = "2026-10-01", version: str = "1") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": f"o{n}",
        "meta": {"versionId": version},
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": loinc}]},
        "effectiveDateTime": day,
        "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit},
    }


def assess(knowledge: Knowledge, observations: list[dict[str, Any]]) -> Assessment:
    return evaluate(
        PatientFacts("Patient/p1", "female", date(1970, 1, 1)), observations, as_of=AS_OF, knowledge=knowledge
    )


def plan(knowledge: Knowledge, assessment: Assessment, existing: ExistingState = NOTHING) -> Any:
    return plan_writeback(
        assessment,
        existing,
        terminology=knowledge.terminology,
        rules=knowledge.ruleset,
        recorded=RECORDED,
        device_ref="Device/d1",
    )


LOW_IRON = [lab(1, "2276-4", 9, "ug/L"), lab(2, "2823-3", 3.2, "mmol/L")]


def test_the_same_inputs_give_the_same_bytes(knowledge: Knowledge) -> None:
    first = plan(knowledge, assess(knowledge, LOW_IRON)).bundle
    second = plan(knowledge, assess(knowledge, list(reversed(LOW_IRON)))).bundle
    assert json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)


def test_the_bundle_is_a_valid_r4_transaction_with_device_first_and_provenance_last(knowledge: Knowledge) -> None:
    bundle = plan(knowledge, assess(knowledge, LOW_IRON)).bundle
    Bundle.model_validate(bundle)
    types = [e["resource"]["resourceType"] for e in bundle["entry"]]
    assert "Device" not in types  # created once per server by ensure_device, not per patient
    assert types[-1] == "Provenance"
    provenance = bundle["entry"][-1]["resource"]
    assert provenance["agent"][0]["who"]["reference"] == "Device/d1"
    assert types.count("RiskAssessment") == 1
    assert types.count("Flag") == 3  # iron-deficiency, missing-iron-studies, hypokalemia
    assert types.count("ServiceRequest") == 1
    ra = next(e for e in bundle["entry"] if e["resource"]["resourceType"] == "RiskAssessment")
    assert ra["request"]["ifNoneExist"].startswith("identifier=")
    assert sorted(b["reference"] for b in ra["resource"]["basis"]) == ["Observation/o1", "Observation/o2"]
    assert "null" not in json.dumps(bundle)


def test_risk_assessment_identifier_changes_with_basis_version_only(knowledge: Knowledge) -> None:
    base = risk_assessment_identifier(assess(knowledge, LOW_IRON))
    assert base == risk_assessment_identifier(assess(knowledge, LOW_IRON))
    amended = [lab(1, "2276-4", 9, "ug/L", version="2"), LOW_IRON[1]]
    assert risk_assessment_identifier(assess(knowledge, amended)) != base


def test_nothing_is_written_when_the_server_already_holds_this_result(knowledge: Knowledge) -> None:
    assessment = assess(knowledge, LOW_IRON)
    first = plan(knowledge, assessment).bundle
    flags = {
        e["resource"]["identifier"][0]["value"].rsplit(".", 1)[-1]: e["resource"]
        for e in first["entry"]
        if e["resource"]["resourceType"] == "Flag"
    }
    request = next(e["resource"] for e in first["entry"] if e["resource"]["resourceType"] == "ServiceRequest")
    existing = ExistingState(flags=flags, service_request=request, risk_assessment_exists=True)
    assert plan(knowledge, assessment, existing).bundle is None


def test_a_finding_that_is_gone_makes_its_flag_inactive_and_keeps_its_start(knowledge: Knowledge) -> None:
    old_flag = {
        "resourceType": "Flag",
        "id": "f9",
        "identifier": [{"system": FLAG_ID_SYSTEM, "value": "p1.hyperkalemia"}],
        "status": "active",
        "code": {"text": "old"},
        "subject": {"reference": "Patient/p1"},
        "period": {"start": "2026-01-05"},
    }
    result = plan(knowledge, assess(knowledge, LOW_IRON), ExistingState({"hyperkalemia": old_flag}, None, False))
    changed = next(
        e for e in result.bundle["entry"] if e["resource"].get("identifier", [{}])[0].get("value") == "p1.hyperkalemia"
    )
    assert changed["resource"]["status"] == "inactive"
    assert changed["resource"]["period"] == {"start": "2026-01-05", "end": "2026-11-25"}
    assert changed["request"]["method"] == "PUT"
    assert changed["request"]["url"].startswith("Flag?identifier=")


def test_an_active_flag_keeps_its_original_start_date(knowledge: Knowledge) -> None:
    assessment = assess(knowledge, LOW_IRON)
    existing_flag = {
        "resourceType": "Flag",
        "identifier": [{"system": FLAG_ID_SYSTEM, "value": "p1.hypokalemia"}],
        "status": "active",
        "code": {"text": "older wording"},
        "subject": {"reference": "Patient/p1"},
        "period": {"start": "2026-06-01"},
    }
    result = plan(knowledge, assessment, ExistingState({"hypokalemia": existing_flag}, None, False))
    flag = next(
        e["resource"]
        for e in result.bundle["entry"]
        if e["resource"].get("identifier", [{}])[0].get("value") == "p1.hypokalemia"
    )
    assert flag["period"]["start"] == "2026-06-01"
    assert flag["status"] == "active"


def test_the_iron_studies_proposal_is_revoked_once_studies_exist(knowledge: Knowledge) -> None:
    complete = [lab(1, "2276-4", 120, "ug/L"), lab(3, "2502-3", 30, "%")]
    active_request = {
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "proposal",
        "subject": {"reference": "Patient/p1"},
    }
    result = plan(knowledge, assess(knowledge, complete), ExistingState({}, active_request, True))
    request = next(e["resource"] for e in result.bundle["entry"] if e["resource"]["resourceType"] == "ServiceRequest")
    assert request["status"] == "revoked"
    assert request["intent"] == "proposal"


def test_flag_text_is_short_and_sourced(knowledge: Knowledge) -> None:
    finding = assess(knowledge, LOW_IRON).finding("iron-deficiency")
    assert finding is not None
    text = flag_text(finding, knowledge.ruleset)
    assert (
        text == "RLS screen: Iron deficiency: ferritin 9 µg/L on 2026-10-01 (threshold < 15 µg/L; WHO 2020; AASM 2024)"
    )
    assert len(text) < 140
