"""The kidney rules (docs/rules.md section 4): reduced kidney function and kidney failure.

Owns which eGFR is judged (the newest evidence, D14: a measured eGFR, or CKD-EPI 2021 from a newer
creatinine, or from any same-day or later creatinine when the eGFR is a bound that cannot fix the
category; adults only, D15; one value per sex when sex is unknown), the KDIGO GFR category, dialysis
as a basis for kidney failure (an active Condition or a Procedure within 90 days, D16), and the
chronicity and computed-eGFR advisories. Kidney failure by dialysis supersedes reduced kidney function
and carries no chronicity caveat (D13).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rls_screen.engine.evaluation import Evaluation, agreed, is_active_condition, used
from rls_screen.model import LabResult, Sex, Threshold, ValueUsed
from rls_screen.observations import codings_of, parse_fhir_datetime
from rls_screen.quantities import Bound, Truth, format_number


@dataclass(frozen=True, slots=True)
class _Selected:
    """The eGFR judged (one value, or one per sex when computed for an unknown sex) and why."""

    values: list[ValueUsed]
    why_computed: str | None = None
    """Set when the eGFR was computed from creatinine: the reason (D14), said in every output."""


def _gfr_category(ev: Evaluation, egfr: Bound) -> str | None:
    for band in ev.rules.kidney.gfr_categories:
        if band.below is None:
            return band.category
        answer = egfr.below(band.below)
        if answer is None:
            return None
        if answer:
            return band.category
    return None


def _ckd_epi_2021(ev: Evaluation, creatinine_mg_dl: float, age: int, sex: Sex) -> float:
    formula = ev.rules.kidney.creatinine_fallback
    params = formula.female if sex == "female" else formula.male
    ratio = creatinine_mg_dl / params.kappa
    return float(
        formula.constant
        * min(ratio, 1.0) ** params.alpha
        * max(ratio, 1.0) ** formula.high_exponent
        * formula.age_base**age
        * params.factor
    )


def _computed_egfr(ev: Evaluation, creatinine: LabResult, age_years: int | None) -> list[ValueUsed]:
    """CKD-EPI 2021 (race-free) from ``creatinine``; empty, with the reason recorded, when it cannot be computed."""
    value_of_creatinine = creatinine.value or Bound(0.0)
    if value_of_creatinine.value <= 0:
        ev.indeterminate("egfr", "eGFR from creatinine", creatinine, "a creatinine of 0 is not a plausible result")
        return []
    formula = ev.rules.kidney.creatinine_fallback
    age = age_years  # S6: age at the evaluation date
    if age is None:
        ev.indeterminate(
            "egfr", "eGFR from creatinine", creatinine, "not computed: birth date unknown (CKD-EPI 2021 is for adults)"
        )
        return []
    if age < formula.min_age_years:  # D15
        ev.indeterminate("egfr", "eGFR from creatinine", creatinine, "not computed: CKD-EPI 2021 is for adults")
        return []
    ev.use(creatinine)
    sexes: tuple[Sex, ...] = (ev.patient.sex,) if ev.patient.sex else ("male", "female")
    computed = []
    for sex in sexes:
        value = value_of_creatinine.map_monotonic(
            lambda scr, s=sex: _ckd_epi_2021(ev, scr, age, s),  # type: ignore[misc]
            increasing=False,
        )
        computed.append(
            ValueUsed(
                "egfr",
                value,
                ev.rules.kidney.unit,
                creatinine.effective_date,
                (creatinine.reference,),
                reported=f"creatinine {creatinine.reported}",
                computed=f"CKD-EPI 2021 (race-free) from creatinine, {sex}, age {age}",
            )
        )
    return computed


def _selected_egfr(ev: Evaluation, age_years: int | None) -> _Selected:
    """D14: the newest evidence decides between the latest eGFR and the eGFR computed from the latest creatinine."""
    egfr = ev.latest.get("egfr")
    creatinine = ev.latest.get("creatinine")
    if creatinine is not None and creatinine.value is None:
        creatinine = None
    if egfr is None or egfr.value is None:
        if creatinine is None:
            ev.missing("egfr", "eGFR or serum creatinine")
            return _Selected([])
        return _Selected(_computed_egfr(ev, creatinine, age_years), "no usable eGFR")
    measured = f"eGFR {egfr.value.display()} on {egfr.effective_date.isoformat()}"
    why: str | None = None
    if creatinine is not None and creatinine.effective_date > egfr.effective_date:
        why = f"the creatinine of {creatinine.effective_date.isoformat()} is newer than the latest {measured}"
    elif (
        creatinine is not None
        and creatinine.effective_date >= egfr.effective_date
        and _gfr_category(ev, egfr.value) is None
    ):
        why = (
            f"the latest {measured} is a bound that cannot fix the GFR category, and a creatinine of "
            f"{creatinine.effective_date.isoformat()} (same day or later) decides"
        )
    if creatinine is not None and why is not None:
        computed = _computed_egfr(ev, creatinine, age_years)
        if computed:
            return _Selected(computed, why)
    ev.use(egfr)
    return _Selected([used(egfr)])


def _dialysis_basis(ev: Evaluation, records: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    """D16: active dialysis Conditions, and dialysis Procedures performed 0..90 days before the as-of date."""
    terminology, rule = ev.knowledge.terminology, ev.rules.kidney.dialysis
    refs = []
    for record in records:
        if type(record) is not dict and not isinstance(record, Mapping):
            continue
        kind, codes = record.get("resourceType"), codings_of(record.get("code"))
        if kind == "Condition" and terminology.contains(rule.condition_value_set, codes):
            if is_active_condition(record):
                refs.append(f"Condition/{record.get('id', '?')}")
        elif (
            kind == "Procedure"
            and record.get("status") in rule.procedure_statuses
            and terminology.contains(rule.procedure_value_set, codes)
        ):
            period = record.get("performedPeriod")
            period = period if isinstance(period, Mapping) else {}
            performed = parse_fhir_datetime(record.get("performedDateTime")) or parse_fhir_datetime(
                period.get("end") or period.get("start")
            )
            if performed and 0 <= (ev.as_of - performed.date()).days <= rule.procedure_within_days:  # D28: inclusive
                refs.append(f"Procedure/{record.get('id', '?')}")
    return tuple(refs)


def evaluate_kidney(
    ev: Evaluation, age_years: int | None, records: Sequence[Mapping[str, Any]]
) -> tuple[str | None, Truth]:
    rules = ev.rules.kidney
    selected = _selected_egfr(ev, age_years)
    values = selected.values
    dialysis_refs = _dialysis_basis(ev, records)
    categories = {_gfr_category(ev, v.value) for v in values}
    category = categories.pop() if len(categories) == 1 else None
    lower = {band.category: band.below for band in rules.gfr_categories if band.below is not None}
    g5_below, g3a_below = lower["G5"], lower["G3a"]
    unit = rules.unit

    failure_answers = [v.value.below(g5_below) for v in values]
    below_g5 = bool(values) and agreed(failure_answers) is True
    failure: Truth = True if dialysis_refs else (agreed(failure_answers) if values else None)
    if values and category is None:
        ev.indeterminate("egfr", "GFR category", None, f"eGFR {values[0].value.display()} does not decide the category")
    computed_note = (
        f" eGFR computed from creatinine (CKD-EPI 2021): {selected.why_computed}." if selected.why_computed else ""
    )
    if dialysis_refs:
        # D13: kidney failure by dialysis, not by the eGFR threshold; no chronicity caveat.
        basis = "; ".join(dialysis_refs)
        if below_g5:
            egfr_text = f" The eGFR is also below {format_number(g5_below)}."
        elif values:
            shown = f"{values[0].value.display(1) if values[0].computed else values[0].value.display()}"
            egfr_text = (
                f" Not by the eGFR threshold: the selected eGFR ({shown} on {values[0].effective.isoformat()}"
                f"{f', category {category}' if category else ''}) is not below {format_number(g5_below)}."
            )
        else:
            egfr_text = " Not by the eGFR threshold: no eGFR decides it."
        ev.add(
            "finding",
            "kidney-failure",
            rules.failure.rule_id,
            rules.failure.citations,
            values if below_g5 else [],
            [Threshold("eGFR", "<", g5_below, unit)] if below_g5 else [],
            note=f"Kidney failure by dialysis ({basis}).{egfr_text}{computed_note}",
            extra_basis=dialysis_refs,
        )
    elif failure:
        ev.add(
            "finding",
            "kidney-failure",
            rules.failure.rule_id,
            rules.failure.citations,
            values,
            [Threshold("eGFR", "<", g5_below, unit)],
            note=f"A single result cannot show chronicity (KDIGO 2024).{computed_note}",
        )
    if category in rules.reduced_function.categories and not dialysis_refs:
        ev.add(
            "finding",
            "reduced-kidney-function",
            rules.reduced_function.rule_id,
            rules.reduced_function.citations,
            values,
            [Threshold("eGFR", "<", g3a_below, unit), Threshold("eGFR", ">=", g5_below, unit)],
            note=f"Category {category}: consistent with CKD {category} if persistent for more than 3 months; "
            f"a single result cannot show chronicity (KDIGO 2024).{computed_note}",
        )
    if category in (*rules.reduced_function.categories, *rules.failure.categories) and not dialysis_refs:
        ev.add(
            "advisory",
            "egfr-chronicity-caveat",
            rules.reduced_function.rule_id,
            rules.reduced_function.citations,
            values,
        )
    if selected.why_computed and values:
        fallback = rules.creatinine_fallback
        ev.add(
            "advisory",
            "egfr-computed-from-creatinine",
            fallback.rule_id,
            fallback.citations,
            values,
            note=f"eGFR computed from creatinine with race-free CKD-EPI 2021: {selected.why_computed}.",
        )
    return category, failure
