"""Golden files for what a person reads: one synthetic patient per scenario (each rule family and edge).

For each patient, tests/data/golden/<scenario>.txt holds the text report (``rls-screen evaluate``) and
<scenario>.json the Assessment JSON, the patient-view CDS card (the default one-card mode, with a public URL
and the clinician app configured, so its rule, DOI and SMART links show) and the write-back transaction Bundle
(Flags, RiskAssessment, ServiceRequest, Provenance, with their narratives). They were reviewed once by
reading them; a change in any of them fails here and shows as a diff. To accept an intended change,
regenerate and review the diff before committing:

    UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_golden.py
"""

from __future__ import annotations

import json
import os
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from rls_screen import synth
from rls_screen.assessment import assess
from rls_screen.cds.card_links import CardLinks
from rls_screen.cds.cards import CardBuilder
from rls_screen.cds.services import PATIENT_VIEW_SERVICE
from rls_screen.knowledge import Knowledge, load_knowledge
from rls_screen.patient_data import from_bundle
from rls_screen.report import format_text
from rls_screen.writeback import ExistingState, plan_writeback

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden"
AS_OF = date(2026, 11, 25)
RECORDED = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)
HOOK_INSTANCE = "2f6b3a5e-0c1d-4e8f-9a7b-6c5d4e3f2a1b"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"
LINKS = CardLinks(public_url="https://cds.example.org", app_client_id="golden-app")


def _patients() -> dict[str, synth.PatientRecord]:
    """The first patient of each scenario in a fixed panel (seed 3, 120 patients)."""
    panel = synth.generate_panel(120, seed=3, as_of=AS_OF, id_prefix="gold")
    chosen: dict[str, synth.PatientRecord] = {}
    for record in panel.patients:
        chosen.setdefault(record.manifest.scenario, record)
    scenario_patients = {record.patient_id for record in chosen.values()}
    for record in panel.patients:  # docs/rules.md section 11: the first other patient of each mimic drawn on top
        if record.manifest.mimic is not None and record.patient_id not in scenario_patients:
            chosen.setdefault(f"mimic-{record.manifest.mimic}", record)
    return dict(sorted(chosen.items()))


PATIENTS = _patients()


@pytest.fixture(scope="module")
def knowledge() -> Knowledge:
    return load_knowledge()


def _outputs(record: synth.PatientRecord, knowledge: Knowledge) -> tuple[str, dict[str, Any]]:
    data = from_bundle(synth.urn_uuid_bundle(record, bundle_type="collection"))
    assessment = assess(data, knowledge=knowledge, as_of=AS_OF)
    text = format_text(assessment, knowledge.ruleset)
    builder = CardBuilder(knowledge, PATIENT_VIEW_SERVICE, HOOK_INSTANCE, "golden-subject", links=LINKS)
    cards = [
        draft.card.model_dump(mode="json", by_alias=True, exclude_none=True)
        for draft in builder.patient_view(assessment)
    ]
    plan = plan_writeback(
        assessment,
        ExistingState(flags={}, service_request=None, risk_assessment_exists=False),
        terminology=knowledge.terminology,
        rules=knowledge.ruleset,
        recorded=RECORDED,
        device_ref="Device/rls-screen",
    )
    return text + "\n", {"assessment": assessment.to_json(), "cards": cards, "writeback": plan.bundle}


def test_every_scenario_has_a_golden_patient() -> None:
    assert len(PATIENTS) >= 20
    if not UPDATE:
        assert sorted(p.stem for p in GOLDEN.glob("*.txt")) == sorted(PATIENTS), "golden files out of step"


@pytest.mark.parametrize("scenario", sorted(PATIENTS))
def test_outputs_match_their_golden_files(scenario: str, knowledge: Knowledge) -> None:
    text, outputs = _outputs(PATIENTS[scenario], knowledge)
    rendered = json.dumps(outputs, indent=2, ensure_ascii=False, sort_keys=True) + "\n"
    text_path, json_path = GOLDEN / f"{scenario}.txt", GOLDEN / f"{scenario}.json"
    if UPDATE:
        GOLDEN.mkdir(parents=True, exist_ok=True)
        text_path.write_text(text, encoding="utf-8")
        json_path.write_text(rendered, encoding="utf-8")
    assert text == text_path.read_text(encoding="utf-8")
    assert rendered == json_path.read_text(encoding="utf-8")
