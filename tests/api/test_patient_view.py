"""patient-view over HTTP with everything prefetched: cards only when actionable, spec-shaped, sourced."""

from __future__ import annotations

import re
import uuid

import pytest
from fhir.resources.R4B.flag import Flag
from fhir.resources.R4B.riskassessment import RiskAssessment
from fhir.resources.R4B.servicerequest import ServiceRequest
from tests.api.helpers import (
    NORMAL,
    PATIENT_VIEW,
    ServerFactory,
    days_ago,
    full_prefetch,
    labs,
    patient_view_request,
    rls_condition,
    searchset,
    summaries,
)
from tests.support.fhir_data import observation, patient

from rls_screen.writeback import DEVICE_IDENTIFIER

OVERRIDE_REASONS = [  # terminology/CodeSystem-cds-override-reason.json
    ("already-addressed", "Already addressed or being managed"),
    ("not-relevant", "Not relevant for this patient"),
    ("result-not-reliable", "Result not reliable or outdated"),
    ("patient-declined", "Patient declined"),
]

pytestmark = pytest.mark.net


def _assert_spec_shaped(card: dict[str, object]) -> None:
    assert len(str(card["summary"])) < 140
    assert card["indicator"] in ("info", "warning", "critical")
    assert uuid.UUID(str(card["uuid"]))
    source = card["source"]
    assert isinstance(source, dict)
    assert source["label"].startswith("rls-screen")
    assert source["url"].startswith("http://127.0.0.1:")  # this service's own rule pages (its public URL)
    assert source["topic"]["system"] == "https://rls-screen.org/fhir/CodeSystem/rls-finding"
    assert [(r["code"], r["display"]) for r in card["overrideReasons"]] == list(OVERRIDE_REASONS)  # type: ignore[attr-defined]
    for link in card["links"]:  # type: ignore[attr-defined]
        assert link["type"] == "absolute"
        assert "appContext" not in link
        assert "rls-screen.org" not in link["url"]  # a domain the product does not own: never linked
    assert "**Sources**" in str(card["detail"])
    assert None not in card.values()


def test_full_prefetch_gives_one_sourced_card_for_all_findings(cds_server: ServerFactory) -> None:
    _, ehr = cds_server()
    values = {**NORMAL, "ferritin": 12.0, "tsat": 12.0, "hb": 104.0, "k": 3.1}
    response = ehr.call(PATIENT_VIEW, patient_view_request("pv1", full_prefetch("pv1", labs("pv1", **values))))
    assert response.status_code == 200
    (card,) = response.json()["cards"]
    _assert_spec_shaped(card)
    assert card["source"]["topic"]["code"] == "iron-deficiency"  # an established cause comes first
    assert card["summary"] == "Iron deficiency: ferritin 12 µg/L (< 15 µg/L) + 2 more RLS-relevant findings"
    assert card["indicator"] == "warning"  # the highest of the three (iron deficiency, anaemia: warning)
    detail = card["detail"]
    assert days_ago(30) in detail
    assert "Winkelman JW" in detail  # the full AASM 2024 citation
    assert "(moderate)" in detail
    rows = [line for line in detail.splitlines() if line.startswith("| [")]
    assert [row.split("](")[0] for row in rows] == [
        "| [Iron deficiency",
        "| [Anaemia (moderate)",
        "| [Low potassium (CTCAE grade 1-2)",
    ]
    # docs/rules.md: electrolyte changes are not established causes of RLS; the card must say so.
    assert "mimic or aggravate" in detail


def test_per_finding_mode_gives_one_sourced_card_per_finding(cds_server: ServerFactory) -> None:
    _, ehr = cds_server(cds_card_mode="per-finding")
    values = {**NORMAL, "ferritin": 12.0, "tsat": 12.0, "hb": 104.0, "k": 3.1}
    response = ehr.call(PATIENT_VIEW, patient_view_request("pv1b", full_prefetch("pv1b", labs("pv1b", **values))))
    assert response.status_code == 200
    cards = response.json()["cards"]
    topics = [card["source"]["topic"]["code"] for card in cards]
    assert topics == ["iron-deficiency", "anemia", "hypokalemia"]
    for card in cards:
        _assert_spec_shaped(card)
        assert days_ago(30) in card["summary"] + card["detail"]
    iron, anemia, potassium = cards
    assert iron["indicator"] == "warning"
    assert "ferritin 12 µg/L" in iron["summary"]
    assert "< 15 µg/L" in iron["summary"]
    assert "established" in iron["summary"]
    assert "Winkelman JW" in iron["detail"]  # the full AASM 2024 citation
    assert anemia["indicator"] == "warning"
    assert "(moderate)" in anemia["summary"]
    assert "not an established RLS cause" in potassium["summary"]
    assert "mimic or aggravate" in potassium["detail"]
    assert potassium["indicator"] == "info"


