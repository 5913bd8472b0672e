"""The neuropathy mimics of rule set 2026.3 (docs/rules.md section 11): vitamin B12, folate and HbA1c.

Owns ``b12-deficiency`` and ``b12-borderline`` (NICE NG239, from age 16; in pregnancy only the
deficiency, with its caveat: W1, W10), ``folate-deficiency`` (WHO 2015: W2) and the HbA1c ranges
``hba1c-diabetes-range`` and ``hba1c-prediabetes-range`` (ADA 2025, WHO 2011: W3, W9), with the
caveat that HbA1c can be unreliable when iron deficiency, anaemia, kidney failure (dialysis included)
or pregnancy holds. Each result is compared in the unit it was reported in when the rule set states
an equivalent for that unit (W8, as D7 does for electrolytes), else in the canonical unit. Findings
come only from a usable abnormal result: a missing test is never reported (these are not tests RLS
guidelines ask for). A lab's own reference range or interpretation is shown, never decides (W10).
These are mimics or aggravators, not established causes of RLS.
"""

from __future__ import annotations

from rls_screen.engine.electrolytes import Comparison, comparison_in_reported_unit, reported_source
from rls_screen.engine.evaluation import Evaluation, used
from rls_screen.engine.pregnancy import Pregnancy
from rls_screen.model import LabResult, Threshold
from rls_screen.quantities import Comparator, Truth
from rls_screen.ruleset import Equivalent

NEUROPATHY_FINDINGS = (
    "b12-deficiency",
    "b12-borderline",
    "folate-deficiency",
    "hba1c-diabetes-range",
    "hba1c-prediabetes-range",
)


def _compare(
    result: LabResult,
    name: str,
    comparator: Comparator,
    threshold: float,
    unit: str,
    equivalents: tuple[Equivalent, ...],
) -> Comparison:
    value = result.value
    if value is None:  # numeric analytes always carry a value; kept for the type checker
        raise ValueError(f"{result.reference}: no value")
    return comparison_in_reported_unit(name, comparator, (value, threshold, unit), equivalents, reported_source(result))


def _lab_note(result: LabResult, why: str) -> str | None:
    """W1, W10: the lab's own range or interpretation, beside ours; it does not decide."""
    shown = [part for part in (result.lab_reference_range, result.lab_interpretation) if part]
    if not shown:
        return None
    return f"Lab's own reference: {'; '.join(shown)} (shown beside ours, does not decide: {why})"


def _joined(*notes: str | None) -> str | None:
    text = " ".join(n for n in notes if n)
    return text or None


def _range(first: Comparison, second: Comparison) -> tuple[Threshold, ...]:
    """A range's two ends, each with its equivalents, the one in the reported unit first (D7, W8)."""
    return (*first.thresholds, *second.thresholds)


def evaluate_neuropathy(ev: Evaluation, age_years: int | None, pregnancy: Pregnancy) -> None:
    """W1-W3, W8-W10. Runs after iron, anaemia and kidney: the HbA1c caveat reads their findings."""
    _evaluate_b12(ev, age_years, pregnancy)
    _evaluate_folate(ev)
    _evaluate_hba1c(ev, pregnancy)


def _usable(ev: Evaluation, analyte: str) -> LabResult | None:
    result = ev.latest.get(analyte)
    return result if result is not None and result.value is not None else None


