"""Observations -> usable lab results per analyte, and the latest result of each (S1-S5, S3, D3-D5, D27).

Every Observation is classified once (``observations.classify_all``: code, status, date, window, unit,
and each component coded as one of our analytes, D5); a usable result joins its analyte's list,
anything else becomes a not-evaluable reason. The same resource seen twice counts once.
``latest_per_analyte`` then picks the result each rule judges (``evaluation.latest_tied``: the newest,
same-day eGFR ties to the higher-precedence code, then D3's status and ``issued``); results still tied
whose values fall on different sides of a threshold make the analyte indeterminate (D3).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from fnmatch import fnmatchcase
from typing import Any

from rls_screen.engine.evaluation import latest_tied
from rls_screen.knowledge import Knowledge
from rls_screen.model import LabResult, NotEvaluable
from rls_screen.observations import classify_all
from rls_screen.quantities import Bound, Truth

CONFLICT = "conflicting results at the same time"
"""D3: the detail of an analyte left indeterminate by tied results on different sides of a threshold."""


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
        for outcome in classify_all(observation, reference, terminology, units, selection, as_of):
            if isinstance(outcome, LabResult):
                results = usable.get(outcome.analyte)
                if results is None:
                    usable[outcome.analyte] = [outcome]
                else:
                    results.append(outcome)
            else:
                problems.append(outcome)
    return usable


@dataclass(frozen=True)
class Selected:
    """What ``latest_per_analyte`` chose: the result per analyte, and the analytes D3 left indeterminate."""

    latest: dict[str, LabResult]
    conflicts: dict[str, tuple[LabResult, ...]]
    """Analyte -> the tied results whose values fall on different sides of a threshold (D3)."""
    problems: tuple[NotEvaluable, ...]
    """One ``indeterminate`` reason per conflict, naming the tied Observations."""


def latest_per_analyte(usable: Mapping[str, Sequence[LabResult]], knowledge: Knowledge) -> Selected:
    """S3 and D3: the result each rule judges, per analyte, or the conflict that leaves it indeterminate."""
    tiers = knowledge.egfr_tiers
    latest: dict[str, LabResult] = {}
    conflicts: dict[str, tuple[LabResult, ...]] = {}
    problems: list[NotEvaluable] = []
    for analyte, results in usable.items():
        if len(results) == 1:
            latest[analyte] = results[0]
            continue
        tier = (lambda code: tiers.get(code, len(tiers))) if analyte == "egfr" else None
        tied = latest_tied(results, tier)
        rivals = tuple(r for r in tied if _conflict(tied[0], r, analyte, knowledge))
        if not rivals:
            latest[analyte] = tied[0]
            continue
        conflicts[analyte] = (tied[0], *rivals)
        problems.append(_conflict_problem(analyte, conflicts[analyte]))
    return Selected(latest, conflicts, tuple(problems))


def _conflict_problem(analyte: str, tied: Sequence[LabResult]) -> NotEvaluable:
    named = " and ".join(_cited(r) for r in sorted(tied, key=lambda r: (r.reference, r.component or "")))
    first = tied[0]
    return NotEvaluable("indeterminate", f"{CONFLICT}: {named}", analyte, first.reference, first.effective_date)


def _cited(result: LabResult) -> str:
    """D3 names each Observation (D5: with its component code) and the value it reported."""
    where = f"{result.reference} component {result.component}" if result.component else result.reference
    return f"{where} ({result.reported})"


def _conflict(first: LabResult, other: LabResult, analyte: str, knowledge: Knowledge) -> bool:
    """D3: do two tied results fall on different sides of one of the analyte's thresholds?"""
    if first.value is None or other.value is None:  # coded results (pregnancy status): the codes decide
        return set(first.value_codings) != set(other.value_codings)
    if first.value == other.value:
        return False
    patterns = knowledge.ruleset.selection.same_time.thresholds.get(analyte)
    if patterns is None:  # judged only through a computed value: any difference counts (rule-set note)
        return True
    raw = knowledge.ruleset.model_dump(by_alias=True)
    for pattern in patterns:
        for test, threshold in _thresholds(raw, pattern.split(".")):
            a, b = test(first.value, threshold), test(other.value, threshold)
            if a is None or b is None or a != b:
                return True
    return False


_TESTS: tuple[tuple[str, Callable[[Bound, float], Truth]], ...] = (
    ("atmost", Bound.at_most),
    ("atleast", Bound.at_least),
    ("below", Bound.below),
    ("above", Bound.above),
    ("fromweeks", Bound.at_least),
)
"""How a threshold key tests a value, by a word in its name (``ferritinAtMost``, ``below``, ``secondFromWeeks``)."""


def _thresholds(node: Any, path: list[str]) -> Iterator[tuple[Callable[[Bound, float], Truth], float]]:
    """The numeric thresholds at a dotted path of the rule set (``*`` one level, ``**`` any depth)."""
    if not path:
        return
    head, rest = path[0], path[1:]
    children: list[tuple[str, Any]]
    if isinstance(node, Mapping):
        children = [(str(key), value) for key, value in node.items()]
    elif isinstance(node, list | tuple):
        children = [(str(index), value) for index, value in enumerate(node)]
    else:
        return
    if head == "**":
        yield from _thresholds(node, rest)
        for _, child in children:
            yield from _thresholds(child, path)
        return
    for key, child in children:
        if not fnmatchcase(key.lower(), head.lower()):
            continue
        if rest:
            yield from _thresholds(child, rest)
        elif isinstance(child, int | float) and not isinstance(child, bool):
            test = next((test for word, test in _TESTS if word in key.lower()), None)
            if test is not None:
                yield test, float(child)