def test_cards_are_deterministic_for_the_same_hook_instance(cds_server: ServerFactory) -> None:
    _, ehr = cds_server(cds_override_suppression_days=0)
    body = patient_view_request("pv2", full_prefetch("pv2", labs("pv2", **{**NORMAL, "ferritin": 40.0})))
    first, second = ehr.call(PATIENT_VIEW, body).json(), ehr.call(PATIENT_VIEW, body).json()
    assert first == second
    other = ehr.call(PATIENT_VIEW, {**body, "hookInstance": str(uuid.uuid4())}).json()
    assert other["cards"][0]["uuid"] != first["cards"][0]["uuid"]
    assert other["cards"][0]["summary"] == first["cards"][0]["summary"]


def test_all_normal_gives_no_cards(cds_server: ServerFactory) -> None:
    _, ehr = cds_server()
    response = ehr.call(PATIENT_VIEW, patient_view_request("pv3", full_prefetch("pv3", labs("pv3", **NORMAL))))
    assert response.status_code == 200
    assert response.json() == {"cards": []}


def test_patient_without_rls_gets_no_cards_even_with_abnormal_labs(cds_server: ServerFactory) -> None:
    _, ehr = cds_server()
    prefetch = full_prefetch("pv4", labs("pv4", ferritin=5.0, hb=80.0, k=2.4), rls=False)
    response = ehr.call(PATIENT_VIEW, patient_view_request("pv4", prefetch))
    assert response.json() == {"cards": []}


def test_resolved_or_refuted_rls_does_not_count(cds_server: ServerFactory) -> None:
    _, ehr = cds_server()
    prefetch = full_prefetch("pv5", labs("pv5", ferritin=5.0))
    prefetch["conditions"] = searchset([rls_condition("pv5", status="resolved")])
    assert ehr.call(PATIENT_VIEW, patient_view_request("pv5", prefetch)).json() == {"cards": []}


def test_icd10_rls_counts(cds_server: ServerFactory) -> None:
    _, ehr = cds_server()
    prefetch = full_prefetch("pv6", labs("pv6", **{**NORMAL, "ferritin": 9.0}))
    prefetch["conditions"] = searchset([rls_condition("pv6", ("http://hl7.org/fhir/sid/icd-10-cm", "G25.81"))])
    assert summaries(ehr.call(PATIENT_VIEW, patient_view_request("pv6", prefetch)))[0].startswith("Iron deficiency")


def test_null_observations_prefetch_means_no_labs_missing_iron_studies(cds_server: ServerFactory) -> None:
    _, ehr = cds_server()
    prefetch = {**full_prefetch("pv7", []), "observations": None, "medications": None}
    response = ehr.call(PATIENT_VIEW, patient_view_request("pv7", prefetch))
    assert response.status_code == 200
    (card,) = response.json()["cards"]
    assert card["source"]["topic"]["code"] == "missing-iron-studies"
    assert "no usable ferritin or TSAT" in card["summary"]
    (suggestion,) = card["suggestions"]
    assert card["selectionBehavior"] == "at-most-one"
    (action,) = suggestion["actions"]
    assert action["type"] == "create"
    assert action["description"]
    resource = action["resource"]
    assert resource["resourceType"] == "ServiceRequest"
    assert resource["intent"] == "proposal"
    assert resource["status"] == "draft"
    assert resource["subject"] == {"reference": "Patient/pv7"}
    assert "requester" not in resource
    assert "supportingInfo" not in resource
    ServiceRequest.model_validate(resource)


def test_null_conditions_prefetch_means_no_rls(cds_server: ServerFactory) -> None:
    _, ehr = cds_server()
    prefetch = {"patient": patient("pv8"), "conditions": None}
    assert ehr.call(PATIENT_VIEW, patient_view_request("pv8", prefetch)).json() == {"cards": []}


def test_indicator_is_the_highest_and_the_summary_names_the_dangerous_finding(cds_server: ServerFactory) -> None:
    _, ehr = cds_server()
    prefetch = full_prefetch("pv9", labs("pv9", **{**NORMAL, "k": 2.3, "egfr": 10.0}))
    (card,) = ehr.call(PATIENT_VIEW, patient_view_request("pv9", prefetch)).json()["cards"]
    assert card["indicator"] == "critical"  # CTCAE grade 4 potassium; kidney failure alone would be warning
    # Kidney failure ranks first, but a critical card's summary must say why it is critical (D20).
    assert card["summary"].startswith("Low potassium (CTCAE grade 4): potassium 2.3 mmol/L")
    assert "act on it now" in card["summary"]
    assert card["summary"].endswith("+ 1 more")
    rows = [line for line in card["detail"].splitlines() if line.startswith("| [")]
    assert [row.split("](")[0] for row in rows] == ["| [Kidney failure", "| [Low potassium (CTCAE grade 4)"]


