"""The anaemia rule (docs/rules.md section 3): haemoglobin against the WHO 2024 cut-off for the patient.

Chooses the cut-offs and severity bands by age (children by month of age, D19), pregnancy and
trimester at the draw date, or sex; when the context is unknown (sex, trimester) every candidate
cut-off must agree. Adds the anaemia finding with its severity and the altitude/smoking advisory.
"""

from __future__ import annotations

from rls_screen.engine.evaluation import Evaluation, age_in_months, agreed, severity_of, used
from rls_screen.engine.pregnancy import Pregnancy, trimester_of, weeks_days
from rls_screen.model import Sex, Threshold
from rls_screen.ruleset import BelowBand, HemoglobinCutoff


def evaluate_anemia(ev: Evaluation, pregnancy: Pregnancy, age_years: int | None) -> None:
    rules = ev.rules.anemia
    hb = ev.latest.get("hemoglobin")
    if hb is None or hb.value is None:
        ev.missing("hemoglobin", "haemoglobin")
        return
    ev.use(hb)
    birth = ev.patient.birth_date
    if birth is None or age_years is None:
        ev.indeterminate(
            "hemoglobin", "anaemia", hb, "birth date unknown, so the age-specific cut-off cannot be chosen"
        )
        return
    months = age_in_months(birth, ev.as_of)  # S6: age at the evaluation date
    value = hb.value
    candidates: list[tuple[str, float, tuple[BelowBand, ...]]] = []
    context_note: str | None = None
    if months < rules.children[0].from_months:
        ev.indeterminate("hemoglobin", "anaemia", hb, "no WHO cut-off under 6 months")  # D19
        return
    if age_years < ev.rules.selection.adult_hemoglobin_from_age_years:
        child = next(c for c in rules.children if c.from_months <= months < c.to_months_exclusive)
        candidates.append((f"child {months // 12} y", child.below, child.severity))  # D19: WHO 2024 bands
    else:
        at_draw = pregnancy.on(hb.effective_date)  # D18: gestational age projected to the Hb date
        if at_draw.pregnant:
            trimester = trimester_of(at_draw.days, ev)
            keys: tuple[str, ...] = (str(trimester),) if trimester else ("1", "2", "3")
            ga = pregnancy.gestational_age
            if trimester is None or at_draw.days is None:
                context_note = "Pregnant, gestational age unknown: cut-offs for all trimesters considered."
            elif ga is not None:
                context_note = (
                    f"Trimester {trimester}: gestational age {ga.reported} on {ga.effective_date.isoformat()}, "
                    f"projected to {weeks_days(at_draw.days)} on the haemoglobin date (project choice)."
                )
            for key in keys:
                cutoff: HemoglobinCutoff = rules.pregnant[key]  # type: ignore[index]
                candidates.append((f"pregnant, trimester {key}", cutoff.below, cutoff.severity))
        else:
            sexes: tuple[Sex, ...] = (ev.patient.sex,) if ev.patient.sex else ("male", "female")
            if ev.patient.sex is None:
                context_note = "Sex not recorded as male or female: both cut-offs considered."
            for sex in sexes:
                cutoff = rules.adult[sex]
                candidates.append((f"{sex}, non-pregnant", cutoff.below, cutoff.severity))

    anemic = agreed([value.below(below) for _, below, _ in candidates])
    if anemic is None:
        ev.indeterminate("hemoglobin", "anaemia", hb, context_note or "the reported bound does not decide")
        return
    if not anemic:
        return
    severities = {severity_of(value, bands) if bands else None for _, _, bands in candidates}
    severity = severities.pop() if len(severities) == 1 else None
    thresholds = [Threshold(f"hemoglobin ({label})", "<", below, rules.unit) for label, below, _ in candidates]
    ev.add(
        "finding",
        "anemia",
        rules.rule_id,
        rules.citations,
        [used(hb)],
        thresholds,
        severity=severity,
        note=context_note,
    )
    ev.add("advisory", "hemoglobin-altitude-smoking-caveat", rules.rule_id, rules.citations, [used(hb)])
