"""patient-view over HTTP: CTCAE grade 3-4 electrolytes are critical cards worded as potentially dangerous (D20).

docs/rules.md section 5: a grade 3 or 4 potassium, magnesium or calcium is "potentially dangerous: act on
it now if it has not been addressed (local critical-result policy)", and its card indicator is critical; a
bound gets the grade it implies ("Mg <0.4 mmol/L": grade 3 or higher).
"""

from __future__ import annotations

import pytest
from tests.api.helpers import NORMAL, PATIENT_VIEW, ServerFactory, full_prefetch, labs, patient_view_request

pytestmark = pytest.mark.net

ACT_NOW = "act on it now if it has not been addressed"


def _card(ehr: object, prefix: str, values: dict[str, float], topic: str, comparator: str | None = None) -> dict:
    observations = labs(prefix, **values)
    if comparator is not None:
        for item in observations:
            if item["code"]["coding"][0]["code"] == "2601-3":  # magnesium
                item["valueQuantity"]["comparator"] = comparator
    response = ehr.call(PATIENT_VIEW, patient_view_request(prefix, full_prefetch(prefix, observations)))  # type: ignore[attr-defined]
    assert response.status_code == 200
    [card] = [c for c in response.json()["cards"] if c["source"]["topic"]["code"] == topic]
    return card


def test_grade_4_potassium_card_is_critical_and_says_act_now(cds_server: ServerFactory) -> None:
    _, ehr = cds_server()
    card = _card(ehr, "crit1", {**NORMAL, "k": 10.5}, "hyperkalemia")
    assert card["indicator"] == "critical"
    assert "(CTCAE grade 4)" in card["summary"]
    assert ACT_NOW in card["summary"]
    assert len(card["summary"]) < 140
    assert (
        "Potassium 10.5 mmol/L: CTCAE grade 4, potentially dangerous: act on it now if it has not been "
        "addressed (local critical-result policy)."
    ) in card["detail"]


def test_magnesium_below_0_4_card_is_grade_3_or_higher_and_critical(cds_server: ServerFactory) -> None:
    _, ehr = cds_server()
    card = _card(ehr, "crit2", {**NORMAL, "mg": 0.4}, "hypomagnesemia", comparator="<")
    assert card["indicator"] == "critical"
    assert "(CTCAE grade 3 or higher)" in card["summary"]
    assert "Magnesium <0.4 mmol/L: CTCAE grade 3 or higher, potentially dangerous" in card["detail"]
    assert "**Threshold:** magnesium < 0.7 mmol/L (= 1.7 mg/dL = 1.4 mEq/L)" in card["detail"]


def test_grade_2_potassium_card_is_not_critical(cds_server: ServerFactory) -> None:
    _, ehr = cds_server()
    card = _card(ehr, "crit3", {**NORMAL, "k": 6.0}, "hyperkalemia")
    assert card["indicator"] == "warning"
    assert ACT_NOW not in card["summary"] + card["detail"]
