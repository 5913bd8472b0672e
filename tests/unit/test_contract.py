"""D2: the data contract, in memory and as searches, says the same thing on every path."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from rls_screen.assessment import assess
from rls_screen.contract import CONTRACT_TYPES
from rls_screen.knowledge import Knowledge, load_knowledge
from rls_screen.patient_data import group_resources

AS_OF = date(2026, 12, 1)
LOINC = "http://loinc.org"


@pytest.fixture(scope="module")
def knowledge() -> Knowledge:
    return load_knowledge()


def _panel_with_potassium(value: float) -> dict[str, Any]:
    """A comprehensive metabolic panel (24323-8) carrying its potassium as a component (D5)."""
    return {
        "resourceType": "Observation",
        "id": "cmp1",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "24323-8"}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2026-11-20",
        "component": [
            {
                "code": {"coding": [{"system": LOINC, "code": "2823-3"}]},
                "valueQuantity": {
                    "value": value,
                    "unit": "mmol/L",
                    "system": "http://unitsofmeasure.org",
                    "code": "mmol/L",
                },
            }
        ],
    }


def test_a_panel_whose_component_is_an_analyte_is_inside_the_contract(knowledge: Knowledge) -> None:
    panel = _panel_with_potassium(7.2)
    assert knowledge.contract.wanted(panel, AS_OF)
    data = group_resources({"resourceType": "Patient", "id": "p1"}, [panel])
    assessment = assess(data, knowledge=knowledge, as_of=AS_OF)
    (finding,) = [f for f in assessment.findings if f.code == "hyperkalemia"]
    assert finding.severity == "grade-4"


def test_the_observation_search_matches_component_codes_and_carries_no_date(knowledge: Knowledge) -> None:
    contract = knowledge.contract
    (observations,) = [s for s in contract.searches if s.resource_type == "Observation"]
    params = contract.rest_params(observations, "p1", AS_OF)
    assert "combo-code" in params
    assert "code" not in params
    assert "date" not in params  # a server's date search misses results dated only by issued
    assert all("date=" not in f for f in contract.bulk_type_filters(AS_OF))
    assert "combo-code=" in knowledge.contract.prefetch_templates("100")["observations"]


@pytest.mark.parametrize(
    ("dates", "inside"),
    [
        ({"issued": "2026-11-21T08:00:00Z"}, True),  # dated only by issued (D4): inside, on every path
        ({"issued": "2025-11-30T08:00:00Z"}, False),  # day 366
        ({"issued": "2025-12-01T08:00:00Z"}, True),  # day 365, inclusive (D28)
        ({"effectiveDateTime": "2025-11-30", "issued": "2026-11-21T08:00:00Z"}, False),  # effective decides
        ({}, True),  # no date at all: kept, so the engine says why it is not used
    ],
)
def test_the_window_is_one_rule_in_memory(knowledge: Knowledge, dates: dict[str, str], inside: bool) -> None:
    ferritin = {
        "resourceType": "Observation",
        "id": "f1",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "2276-4"}]},
        "subject": {"reference": "Patient/p1"},
        **dates,
        "valueQuantity": {"value": 9, "unit": "ug/L", "system": "http://unitsofmeasure.org", "code": "ug/L"},
    }
    assert knowledge.contract.wanted(ferritin, AS_OF) is inside


def test_every_contract_type_has_a_search_except_the_patient(knowledge: Knowledge) -> None:
    searched = sorted(s.resource_type for s in knowledge.contract.searches)
    assert searched == sorted(t for t in CONTRACT_TYPES if t != "Patient")
