"""Observations -> usable lab results per analyte, and the latest result of each (S1-S5, S3).

Every Observation is classified once (``observations.classify_one``: code, status, window, unit); a
usable one joins its analyte's list, anything else becomes a not-evaluable reason. The same resource
seen twice counts once. ``latest_per_analyte`` then picks the result each rule judges: the newest,
with same-day eGFR ties going to the higher-precedence code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

from rls_screen.engine.evaluation import select_latest
from rls_screen.knowledge import Knowledge
from rls_screen.model import LabResult, NotEvaluable
from rls_screen.observations import classify_one


def usable_results(
    observations: Sequence[Mapping[str, Any]], knowledge: Knowledge, as_of: date, problems: list[NotEvaluable]
) -> dict[str, list[LabResult]]:
    """Usable results by analyte, in the order given; why each other Observation is unusable goes to ``problems``."""
    selection = knowledge.ruleset.selection
    usable: dict[str, list[LabResult]] = {}
    seen: set[str] = set()
    terminology, units = knowledge.terminology, knowledge.units
    for observation in observations:
        if type(observation) is not dict and not isinstance(observation, Mapping):
            problems.append(NotEvaluable("unknown-code", "an entry that is not a FHIR resource was skipped"))
            continue
        reference = f"Observation/{observation.get('id', '?')}"
        if reference in seen and reference != "Observation/?":
            continue  # the same resource twice (e.g. overlapping pages) counts once
        seen.add(reference)
        outcome = classify_one(observation, reference, terminology, units, selection, as_of)
        if isinstance(outcome, LabResult):
            results = usable.get(outcome.analyte)
            if results is None:
                usable[outcome.analyte] = [outcome]
            else:
                results.append(outcome)
        else:
            problems.append(outcome)
    return usable


def latest_per_analyte(usable: Mapping[str, Sequence[LabResult]], knowledge: Knowledge) -> dict[str, LabResult]:
    """S3: the result each rule judges, per analyte (eGFR ties broken by the rule set's code precedence)."""
    tiers = knowledge.egfr_tiers
    return {
        analyte: select_latest(results, (lambda code: tiers.get(code, len(tiers))) if analyte == "egfr" else None)
        for analyte, results in usable.items()
    }
