"""One set of clinician words (``rls_screen.wording``): D23 word for word, one spelling, numbers from the rule set.

Each D23 case is a defect seen in a card, report line or Flag: a value shown against another
analyte's threshold, a lower-case 'tsat', UCUM braces in text, 'Anemia' beside 'anaemia', 'ug/L'
beside 'µg/L'. The scan at the end reads every text a person sees for a set of patients.
"""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from engine_helpers import (
    AS_OF,
    CALCIUM_TOTAL,
    EGFR,
    EGFR_UNIT,
    FERRITIN,
    HEMOGLOBIN,
    ICD10CM,
    MAGNESIUM,
    POTASSIUM,
    TSAT,
    assess,
    condition,
    gestational_age,
    knowledge,
    obs,
    patient,
    pregnancy_status,
)

from rls_screen.batch.jobs import Job
from rls_screen.batch.report import BatchSummary, write_html
from rls_screen.cds.cards import CardBuilder
from rls_screen.cds.services import discovery
from rls_screen.model import Assessment
from rls_screen.report import format_text
from rls_screen.ruleset import RuleSet
from rls_screen.wording import display_units, threshold_text, unit_text
from rls_screen.writeback import build_flag, build_risk_assessment, flag_text, to_json

pytestmark = pytest.mark.unit


def cards(assessment: Assessment) -> dict[str, tuple[str, str]]:
    builder = CardBuilder(knowledge(), "rls-secondary-causes", "hook-1", "subject-1", mode="per-finding")
    return {
        d.card.source.topic.code: (d.card.summary, d.card.detail or "")
        for d in builder.patient_view(assessment)
        if d.card.source.topic
    }


def low_tsat() -> Assessment:
    return assess([obs(FERRITIN, 80, "ug/L", days_ago=10), obs(TSAT, 17, "%", days_ago=10)])


# --- D23: each value against its own analyte's threshold, analyte and unit names in display form ---


def test_d23_card_summary_shows_tsat_against_the_tsat_threshold() -> None:
    summary, _ = cards(low_tsat())["iron-insufficient-for-rls"]
    assert summary == (
        "Iron below RLS target: TSAT 17 % on 2026-03-05 (< 20 %); AASM 2024: iron therapy may be considered for RLS"
    )


def test_d23_flag_shows_tsat_against_the_tsat_threshold() -> None:
    finding = low_tsat().finding("iron-insufficient-for-rls")
    assert finding is not None
    assert flag_text(finding, knowledge().ruleset) == (
        "RLS screen: Iron below RLS target: TSAT 17 % on 2026-03-05 (threshold < 20 %; AASM 2024; IRLSSG 2018)"
    )


def test_d23_threshold_line_names_tsat_in_capitals() -> None:
    _, detail = cards(low_tsat())["iron-insufficient-for-rls"]
    assert "**Threshold:** ferritin <= 75 µg/L, TSAT < 20 %\n" in detail
    assert "threshold ferritin <= 75 µg/L, TSAT < 20 % [AASM 2024; IRLSSG 2018;" in format_text(
        low_tsat(), knowledge().ruleset
    )


def test_d23_egfr_unit_is_shown_without_ucum_braces() -> None:
    assessment = assess([obs(EGFR, 9, EGFR_UNIT, days_ago=10)])
    summary, detail = cards(assessment)["kidney-failure"]
    assert summary.startswith("Kidney failure: eGFR 9 mL/min/1.73 m² on 2026-03-05 (< 15 mL/min/1.73 m²)")
    assert "| eGFR | 9 mL/min/1.73 m² | 2026-03-05 |" in detail
    assert "**Threshold:** eGFR < 15 mL/min/1.73 m²\n" in detail
    report = format_text(assessment, knowledge().ruleset)
    assert "Kidney failure: eGFR 9 mL/min/1.73 m² on 2026-03-05; threshold eGFR < 15 mL/min/1.73 m²" in report


