"""W13 and D2: the results of rule set 2026.3 (docs/rules.md section 11) are read on every path.

AUDIT-C is a survey Observation (category survey or social-history), not a laboratory result; the
contract matches Observations on code, so it is read exactly as the labs are, while other survey
Observations (a PHQ-9, say) stay outside: the survey category lets nothing in by itself.
"""

from __future__ import annotations

from datetime import date
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from rls_screen.assessment import assess
from rls_screen.knowledge import Knowledge, load_knowledge
from rls_screen.patient_data import group_resources

pytestmark = pytest.mark.unit
AS_OF = date(2026, 12, 1)
LOINC = "http://loinc.org"
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
SECTION_11_CODES = ("2132-9", "2284-8", "4548-4", "17856-6", "59261-8", "2692-2", "2951-2", "2947-0", "2345-7")
SECTION_11_CODES += ("3094-0", "75626-2")


@pytest.fixture(scope="module")
def knowledge() -> Knowledge:
    return load_knowledge()


def _survey(code: str, category: str = "survey", **value: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": f"s-{code}-{category}",
        "status": "final",
        "category": [{"coding": [{"system": CATEGORY, "code": category}]}],
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2026-11-20",
        **(value or {"valueInteger": 5}),
    }


def _codes(query: str) -> set[str]:
    values = parse_qs(urlsplit(query).query)["combo-code"][0]
    return {token.split("|", 1)[1] for token in values.split(",")}


def test_every_search_of_the_contract_asks_for_the_section_11_codes(knowledge: Knowledge) -> None:
    contract = knowledge.contract
    search = contract.search_by_key["observations"]
    rest = _codes(contract.rest_query(search, "p1", AS_OF))
    prefetch = _codes(contract.prefetch_templates("200")["observations"].replace("{{context.patientId}}", "p1"))
    bulk = _codes(next(f for f in contract.bulk_type_filters(AS_OF) if f.startswith("Observation?")))
    assert set(SECTION_11_CODES) <= rest
    assert set(SECTION_11_CODES) <= prefetch
    assert set(SECTION_11_CODES) <= bulk


@pytest.mark.parametrize("category", ["survey", "social-history"])
def test_an_audit_c_survey_is_inside_the_contract_and_used(knowledge: Knowledge, category: str) -> None:
    audit_c = _survey("75626-2", category)
    assert knowledge.contract.wanted(audit_c, AS_OF)
    data = group_resources({"resourceType": "Patient", "id": "p1", "gender": "male"}, [audit_c])
    assessment = assess(data, knowledge=knowledge, as_of=AS_OF)
    assert assessment.finding("alcohol-use-positive") is not None


def test_other_survey_observations_stay_outside(knowledge: Knowledge) -> None:
    phq9 = _survey("44261-6")  # PHQ-9 total score: a survey, not one of our codes
    assert not knowledge.contract.wanted(phq9, AS_OF)
    social = _survey("72166-2", "social-history", valueCodeableConcept={"text": "Never smoker"})  # tobacco
    assert not knowledge.contract.wanted(social, AS_OF)