def _evaluate_b12(ev: Evaluation, age_years: int | None, pregnancy: Pregnancy) -> None:
    rule = ev.rules.neuropathy.b12
    result = _usable(ev, "b12")
    if result is None:
        return
    if age_years is None:
        ev.indeterminate(
            "b12", "b12-deficiency", result, f"birth date unknown: B12 rules apply from {rule.from_age_years} years"
        )
        return
    if age_years < rule.from_age_years:
        return  # W10: NICE NG239 is for 16 years and over
    ev.use(result)
    pregnant = pregnancy.on(result.effective_date).pregnant  # total B12 falls in pregnancy: at the draw date
    lab = _lab_note(result, rule.lab_note)
    low = _compare(result, "b12", "<", rule.deficiency_below, rule.unit, rule.deficiency_equivalents)
    deficient: Truth = low.value.below(low.threshold)
    if deficient:
        ev.add(
            "finding",
            "b12-deficiency",
            rule.rule_id,
            rule.citations,
            [used(result)],
            low.thresholds,
            note=_joined(rule.pregnancy_note if pregnant else None, lab, low.note),
        )
        return
    if deficient is None:
        ev.indeterminate("b12", "b12-deficiency", result, "the reported bound does not decide")
        return
    if pregnant:
        return  # W10: in pregnancy only b12-deficiency is reported
    high = _compare(result, "b12", "<=", rule.borderline_at_most, rule.unit, rule.borderline_equivalents)
    borderline = high.value.at_most(high.threshold)
    if borderline:
        at_least = _compare(result, "b12", ">=", rule.deficiency_below, rule.unit, rule.deficiency_equivalents)
        ev.add(
            "finding",
            "b12-borderline",
            rule.rule_id,
            rule.citations,
            [used(result)],
            _range(high, at_least),  # the upper end first: a card shows the value against it
            note=_joined(lab, high.note),
        )
    elif borderline is None:
        ev.indeterminate("b12", "b12-borderline", result, "the reported bound does not decide")


def _evaluate_folate(ev: Evaluation) -> None:
    rule = ev.rules.neuropathy.folate
    result = _usable(ev, "folate")
    if result is None:
        return
    ev.use(result)
    low = _compare(result, "folate", "<", rule.below, rule.unit, rule.equivalents)
    answer = low.value.below(low.threshold)
    if answer:
        ev.add(
            "finding",
            "folate-deficiency",
            rule.rule_id,
            rule.citations,
            [used(result)],
            low.thresholds,
            note=low.note,
        )
    elif answer is None:
        ev.indeterminate("folate", "folate-deficiency", result, "the reported bound does not decide")


def _hba1c_unreliable(ev: Evaluation, result: LabResult, pregnancy: Pregnancy) -> bool:
    """W9: iron deficiency, anaemia, kidney failure (dialysis included) or pregnancy at the HbA1c date."""
    rule = ev.rules.neuropathy.hba1c
    if any(f.code in rule.unreliable_with_findings for f in ev.findings):
        return True
    return rule.unreliable_in_pregnancy and pregnancy.on(result.effective_date).pregnant


def _evaluate_hba1c(ev: Evaluation, pregnancy: Pregnancy) -> None:
    rule = ev.rules.neuropathy.hba1c
    result = _usable(ev, "hba1c")
    if result is None:
        return
    ev.use(result)
    caveat = rule.unreliable_note if _hba1c_unreliable(ev, result, pregnancy) else None
    diabetes = _compare(result, "hba1c", ">=", rule.diabetes_at_least, rule.unit, rule.diabetes_equivalents)
    in_diabetes_range = diabetes.value.at_least(diabetes.threshold)
    if in_diabetes_range:
        ev.add(
            "finding",
            "hba1c-diabetes-range",
            rule.rule_id,
            rule.citations,
            [used(result)],
            diabetes.thresholds,
            note=_joined(rule.one_value_note, caveat, diabetes.note),
        )
        return
    if in_diabetes_range is None:
        ev.indeterminate("hba1c", "hba1c-diabetes-range", result, "the reported bound does not decide")
        return
    low = _compare(result, "hba1c", ">=", rule.prediabetes_at_least, rule.unit, rule.prediabetes_equivalents)
    in_prediabetes_range = low.value.at_least(low.threshold)
    if in_prediabetes_range:
        below = _compare(result, "hba1c", "<", rule.diabetes_at_least, rule.unit, rule.diabetes_equivalents)
        ev.add(
            "finding",
            "hba1c-prediabetes-range",
            rule.rule_id,
            rule.citations,
            [used(result)],
            _range(low, below),
            note=_joined(rule.one_value_note, caveat, low.note),
        )
    elif in_prediabetes_range is None:
        ev.indeterminate("hba1c", "hba1c-prediabetes-range", result, "the reported bound does not decide")