def test_d23_anaemia_is_spelt_one_way_in_the_finding_display() -> None:
    assessment = assess([obs(HEMOGLOBIN, 95, "g/L", days_ago=10)], who=patient("male", age_years=60))
    summary, _ = cards(assessment)["anemia"]
    assert summary.startswith("Anaemia (moderate): Hb 95 g/L on 2026-03-05 (< 130 g/L)")
    assert "  - Anaemia (moderate): Hb 95 g/L on 2026-03-05" in format_text(assessment, knowledge().ruleset)


def test_d23_micrograms_per_litre_in_one_form() -> None:
    assessment = assess([obs(FERRITIN, 9, "ug/L", days_ago=10)])
    summary, _ = cards(assessment)["iron-deficiency"]
    assert summary.startswith("Iron deficiency: ferritin 9 µg/L on 2026-03-05 (< 15 µg/L)")
    assert unit_text("ug/L") == "µg/L"
    assert display_units("iron 60 ug/dL, TIBC 400 ug/dL; 9 mL/min/{1.73_m2}") == (
        "iron 60 µg/dL, TIBC 400 µg/dL; 9 mL/min/1.73 m²"
    )


def test_a_threshold_is_named_by_its_analyte() -> None:
    from rls_screen.model import Threshold

    assert threshold_text(Threshold("tsat", "<", 20, "%")) == "TSAT < 20 %"
    assert threshold_text(Threshold("tsat", "<", 20, "%"), named=False) == "< 20 %"


# --- one spelling in everything a person reads --------------------------------------------------------

PANEL: list[tuple[str, Any]] = [
    ("anaemia and low iron", lambda: assess([obs(HEMOGLOBIN, 95, "g/L"), obs(FERRITIN, 9, "ug/L")])),
    ("low TSAT", low_tsat),
    ("kidney failure", lambda: assess([obs(EGFR, 9, EGFR_UNIT)])),
    (
        "dialysis",
        lambda: assess([obs(FERRITIN, 150, "ug/L"), obs(TSAT, 15, "%")], conditions=[condition("Z99.2", ICD10CM)]),
    ),
    ("child", lambda: assess([obs(FERRITIN, 40, "ug/L"), obs(TSAT, 25, "%")], who=patient("female", age_years=10))),
    (
        "pregnant with anaemia",
        lambda: assess(
            [pregnancy_status(days_ago=10), gestational_age(12, days_ago=10), obs(HEMOGLOBIN, 100, "g/L")],
            who=patient("female", age_years=30),
        ),
    ),
    ("electrolytes", lambda: assess([obs(MAGNESIUM, 0.3, "mmol/L"), obs(POTASSIUM, 6.5, "mmol/L")])),
    ("low calcium", lambda: assess([obs(CALCIUM_TOTAL, 1.9, "mmol/L")])),
    ("nothing", lambda: assess([])),
]


def texts_a_person_reads(assessment: Assessment) -> list[str]:
    k = knowledge()
    builder = CardBuilder(k, "rls-secondary-causes", "hook-1", "subject-1")
    out = [format_text(assessment, k.ruleset)]
    for draft in builder.patient_view(assessment):
        card = draft.card
        out += [card.summary, card.detail or "", card.source.label]
        out += [card.source.topic.display or ""] if card.source.topic else []
    for action in builder.system_actions(assessment):
        out.append(action.description)
    risk = to_json(build_risk_assessment(assessment, k.terminology, k.ruleset, "Device/d"))
    out += [risk["text"]["div"], *[p.get("rationale", "") for p in risk.get("prediction", [])]]
    out += [n["text"] for n in risk.get("note", [])]
    for finding in assessment.findings:
        flag = to_json(
            build_flag(
                assessment,
                finding,
                k.terminology,
                k.ruleset,
                device_ref="Device/d",
                risk_assessment_ref="R/1",
                start=AS_OF,
            )
        )
        out += [flag["text"]["div"], flag["code"]["text"], *[c.get("display", "") for c in flag["code"]["coding"]]]
    return out


