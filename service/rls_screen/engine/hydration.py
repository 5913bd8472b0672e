"""Hydration and sodium (docs/rules.md section 11): possible dehydration (W4, W11) and hypernatremia (W12).

``possible-dehydration`` (adults, ESPEN 2019, Lacey 2019) comes from the newest evidence: a measured
serum osmolality on the latest day it exists, or an osmolarity calculated from sodium, potassium,
glucose and urea of the latest day that has all four, whichever day is later (the measured one on
the same day). A measurement is excluded when kidney failure or reduced kidney function holds, or
glucose that day is above its limit: a raised excluded value gives the advisory "raised osmolality
may reflect urea or glucose, not dehydration" instead, and the next method down decides. With
neither, sodium above its limit gives the finding. The finding says which method decided.

``hypernatremia`` is an electrolyte finding of its own whenever the latest usable sodium is above its
limit, whatever the dehydration rule used, with its CTCAE v5.0 grade (D20's wording from grade 3).
Both are mimics or aggravators, not established causes of RLS; nothing is reported as missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from rls_screen.engine.electrolytes import (
    Comparison,
    above_grade,
    add_graded,
    comparison_in_reported_unit,
    reported_source,
)
from rls_screen.engine.evaluation import Evaluation, latest_tied, used
from rls_screen.model import LabResult, Threshold, ValueUsed
from rls_screen.quantities import Bound, Truth, combine_monotonic, format_number

OSMOLARITY_INPUTS = ("sodium", "potassium", "glucose", "urea-nitrogen")
"""W11: the four same-day inputs of the calculated osmolarity, in the formula's order."""


@dataclass(frozen=True)
class _Method:
    """One way of judging hydration on one day: what it measured, against which threshold."""

    name: str
    """'measured osmolality' or 'calculated osmolarity'."""
    day: date
    values: tuple[ValueUsed, ...]
    value: Bound
    threshold: Threshold
    glucose: LabResult | None
    """The glucose of that day (W11: above its limit, the measurement is excluded)."""
    glucose_conflict: bool = False
    """Tied glucose results of that day disagree: the exclusion cannot be decided."""


def evaluate_hydration(ev: Evaluation, age_years: int | None) -> None:
    """W4, W11, W12. Runs after kidney: the exclusions read its findings."""
    _evaluate_hypernatremia(ev)
    rule = ev.rules.hydration
    if age_years is None:
        if ev.latest.get("osmolality") or ev.latest.get("sodium"):  # not for a potassium alone
            ev.indeterminate(
                "sodium", "possible-dehydration", None, f"birth date unknown: adults ({rule.from_age_years} y) only"
            )
        return
    if age_years < rule.from_age_years:
        return
    if "osmolality" in ev.conflicts:
        ev.indeterminate("osmolality", "possible-dehydration", None, "the latest measured osmolality is in conflict")
        return
    measured = _measured(ev)
    calculated = _calculated(ev)
    if calculated is False:
        return  # tied inputs disagree on the latest complete day: indeterminate (already said)
    methods: list[_Method] = []
    for method in (measured, calculated):
        if not isinstance(method, _Method):
            continue
        verdict = _usable_method(ev, method)
        if verdict is None:
            return  # the exclusion cannot be decided: indeterminate (already said), never a guess
        if verdict:
            methods.append(method)
    # newest evidence first; on the same day the measured osmolality wins (W11)
    chosen = max(methods, key=lambda m: (m.day, m.name == "measured osmolality"), default=None)
    if chosen is not None:
        answer = chosen.value.above(chosen.threshold.value)
        if answer:
            _add_dehydration(
                ev, list(chosen.values), (chosen.threshold,), f"Method: {chosen.name} (newest evidence, W11)."
            )
        elif answer is None:
            ev.indeterminate("osmolality", "possible-dehydration", None, f"{chosen.name}: the bound does not decide")
        return
    sodium = _latest(ev, "sodium")
    if sodium is None or sodium.value is None:
        return
    ev.use(sodium)
    high = _sodium_comparison(ev, sodium)
    answer = high.value.above(high.threshold)
    if answer:
        why = _sodium_reason(measured, calculated)
        _add_dehydration(ev, [used(sodium)], high.thresholds, f"Method: sodium alone ({why}).")
    elif answer is None:
        ev.indeterminate("sodium", "possible-dehydration", sodium, "the reported bound does not decide")


