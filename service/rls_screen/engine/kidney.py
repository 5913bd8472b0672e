"""The kidney rules (docs/rules.md section 4): reduced kidney function and kidney failure.

Owns which eGFR is judged (a measured one, else CKD-EPI 2021 from creatinine, one per sex when sex is
unknown), the KDIGO GFR category, dialysis as a basis for kidney failure (an active Condition or a
recent Procedure), and the chronicity and computed-eGFR advisories.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rls_screen.codesets import value_set_url
from rls_screen.engine.evaluation import Evaluation, agreed, is_active_condition, used
from rls_screen.model import Sex, Threshold, ValueUsed
from rls_screen.observations import codings_of, parse_fhir_datetime
from rls_screen.quantities import Bound, Truth


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


def _selected_egfr(ev: Evaluation, age_years: int | None) -> list[ValueUsed]:
    """The eGFR to judge (one value, or one per sex when sex is unknown and it was computed)."""
    egfr = ev.latest.get("egfr")
    if egfr is not None and egfr.value is not None:
        ev.use(egfr)
        return [used(egfr)]
    creatinine = ev.latest.get("creatinine")
    if creatinine is None or creatinine.value is None:
        ev.missing("egfr", "eGFR or serum creatinine")
        return []
    if creatinine.value.value <= 0:
        ev.indeterminate("egfr", "eGFR from creatinine", creatinine, "a creatinine of 0 is not a plausible result")
        return []
    formula = ev.rules.kidney.creatinine_fallback
    age = age_years  # S6: age at the evaluation date
    if age is None or age < formula.min_age_years:
        ev.indeterminate(
            "egfr",
            "eGFR from creatinine",
            creatinine,
            "CKD-EPI 2021 applies to adults with a known birth date",
        )
        return []
    ev.use(creatinine)
    sexes: tuple[Sex, ...] = (ev.patient.sex,) if ev.patient.sex else ("male", "female")
    computed = []
    for sex in sexes:
        value = creatinine.value.map_monotonic(
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


def _dialysis_basis(ev: Evaluation, records: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    terminology, dialysis = ev.knowledge.terminology, value_set_url("dialysis")
    refs = []
    for record in records:
        if (type(record) is not dict and not isinstance(record, Mapping)) or not terminology.contains(
            dialysis, codings_of(record.get("code"))
        ):
            continue
        kind = record.get("resourceType")
        if kind == "Condition" and is_active_condition(record):
            refs.append(f"Condition/{record.get('id', '?')}")
        elif kind == "Procedure" and record.get("status") in ("completed", "in-progress"):
            period = record.get("performedPeriod")
            period = period if isinstance(period, Mapping) else {}
            performed = parse_fhir_datetime(record.get("performedDateTime")) or parse_fhir_datetime(
                period.get("end") or period.get("start")
            )
            if performed and 0 <= (ev.as_of - performed.date()).days <= ev.rules.selection.window_days:
                refs.append(f"Procedure/{record.get('id', '?')}")
    return tuple(refs)


def evaluate_kidney(
    ev: Evaluation, age_years: int | None, records: Sequence[Mapping[str, Any]]
) -> tuple[str | None, Truth]:
    rules = ev.rules.kidney
    values = _selected_egfr(ev, age_years)
    dialysis_refs = _dialysis_basis(ev, records)
    categories = {_gfr_category(ev, v.value) for v in values}
    category = categories.pop() if len(categories) == 1 else None
    lower = {band.category: band.below for band in rules.gfr_categories if band.below is not None}
    g5_below, g3a_below = lower["G5"], lower["G3a"]
    unit = rules.unit

    failure_answers = [v.value.below(g5_below) for v in values]
    failure: Truth = True if dialysis_refs else (agreed(failure_answers) if values else None)
    if values and category is None:
        ev.indeterminate("egfr", "GFR category", None, f"eGFR {values[0].value.display()} does not decide the category")
    computed_note = (
        " eGFR computed from creatinine (CKD-EPI 2021): no usable eGFR." if values and values[0].computed else ""
    )
    if failure:
        note = (
            "Dialysis recorded."
            if dialysis_refs and not any(a for a in failure_answers)
            else "A single result cannot show chronicity (KDIGO 2024)."
        ) + computed_note
        ev.add(
            "finding",
            "kidney-failure",
            rules.failure.rule_id,
            rules.failure.citations,
            values if any(failure_answers) else [],
            [Threshold("eGFR", "<", g5_below, unit)],
            severity=None,
            note=note,
            extra_basis=dialysis_refs,
        )
    if category in rules.reduced_function.categories:
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
    if category in (*rules.reduced_function.categories, *rules.failure.categories):
        ev.add(
            "advisory",
            "egfr-chronicity-caveat",
            rules.reduced_function.rule_id,
            rules.reduced_function.citations,
            values,
        )
    if values and values[0].computed:
        fallback = rules.creatinine_fallback
        ev.add("advisory", "egfr-computed-from-creatinine", fallback.rule_id, fallback.citations, values)
    return category, failure
