"""order-select and order-sign: RLS drugs while iron is missing or low (iron first), and aggravators."""

from __future__ import annotations

import pytest
from tests.api.helpers import (
    NORMAL,
    ORDER_SELECT,
    ORDER_SIGN,
    ServerFactory,
    full_prefetch,
    labs,
    medication_request,
    order_request,
    summaries,
)

pytestmark = pytest.mark.net

PRAMIPEXOLE_SCD_TEXT = "pramipexole dihydrochloride 0.25 MG Oral Tablet"


def _order_prefetch(
    prefix: str, observations: list[dict[str, object]] | None, *, rls: bool = True
) -> dict[str, object]:
    prefetch = full_prefetch(prefix, observations or [], rls=rls)
    del prefetch["medications"]
    if observations is None:
        prefetch["observations"] = None
    return prefetch


def test_order_select_pramipexole_with_missing_iron_studies(cds_server: ServerFactory) -> None:
    _, ehr = cds_server()
    # A draft order as EHRs send it: a clinical-drug code we do not list, and the drug's name.
    order = medication_request("os1", 1, code="859046", display=PRAMIPEXOLE_SCD_TEXT)
    body = order_request("order-select", "os1", [order], _order_prefetch("os1", None))
    response = ehr.call(ORDER_SELECT, body)
    assert response.status_code == 200, response.text
    (card,) = response.json()["cards"]
    assert card["indicator"] == "warning"
    assert card["summary"].startswith("Check iron before pramipexole for RLS")
    assert "AASM 2024" in card["summary"]
    assert len(card["summary"]) < 140
    assert "matched by name" in card["detail"]
    assert "augmentation" in card["detail"].lower()
    (suggestion,) = card["suggestions"]
    assert suggestion["actions"][0]["resource"]["resourceType"] == "ServiceRequest"
    assert card["source"]["topic"]["code"] == "missing-iron-studies"


def test_ingredient_code_match_is_reported(cds_server: ServerFactory) -> None:
    _, ehr = cds_server()
    order = medication_request("os2", 1, code="72302", display="ropinirole")
    prefetch = _order_prefetch("os2", labs("os2", **{**NORMAL, "ferritin": 40.0}))
    (card,) = ehr.call(ORDER_SELECT, order_request("order-select", "os2", [order], prefetch)).json()["cards"]
    assert "matched by ingredient code 72302" in card["detail"]
    assert card["summary"].startswith("Iron below the RLS target (ferritin 40 µg/L)")
    assert card["source"]["topic"]["code"] == "iron-insufficient-for-rls"


def test_clinical_drug_code_match_is_reported(cds_server: ServerFactory) -> None:
    _, ehr = cds_server()
    order = medication_request("os3", 1, code="310431", display="gabapentin 300 MG Oral Capsule")
    prefetch = _order_prefetch("os3", labs("os3", **{**NORMAL, "ferritin": 10.0}))
    (card,) = ehr.call(ORDER_SIGN, order_request("order-sign", "os3", [order], prefetch)).json()["cards"]
    assert "matched by clinical drug code 310431" in card["detail"]
    assert card["summary"].startswith("Iron deficiency (ferritin 10 µg/L)")
    assert "augmentation" not in card["detail"].lower()  # alpha-2-delta ligands carry no augmentation caveat


def test_levodopa_clinical_drug_with_adequate_iron_gets_the_augmentation_caveat(cds_server: ServerFactory) -> None:
    _, ehr = cds_server()
    order = medication_request("os4", 1, code="197444", display="carbidopa 25 MG / levodopa 100 MG Oral Tablet")
    prefetch = _order_prefetch("os4", labs("os4", **NORMAL))
    (card,) = ehr.call(ORDER_SIGN, order_request("order-sign", "os4", [order], prefetch)).json()["cards"]
    assert card["indicator"] == "info"
    assert card["source"]["topic"]["code"] == "dopaminergic-augmentation-risk"
    assert "levodopa" in card["summary"].lower()


def test_alpha2delta_with_adequate_iron_gives_no_card(cds_server: ServerFactory) -> None:
    _, ehr = cds_server()
    order = medication_request("os5", 1, text="Pregabalin 75 mg capsule")
    prefetch = _order_prefetch("os5", labs("os5", **NORMAL))
    assert ehr.call(ORDER_SIGN, order_request("order-sign", "os5", [order], prefetch)).json() == {"cards": []}