def _sodium_reason(measured: _Method | None, calculated: _Method | bool | None) -> str:
    if measured is None and calculated is None:
        return "no usable measured osmolality and no day with all four osmolarity inputs"
    return "osmolality and osmolarity excluded or unavailable, W11"


def _add_dehydration(ev: Evaluation, values: list[ValueUsed], thresholds: tuple[Threshold, ...], note: str) -> None:
    rule = ev.rules.hydration
    ev.add("finding", "possible-dehydration", rule.rule_id, rule.citations, values, thresholds, note=note)


def _latest(ev: Evaluation, analyte: str) -> LabResult | None:
    result = ev.latest.get(analyte)
    return result if result is not None and result.value is not None else None


def _measured(ev: Evaluation) -> _Method | None:
    rule = ev.rules.hydration
    osmolality = _latest(ev, "osmolality")
    if osmolality is None or osmolality.value is None:
        return None
    ev.use(osmolality)
    threshold = Threshold("osmolality", ">", rule.osmolality.above, rule.osmolality.unit)
    glucose = _on_day(ev, "glucose", osmolality.effective_date)
    return _Method(
        "measured osmolality",
        osmolality.effective_date,
        (used(osmolality),),
        osmolality.value,
        threshold,
        glucose if isinstance(glucose, LabResult) else None,
        glucose_conflict=glucose is False,
    )


def _on_day(ev: Evaluation, analyte: str, day: date) -> LabResult | bool | None:
    """The result of ``analyte`` on ``day`` (S3, D3 among that day's), None without one, False on a conflict."""
    results = [r for r in ev.usable.get(analyte, []) if r.effective_date == day and r.value is not None]
    if not results:
        return None
    tied = latest_tied(results)
    if any(r.value != tied[0].value for r in tied[1:]):
        ev.indeterminate(analyte, "osmolarity input", tied[0], f"conflicting results on {day.isoformat()}")
        return False
    return tied[0]


def _calculated(ev: Evaluation) -> _Method | bool | None:
    """W4, W11: the osmolarity of the latest day with all four inputs; None without such a day, False on a conflict."""
    rule = ev.rules.hydration.osmolarity
    days = [
        {r.effective_date for r in ev.usable.get(analyte, []) if r.value is not None} for analyte in OSMOLARITY_INPUTS
    ]
    complete = set.intersection(*days) if all(days) else set()
    if not complete:
        return None
    day = max(complete)
    inputs: list[LabResult] = []
    for analyte in OSMOLARITY_INPUTS:
        found = _on_day(ev, analyte, day)
        if not isinstance(found, LabResult):
            return False
        inputs.append(found)
    sodium, _potassium, glucose, _urea = inputs

    def formula(na: float, k: float, glu: float, ur: float) -> float:
        return (
            rule.sodium_potassium_factor * (na + k) + rule.glucose_factor * glu + rule.urea_factor * ur + rule.constant
        )

    value = combine_monotonic(formula, *((r.value or Bound(0.0), True) for r in inputs))
    if value is None:
        ev.indeterminate("sodium", "calculated osmolarity", sodium, "input bounds point in opposite directions")
        return False
    ev.use(*inputs)
    shown = ", ".join(f"{r.analyte.replace('-', ' ')} {r.reported}" for r in inputs)
    computed = ValueUsed(
        "osmolarity",
        value,
        rule.unit,
        day,
        tuple(r.reference for r in inputs),
        reported=shown,
        computed=(
            f"{format_number(rule.sodium_potassium_factor)} x (Na + K) + "
            f"{format_number(rule.glucose_factor)} x glucose + urea + {format_number(rule.constant)}, same day"
        ),
    )
    threshold = Threshold("osmolarity", ">", rule.above, rule.unit)
    return _Method("calculated osmolarity", day, (computed,), value, threshold, glucose)