def test_per_finding_indicator_follows_severity(cds_server: ServerFactory) -> None:
    _, ehr = cds_server(cds_card_mode="per-finding")
    prefetch = full_prefetch("pv9b", labs("pv9b", **{**NORMAL, "k": 2.3, "egfr": 10.0}))
    cards = ehr.call(PATIENT_VIEW, patient_view_request("pv9b", prefetch)).json()["cards"]
    by_topic = {card["source"]["topic"]["code"]: card for card in cards}
    assert by_topic["hypokalemia"]["indicator"] == "critical"  # CTCAE grade 4
    assert by_topic["kidney-failure"]["indicator"] == "warning"
    assert "established secondary cause" in by_topic["kidney-failure"]["summary"]


def test_lab_strings_are_escaped_in_markdown(cds_server: ServerFactory) -> None:
    _, ehr = cds_server()
    ferritin = observation("pv10", 1, "2276-4", 9.0, "ug/L", days_ago(10))
    ferritin["referenceRange"] = [{"text": "[click](https://evil.example) 20-200"}]
    tsat = observation("pv10", 2, "2502-3", 30.0, "%", days_ago(10))
    cards = ehr.call(PATIENT_VIEW, patient_view_request("pv10", full_prefetch("pv10", [ferritin, tsat]))).json()[
        "cards"
    ]
    detail = cards[0]["detail"]
    assert "[click](https" not in detail
    assert re.search(r"\\\[click\\\]\\\(https", detail)


def test_aggravating_medication_in_the_record_gives_an_info_card(cds_server: ServerFactory) -> None:
    _, ehr = cds_server()
    prefetch = full_prefetch("pv11", labs("pv11", **NORMAL))
    prefetch["medications"] = searchset(
        [
            {
                "resourceType": "MedicationRequest",
                "id": "pv11-mr1",
                "status": "active",
                "intent": "order",
                "subject": {"reference": "Patient/pv11"},
                "medicationCodeableConcept": {
                    "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "36437"}],
                    "text": "sertraline 50 mg tablet",
                },
            }
        ]
    )
    (card,) = ehr.call(PATIENT_VIEW, patient_view_request("pv11", prefetch)).json()["cards"]
    assert card["source"]["topic"]["code"] == "aggravating-medication"
    assert card["indicator"] == "info"
    assert "sertraline" in card["summary"]
    assert "may aggravate" in card["summary"]


def test_system_actions_carry_risk_assessment_and_flags_when_enabled(cds_server: ServerFactory) -> None:
    _, ehr = cds_server(cds_system_actions=True)
    prefetch = full_prefetch("pv12", labs("pv12", **{**NORMAL, "ferritin": 10.0, "hb": 100.0}))
    body = ehr.call(PATIENT_VIEW, patient_view_request("pv12", prefetch)).json()
    kinds = [action["resource"]["resourceType"] for action in body["systemActions"]]
    assert kinds == ["RiskAssessment", "Flag", "Flag"]
    assert all(action["type"] == "create" and action["description"] for action in body["systemActions"])
    for action in body["systemActions"]:  # valid FHIR R4 (R4B models are identical for these types)
        model = RiskAssessment if action["resource"]["resourceType"] == "RiskAssessment" else Flag
        model.model_validate(action["resource"])
    flag = body["systemActions"][1]["resource"]
    assert flag["author"]["identifier"]["value"] == DEVICE_IDENTIFIER
    assert flag["extension"][0]["valueReference"]["type"] == "RiskAssessment"


def test_system_actions_are_off_by_default(cds_server: ServerFactory) -> None:
    _, ehr = cds_server()
    prefetch = full_prefetch("pv13", labs("pv13", **{**NORMAL, "ferritin": 10.0}))
    assert "systemActions" not in ehr.call(PATIENT_VIEW, patient_view_request("pv13", prefetch)).json()


def test_prefetch_of_another_patient_is_refused(cds_server: ServerFactory) -> None:
    _, ehr = cds_server()
    prefetch = full_prefetch("pv14", labs("pv14", **NORMAL))
    prefetch["patient"] = patient("someone-else")
    response = ehr.call(PATIENT_VIEW, patient_view_request("pv14", prefetch))
    assert response.status_code == 400
    assert response.json()["resourceType"] == "OperationOutcome"