def test_aggravating_medication_ordered_for_a_patient_with_rls(cds_server: ServerFactory) -> None:
    _, ehr = cds_server()
    order = medication_request("os6", 1, code="312941", display="sertraline 50 MG Oral Tablet")
    # Aggravators need no labs: observations are not prefetched and there is no FHIR server.
    prefetch = {k: v for k, v in _order_prefetch("os6", []).items() if k != "observations"}
    response = ehr.call(ORDER_SIGN, order_request("order-sign", "os6", [order], prefetch))
    assert response.status_code == 200, response.text
    (card,) = response.json()["cards"]
    assert card["indicator"] == "warning"
    assert card["summary"] == (
        "Sertraline may aggravate RLS (SSRIs and SNRIs); consider whether an alternative is suitable"
    )
    assert "matched by name" in card["detail"]
    assert "Bupropion is not listed" in card["detail"]


def test_aggravating_medication_without_rls_gives_no_card(cds_server: ServerFactory) -> None:
    _, ehr = cds_server()
    order = medication_request("os7", 1, code="5093", display="haloperidol")
    prefetch = _order_prefetch("os7", None, rls=False)
    assert ehr.call(ORDER_SIGN, order_request("order-sign", "os7", [order], prefetch)).json() == {"cards": []}


def test_rls_reason_on_the_order_counts_without_a_condition(cds_server: ServerFactory) -> None:
    _, ehr = cds_server()
    order = medication_request("os8", 1, text="ropinirole 0.25 mg", reason=True)
    prefetch = _order_prefetch("os8", None, rls=False)
    assert summaries(ehr.call(ORDER_SIGN, order_request("order-sign", "os8", [order], prefetch)))[0].startswith(
        "Check iron before ropinirole"
    )


def test_order_select_looks_only_at_the_selected_orders(cds_server: ServerFactory) -> None:
    _, ehr = cds_server()
    orders = [
        medication_request("os9", 1, text="metformin 500 mg"),
        medication_request("os9", 2, text="quetiapine 25 mg tablet"),
    ]
    prefetch = _order_prefetch("os9", None)
    only_metformin = order_request("order-select", "os9", orders, prefetch, selections=["MedicationRequest/os9-mr1"])
    assert ehr.call(ORDER_SELECT, only_metformin).json() == {"cards": []}
    both = order_request("order-select", "os9", orders, prefetch)
    assert [c["source"]["topic"]["code"] for c in ehr.call(ORDER_SELECT, both).json()["cards"]] == [
        "aggravating-medication"
    ]


def test_unrelated_orders_need_no_data(cds_server: ServerFactory) -> None:
    _, ehr = cds_server()
    order = medication_request("os10", 1, code="197361", text="amlodipine 5 mg")
    response = ehr.call(ORDER_SIGN, order_request("order-sign", "os10", [order], None))
    assert response.status_code == 200
    assert response.json() == {"cards": []}


def test_rls_drug_without_any_data_source_is_412(cds_server: ServerFactory) -> None:
    _, ehr = cds_server()
    order = medication_request("os11", 1, text="pramipexole 0.125 mg")
    response = ehr.call(ORDER_SIGN, order_request("order-sign", "os11", [order], None))
    assert response.status_code == 412
    assert response.json()["resourceType"] == "OperationOutcome"


def test_medication_reference_to_a_contained_medication(cds_server: ServerFactory) -> None:
    _, ehr = cds_server()
    order = medication_request("os12", 1)
    del order["medicationCodeableConcept"]
    order["contained"] = [
        {
            "resourceType": "Medication",
            "id": "med",
            "code": {"coding": [{"system": "x", "code": "1"}], "text": "Rotigotine 1 mg/24 h patch"},
        }
    ]
    order["medicationReference"] = {"reference": "#med"}
    prefetch = _order_prefetch("os12", None)
    (card,) = ehr.call(ORDER_SIGN, order_request("order-sign", "os12", [order], prefetch)).json()["cards"]
    assert "rotigotine" in card["summary"]