def _usable_method(ev: Evaluation, method: _Method) -> bool | None:
    """W11: True to judge by this method; False when excluded (with the advisory when raised); None: undecided."""
    rule = ev.rules.hydration
    if method.glucose_conflict:
        return None
    reasons = [f.display.lower() for f in ev.findings if f.code in rule.excluded_with_findings]
    glucose_high: Truth = False
    glucose_comparison: Comparison | None = None
    if method.glucose is not None and method.glucose.value is not None:
        glucose_comparison = comparison_in_reported_unit(
            "glucose",
            ">",
            (method.glucose.value, rule.glucose_excluded_above, rule.glucose_unit),
            rule.glucose_excluded_equivalents,
            reported_source(method.glucose),
        )
        glucose_high = glucose_comparison.value.above(glucose_comparison.threshold)
    if glucose_high is None:
        ev.indeterminate(
            "glucose", "possible-dehydration", method.glucose, "the glucose bound does not decide W11's exclusion"
        )
        return None
    if glucose_high and method.glucose is not None:
        reasons.append(f"glucose {method.glucose.reported} on {method.day.isoformat()}")
    if not reasons:
        return True
    raised = method.value.above(method.threshold.value)
    if raised or not rule.exclusion_advisory_only_when_raised:
        values = list(method.values)
        thresholds: list[Threshold] = [method.threshold]
        if glucose_high and method.glucose is not None and glucose_comparison is not None:
            if method.glucose.reference not in {ref for v in values for ref in v.observations}:
                values.append(used(method.glucose))
            thresholds.extend(glucose_comparison.thresholds)
        ev.add(
            "advisory",
            "osmolality-not-dehydration",
            rule.rule_id,
            rule.citations,
            values,
            thresholds,
            note=(
                f"{method.name[:1].upper()}{method.name[1:]} {method.value.display()} "
                f"{method.threshold.unit} on {method.day.isoformat()} not used ({'; '.join(reasons)}): "
                f"{ev.rules.advice['osmolality-not-dehydration'][:1].lower()}"
                f"{ev.rules.advice['osmolality-not-dehydration'][1:]}"
            ),
        )
    return False


def _sodium_comparison(ev: Evaluation, sodium: LabResult) -> Comparison:
    rule = ev.rules.hydration
    value = sodium.value or Bound(0.0)
    return comparison_in_reported_unit(
        "sodium", ">", (value, rule.sodium_above, rule.sodium_unit), (), reported_source(sodium)
    )


def _evaluate_hypernatremia(ev: Evaluation) -> None:
    """W12: the latest usable sodium above its limit, graded by CTCAE v5.0 (D20 from grade 3)."""
    rule = ev.rules.electrolytes.hypernatremia
    sodium = _latest(ev, "sodium")
    if sodium is None or sodium.value is None:
        return
    ev.use(sodium)
    comparison = comparison_in_reported_unit(
        "sodium", ">", (sodium.value, rule.above, rule.unit), (), reported_source(sodium)
    )
    answer = comparison.value.above(comparison.threshold)
    if answer:
        add_graded(
            ev,
            "hypernatremia",
            rule.rule_id,
            ev.rules.electrolytes.citations,
            [used(sodium)],
            comparison,
            above_grade(sodium.value, rule.severity),
            f"sodium {sodium.reported}",
        )
    elif answer is None:
        ev.indeterminate("sodium", "hypernatremia", sodium, "the reported bound does not decide")
