"""The iron rules (docs/rules.md section 2): iron deficiency, iron insufficient for RLS, missing studies.

Owns TSAT computed from same-day iron and TIBC, inflammation from a CRP near the ferritin (which raises
the ferritin threshold), the iron advisories (inflammation caveat, overload risk, IV iron on dialysis,
paediatric threshold) and the AASM 2024 iron-therapy band.
"""

from __future__ import annotations

from rls_screen.engine.evaluation import Evaluation, select_latest, used
from rls_screen.model import IronBandName, LabResult, Threshold, ValueUsed
from rls_screen.quantities import Bound, Truth, all3, any3, combine_monotonic, format_number, not3


def _computed_tsat(ev: Evaluation) -> ValueUsed | None:
    """TSAT = iron / TIBC x 100 from the latest draw day that has both (UIBC never stands in for TIBC)."""
    irons, tibcs = ev.usable.get("iron", []), ev.usable.get("tibc", [])
    days = sorted({r.effective_date for r in irons} & {r.effective_date for r in tibcs}, reverse=True)
    for day in days:
        iron = select_latest([r for r in irons if r.effective_date == day])
        tibc = select_latest([r for r in tibcs if r.effective_date == day])
        if iron.value is None or tibc.value is None or tibc.value.value <= 0:
            continue
        refs = (iron.reference, tibc.reference)
        # TSAT rises with iron and falls with TIBC
        value = combine_monotonic(lambda i, t: i / t * 100.0, (iron.value, True), (tibc.value, False))
        ev.use(iron, tibc)
        if value is None:
            ev.indeterminate("tsat", "computed TSAT", iron, "iron and TIBC bounds point in opposite directions")
            return ValueUsed("tsat", Bound(float("nan")), "%", day, refs, computed="indeterminate")
        return ValueUsed(
            "tsat",
            value,
            "%",
            day,
            refs,
            reported=f"iron {iron.reported}, TIBC {tibc.reported}",
            computed="serum iron / TIBC x 100, same draw day",
        )
    return None


def _inflammation(ev: Evaluation, ferritin: LabResult | None) -> tuple[Truth, list[ValueUsed], str]:
    """CRP > 5 mg/L within 7 days of the ferritin. Returns (truth for the rule, CRPs used, context word)."""
    if ferritin is None:
        return False, [], "not-assessed"
    rule = ev.rules.iron.inflammation
    nearby = [
        crp
        for crp in ev.usable.get("crp", [])
        if crp.value is not None
        and abs((crp.effective_date - ferritin.effective_date).days) <= rule.within_days_of_ferritin
    ]
    if not nearby:
        return False, [], "not-assessed"
    answers = [(crp, crp.value.above(rule.crp_above)) for crp in nearby if crp.value is not None]
    positive = [crp for crp, answer in answers if answer is True]
    if positive:
        return True, [used(crp) for crp in positive], "present"
    if any(answer is None for _, answer in answers):
        return None, [used(crp) for crp, _ in answers], "indeterminate"
    return False, [used(select_latest(nearby))], "absent"


