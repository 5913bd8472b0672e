"""The entry point: one patient's facts and Observations, as of a date -> an ``Assessment``.

``evaluate`` selects the usable results, reads the pregnancy state, then runs the rule domains in a
fixed order (kidney, whose kidney-failure answer the iron rules read; iron; anaemia; electrolytes;
then the 2026.3 mimics, which read those findings: neuropathy labs, hydration and sodium, alcohol;
medications; the caffeine note) and assembles the Assessment: findings in ``FINDING_ORDER``, the
patient context, the GFR category, the iron band and every Observation used.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

from rls_screen.engine.alcohol import evaluate_alcohol
from rls_screen.engine.anemia import evaluate_anemia
from rls_screen.engine.electrolytes import evaluate_electrolytes
from rls_screen.engine.evaluation import Evaluation, age_in_years
from rls_screen.engine.hydration import evaluate_hydration
from rls_screen.engine.iron import evaluate_iron
from rls_screen.engine.kidney import evaluate_kidney
from rls_screen.engine.medications import evaluate_medications
from rls_screen.engine.mimics import MIMIC_FINDINGS, add_caffeine_note, add_mimic_caveat
from rls_screen.engine.neuropathy import evaluate_neuropathy
from rls_screen.engine.pregnancy import add_pregnancy_advisory, read_pregnancy, trimester_of
from rls_screen.engine.selection import latest_per_analyte, usable_results
from rls_screen.knowledge import Knowledge
from rls_screen.model import Assessment, NotEvaluable, PatientContext, PatientFacts

FINDING_ORDER = (
    "iron-deficiency",
    "iron-insufficient-for-rls",
    "missing-iron-studies",
    "anemia",
    "reduced-kidney-function",
    "kidney-failure",
    "hypomagnesemia",
    "hypokalemia",
    "hyperkalemia",
    "hypocalcemia",
    *MIMIC_FINDINGS,
)


def evaluate(
    patient: PatientFacts,
    observations: Sequence[Mapping[str, Any]],
    *,
    as_of: date,
    knowledge: Knowledge,
    conditions: Sequence[Mapping[str, Any]] = (),
    procedures: Sequence[Mapping[str, Any]] = (),
    medications: Sequence[Mapping[str, Any]] = (),
    not_evaluable: Sequence[NotEvaluable] = (),
) -> Assessment:
    """Apply rule set ``knowledge.ruleset`` to one patient's data as of ``as_of``.

    ``not_evaluable``: what the caller already set aside (resources not linked to the patient, D1),
    reported first in the Assessment's not-evaluable list.
    """
    problems: list[NotEvaluable] = list(not_evaluable)
    usable = usable_results(observations, knowledge, as_of, problems)
    selected = latest_per_analyte(usable, knowledge)
    problems.extend(selected.problems)
    ev = Evaluation(
        knowledge, patient, as_of, selected.latest, usable, not_evaluable=problems, conflicts=selected.conflicts
    )
    age_years = age_in_years(patient.birth_date, as_of) if patient.birth_date else None
    pregnancy = read_pregnancy(ev, conditions)
    pregnancy_now = pregnancy.on(as_of)  # D18, D28: the header, iron wording and advisory read the as-of date
    if pregnancy_now.outdated:
        ev.not_evaluable.append(NotEvaluable("stale", pregnancy_now.outdated, "pregnancy-status"))

    gfr_category, kidney_failure = evaluate_kidney(ev, age_years, [*conditions, *procedures])
    iron = evaluate_iron(ev, age_years, kidney_failure, pregnant=pregnancy_now.pregnant)
    add_pregnancy_advisory(ev, pregnancy_now)
    evaluate_anemia(ev, pregnancy, age_years)
    evaluate_electrolytes(ev)
    evaluate_neuropathy(ev, age_years, pregnancy)
    evaluate_hydration(ev, age_years)
    evaluate_alcohol(ev)
    add_mimic_caveat(ev)
    evaluate_medications(ev, medications)
    add_caffeine_note(ev)

    ordered = sorted(ev.findings, key=lambda f: FINDING_ORDER.index(f.code))
    context = PatientContext(
        sex=patient.sex,
        age_years=age_years,
        pregnant=pregnancy_now.pregnant,
        trimester=trimester_of(pregnancy_now.days, ev),
        pregnancy_basis=pregnancy_now.basis,
        inflammation=None if iron.inflammation in ("not-assessed", "indeterminate") else iron.inflammation == "present",
        gestational_age_days=pregnancy_now.days,
    )
    return Assessment(
        patient=patient.reference,
        as_of=as_of,
        rule_set_id=knowledge.ruleset.id,
        rule_set_version=knowledge.ruleset.version,
        context=context,
        findings=tuple(ordered),
        advisories=tuple(ev.advisories),
        gfr_category=gfr_category,
        iron_band=iron.band,
        not_evaluable=tuple(ev.not_evaluable),
        used_observations=tuple(sorted(ev.used.values(), key=lambda r: r.reference)),
        iron_band_advice=iron.band_advice,
    )