@pytest.mark.parametrize(("name", "make"), PANEL, ids=[name for name, _ in PANEL])
def test_clinician_text_has_one_spelling_and_display_units(name: str, make: Any) -> None:
    words = "\n".join(texts_a_person_reads(make()))
    # rule ids such as ANEMIA-WHO2024 are codes; every word a person reads says 'anaemia'
    assert re.search(r"\b[Aa]nemi", words) is None, "British 'anaemia' in every clinician text"
    assert re.search(r"(?<![µ\w])ug/", words) is None, "'µg/L', never 'ug/L'"
    assert "{1.73" not in words
    assert "umol/L" not in words
    assert re.search(r"\btsat\b", words) is None, "TSAT in capitals"
    assert re.search(r"\bgrade-\d", words) is None, "severity names, not codes"


def test_the_finding_code_system_displays_use_the_same_spelling() -> None:
    root = Path(__file__).resolve().parents[2]
    code_system = json.loads((root / "terminology/CodeSystem-rls-finding.json").read_text(encoding="utf-8"))
    displays = [concept["display"] for concept in code_system["concept"]]
    assert "Anaemia" in displays
    assert not [d for d in displays if re.search(r"\banemi", d, re.IGNORECASE)]
    assert not [text for text in knowledge().ruleset.advice.values() if re.search(r"\banemi|\bug/", text)]


# --- citation labels and numbers come from the rule set -------------------------------------------


def ruleset_with(**changes: Any) -> RuleSet:
    rules = knowledge().ruleset
    return rules.model_copy(update=changes)


def test_every_citation_has_a_short_label_used_in_text() -> None:
    rules = knowledge().ruleset
    assert {key: c.short for key, c in rules.citations.items()}["AASM2024"] == "AASM 2024"
    assert all(c.short and c.text for c in rules.citations.values())
    relabelled = {
        key: c.model_copy(update={"short": f"[{key}]"}) for key, c in rules.citations.items()
    }  # no substring search: the label is the rule set's field
    text = format_text(low_tsat(), ruleset_with(citations=relabelled))
    assert "[[AASM2024]; [IRLSSG2018]; rule IRON-INSUFFICIENT-RLS v2026.3]" in text


def test_the_window_in_text_comes_from_the_rule_set() -> None:
    rules = knowledge().ruleset
    assert "No usable result in the 365 days before 2026-03-15: " in format_text(assess([]), rules)
    shorter = ruleset_with(selection=rules.selection.model_copy(update={"window_days": 200}))
    assert "No usable result in the 200 days before 2026-03-15: " in format_text(assess([]), shorter)
    [service] = [s for s in discovery(knowledge()).services if s.id == "rls-secondary-causes"]
    assert "checks the labs of the last 365 days for" in service.description
    assert "12 months" not in service.description


def test_the_outdated_gestational_age_limit_comes_from_the_rule_set() -> None:
    assessment = assess(
        [pregnancy_status(days_ago=10), gestational_age(44, days_ago=10), obs(HEMOGLOBIN, 100, "g/L")],
        who=patient("female", age_years=30),
    )
    limit = knowledge().ruleset.pregnancy.gestational_age_outdated_above_weeks
    text = json.dumps(assessment.to_json())
    assert f"projected gestational age beyond {limit:g} weeks" in text


def test_the_batch_page_states_thresholds_and_version_from_the_rule_set(tmp_path: Path) -> None:
    job = Job("job-1", "2026-03-15T00:00:00Z", "ndjson", date(2026, 3, 15), False, "http://x/fhir", "done")
    summary = BatchSummary(
        job, {"done": 1, "failed": 0, "pending": 0}, ferritin=[9.0], rule_sets={"rls-secondary-causes 2026.3"}
    )
    page = tmp_path / "r.html"
    write_html(summary, page, "r.csv", knowledge().ruleset)
    html = page.read_text(encoding="utf-8")
    assert (
        "Thresholds: &lt; 15 iron deficiency (WHO 2020; AASM 2024); &lt;= 75 and 75-100 iron therapy bands (AASM 2024)"
        in html
    )
    assert "G3a-G4 reduced kidney function; G5 (&lt; 15) kidney failure (KDIGO 2024)" in html
    assert "chart thresholds from rule set rls-secondary-causes 2026.3" in html
    assert "Latest ferritin (µg/L)" in html
    assert "ug/L" not in html