def evaluate_iron(ev: Evaluation, age_years: int | None, kidney_failure: Truth) -> tuple[IronBandName, str]:
    rules = ev.rules.iron
    ferritin = ev.latest.get("ferritin")
    tsat_result = ev.latest.get("tsat")
    tsat_used = used(tsat_result) if tsat_result else _computed_tsat(ev)
    tsat: Bound | None = tsat_used.value if tsat_used and tsat_used.computed != "indeterminate" else None
    ev.use(ferritin, tsat_result)
    ferritin_value = ferritin.value if ferritin else None
    pediatric = age_years is not None and age_years < ev.rules.selection.pediatric_age_below_years

    inflamed, crp_values, inflammation_word = _inflammation(ev, ferritin)
    ferritin_values = [used(ferritin)] if ferritin else []
    tsat_values = [tsat_used] if tsat_used and tsat is not None else []
    unit_f, unit_t = rules.ferritin_unit, rules.tsat_unit

    # iron-deficiency: ferritin < 15, or < 70 with inflammation (WHO 2020; Thurnham 2010)
    deficiency: Truth = False  # defined by ferritin alone: without one it is not established
    if ferritin_value is not None:
        d = rules.deficiency
        deficiency = any3(
            [
                ferritin_value.below(d.ferritin_below),
                all3([inflamed, ferritin_value.below(d.ferritin_below_with_inflammation)]),
            ]
        )
        threshold = (
            Threshold("ferritin", "<", d.ferritin_below_with_inflammation, unit_f)
            if inflamed
            else Threshold("ferritin", "<", d.ferritin_below, unit_f)
        )
        if deficiency:
            note = (
                f"CRP above {format_number(rules.inflammation.crp_above)} mg/L within "
                f"{rules.inflammation.within_days_of_ferritin} days: ferritin threshold raised to "
                f"{format_number(d.ferritin_below_with_inflammation)} ug/L."
                if inflamed
                else None
            )
            ev.add(
                "finding",
                "iron-deficiency",
                d.rule_id,
                d.citations,
                ferritin_values + crp_values,
                [threshold],
                note=note,
            )
        elif deficiency is None:
            ev.indeterminate(
                "ferritin",
                "iron deficiency",
                ferritin,
                "the result or the CRP is a bound that does not decide",
            )

    # iron-insufficient-for-rls: (ferritin <= 75 [< 50 in children] OR TSAT < 20) AND NOT iron-deficiency
    ins = rules.insufficient_for_rls
    if pediatric:
        ferritin_low = ferritin_value.below(ins.pediatric_ferritin_below) if ferritin_value else None
        ferritin_threshold = Threshold("ferritin", "<", ins.pediatric_ferritin_below, unit_f)
    else:
        ferritin_low = ferritin_value.at_most(ins.ferritin_at_most) if ferritin_value else None
        ferritin_threshold = Threshold("ferritin", "<=", ins.ferritin_at_most, unit_f)
    tsat_low = tsat.below(ins.tsat_below) if tsat else None
    insufficient = all3([any3([ferritin_low, tsat_low]), not3(deficiency)])
    if insufficient:
        values = [
            *([used(ferritin)] if ferritin and ferritin_low else []),
            *(tsat_values if tsat_low else []),
        ]
        ev.add(
            "finding",
            "iron-insufficient-for-rls",
            ins.rule_id,
            ins.citations,
            values,
            [ferritin_threshold, Threshold("tsat", "<", ins.tsat_below, unit_t)],
            note="Paediatric threshold (AASM 2024): ferritin < 50 ug/L." if pediatric else None,
        )
    elif insufficient is None and ferritin_value is not None and tsat is not None:
        ev.indeterminate("ferritin", "iron insufficient for RLS", ferritin, "a bound does not decide the threshold")

    # missing-iron-studies: no usable ferritin OR no usable TSAT (direct or computed)
    missing_parts = [name for name, present in (("ferritin", ferritin), ("TSAT", tsat_used)) if present is None]
    if missing_parts:
        if ferritin is None:
            ev.missing("ferritin", "ferritin")
        if tsat_used is None:
            ev.missing("tsat", "transferrin saturation (TSAT, or serum iron + TIBC from the same draw)")
        ev.add(
            "finding",
            "missing-iron-studies",
            rules.missing_studies.rule_id,
            rules.missing_studies.citations,
            ferritin_values + tsat_values,
            note=f"No usable {' or '.join(missing_parts)} in the last {ev.rules.selection.window_days} days.",
        )

    # advisories
    if inflamed and ferritin:
        ev.add(
            "advisory",
            "ferritin-inflammation-caveat",
            rules.inflammation.rule_id,
            rules.inflammation.citations,
            ferritin_values + crp_values,
            [Threshold("crp", ">", rules.inflammation.crp_above, rules.crp_unit)],
        )
    if tsat is not None and tsat.at_least(rules.overload_risk.tsat_at_least):
        ev.add(
            "advisory",
            "tsat-iron-overload-risk",
            rules.overload_risk.rule_id,
            rules.overload_risk.citations,
            tsat_values,
            [Threshold("tsat", ">=", rules.overload_risk.tsat_at_least, unit_t)],
        )
    dialysis = rules.dialysis_iv_iron
    if (
        kidney_failure
        and ferritin_value
        and tsat
        and all3([ferritin_value.below(dialysis.ferritin_below), tsat.below(dialysis.tsat_below)])
    ):
        ev.add(
            "advisory",
            "dialysis-iv-iron-consideration",
            dialysis.rule_id,
            dialysis.citations,
            ferritin_values + tsat_values,
            [
                Threshold("ferritin", "<", dialysis.ferritin_below, unit_f),
                Threshold("tsat", "<", dialysis.tsat_below, unit_t),
            ],
        )
    if pediatric and (ferritin or tsat_used):
        ev.add("advisory", "pediatric-iron-threshold", ins.rule_id, ins.citations, ferritin_values + tsat_values)

    return _iron_band(ev, ferritin_value, tsat, pediatric), inflammation_word


def _iron_band(ev: Evaluation, ferritin: Bound | None, tsat: Bound | None, pediatric: bool) -> IronBandName:
    """AASM 2024 iron-therapy bands; the 75-100 IV-only band does not apply to children."""
    band = ev.rules.iron.band
    tsat_low = tsat.below(band.tsat_below) if tsat else None
    if pediatric:
        ferritin_low = ferritin.below(band.pediatric_ferritin_below) if ferritin else None
        if any3([ferritin_low, tsat_low]):
            return "oral-or-iv"
        if all3([not3(ferritin_low), not3(tsat_low)]) and ferritin and tsat:
            return "not-indicated"
        return "indeterminate"
    if any3([ferritin.at_most(band.oral_or_iv_ferritin_at_most) if ferritin else None, tsat_low]):
        return "oral-or-iv"
    if ferritin is None:
        return "indeterminate"
    in_iv_band = all3(
        [ferritin.above(band.oral_or_iv_ferritin_at_most), ferritin.at_most(band.iv_only_ferritin_at_most)]
    )
    if in_iv_band and (tsat is None or tsat_low is False):
        return "iv-only"
    if ferritin.above(band.iv_only_ferritin_at_most) and tsat is not None and tsat_low is False:
        return "not-indicated"
    return "indeterminate"
