"""The iron rules (docs/rules.md section 2): iron deficiency, iron insufficient for RLS, missing studies.

Owns the TSAT judged (the latest, direct or computed from the latest day with both iron and TIBC: D8,
D25), inflammation from a CRP near the ferritin (which raises the ferritin threshold), the young-child
thresholds (D9), the iron advisories (inflammation caveat, overload risk, high ferritin with low TSAT,
IV iron on dialysis, paediatric threshold) and the iron-therapy band: adults (D10), children (D11,
D26) and dialysis (D24). It also chooses which rule-set ``advice`` entry words each iron finding and
the band for this patient (child, pregnancy, dialysis; never therapy when the band is not-indicated).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rls_screen.engine.evaluation import Evaluation, select_latest, used
from rls_screen.model import IronBandName, LabResult, Threshold, ValueUsed
from rls_screen.quantities import Bound, Truth, all3, any3, combine_monotonic, format_number, not3


def _computed_tsat(ev: Evaluation) -> tuple[ValueUsed, LabResult, LabResult] | None:
    """D25: TSAT = iron / TIBC x 100 from the latest draw day that has both (UIBC never stands in for TIBC)."""
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
        if value is None:
            return ValueUsed("tsat", Bound(float("nan")), "%", day, refs, computed="indeterminate"), iron, tibc
        computed = ValueUsed(
            "tsat",
            value,
            "%",
            day,
            refs,
            reported=f"iron {iron.reported}, TIBC {tibc.reported}",
            computed="serum iron / TIBC x 100, same draw day",
        )
        return computed, iron, tibc
    return None


def _selected_tsat(ev: Evaluation) -> ValueUsed | None:
    """D8: the latest TSAT by date, direct or computed; on the same day the direct one wins."""
    direct = ev.latest.get("tsat")
    computed = _computed_tsat(ev)
    if direct is not None and (computed is None or direct.effective_date >= computed[0].effective):
        ev.use(direct)
        return used(direct)
    if computed is None:
        return None
    value, iron, tibc = computed
    ev.use(iron, tibc)
    if value.computed == "indeterminate":
        ev.indeterminate("tsat", "computed TSAT", iron, "iron and TIBC bounds point in opposite directions")
    return value


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


def _on_dialysis(ev: Evaluation) -> bool:
    """Kidney failure by dialysis (D13, D24): the kidney rules' kidney-failure finding rests on dialysis records."""
    return any(f.code == "kidney-failure" and f.extra_basis for f in ev.findings)


def _studied(ev: Evaluation, analyte: str) -> bool:
    """D26: a usable result, even one left indeterminate (a same-time conflict), counts as done."""
    return bool(ev.usable.get(analyte)) or any(
        n.analyte == analyte and n.reason == "indeterminate" for n in ev.not_evaluable
    )


@dataclass(frozen=True)
class IronOutcome:
    band: IronBandName
    band_advice: str
    """The rule set's ``advice`` entry that words the band for this patient."""
    inflammation: str
    """present | absent | indeterminate | not-assessed."""


def evaluate_iron(
    ev: Evaluation, age_years: int | None, kidney_failure: Truth, *, pregnant: bool = False
) -> IronOutcome:
    """Section 2 for one patient; ``pregnant``: pregnant at the evaluation date (D12 wording)."""
    rules = ev.rules.iron
    ferritin = ev.latest.get("ferritin")
    tsat_used = _selected_tsat(ev)
    tsat: Bound | None = tsat_used.value if tsat_used and tsat_used.computed != "indeterminate" else None
    ev.use(ferritin)
    ferritin_value = ferritin.value if ferritin else None
    pediatric = age_years is not None and age_years < ev.rules.selection.pediatric_age_below_years
    dialysis = _on_dialysis(ev) and not pediatric

    inflamed, crp_values, inflammation_word = _inflammation(ev, ferritin)
    ferritin_values = [used(ferritin)] if ferritin else []
    tsat_values = [tsat_used] if tsat_used and tsat is not None else []
    unit_f, unit_t = rules.ferritin_unit, rules.tsat_unit

    band = _child_band(ev, ferritin_value, tsat) if pediatric else _adult_band(ev, ferritin_value, tsat, dialysis)
    variant = "child" if pediatric else "pregnancy" if pregnant else "dialysis" if dialysis else None
    band_advice = f"iron-band.{variant}.{band}"
    if band_advice not in ev.rules.advice:
        band_advice = f"iron-band.{band}"

    # D12: pregnancy wording cites Picchietti 2015 beside the finding's own sources
    suggests_therapy = band not in ("not-indicated", "indeterminate")
    extra_citations = rules.band.pregnancy_citations if variant == "pregnancy" and suggests_therapy else ()

    def advice_key(code: str) -> str | None:
        """D10, D26: a finding's words never suggest iron therapy when the band does not."""
        if not suggests_therapy:
            return f"{code}.{band}"
        if variant:
            return f"{code}.{variant}"
        banded = f"{code}.{band}"  # an adult's words name only the iron the band supports (oral-or-iv, iv-only)
        return banded if banded in ev.rules.advice else None

    # iron-deficiency: ferritin < 15, or < 70 with inflammation (WHO 2020; Thurnham 2010);
    # under 5 years < 12, or < 30 with inflammation (D9, WHO 2020)
    deficiency: Truth = False  # defined by ferritin alone: without one it is not established
    if ferritin_value is not None:
        d = rules.deficiency
        young = age_years is not None and age_years < d.young_child_below_age_years
        below = d.young_child_ferritin_below if young else d.ferritin_below
        below_inflamed = d.young_child_ferritin_below_with_inflammation if young else d.ferritin_below_with_inflammation
        deficiency = any3([ferritin_value.below(below), all3([inflamed, ferritin_value.below(below_inflamed)])])
        threshold = Threshold("ferritin", "<", below_inflamed if inflamed else below, unit_f)
        if deficiency:
            notes = []
            if young:
                notes.append(
                    f"Under {d.young_child_below_age_years} years (WHO 2020): ferritin threshold "
                    f"{format_number(below)} ug/L, {format_number(below_inflamed)} ug/L with inflammation."
                )
            if inflamed:
                notes.append(
                    f"CRP above {format_number(rules.inflammation.crp_above)} mg/L within "
                    f"{rules.inflammation.within_days_of_ferritin} days: ferritin threshold raised to "
                    f"{format_number(below_inflamed)} ug/L."
                )
            ev.add(
                "finding",
                "iron-deficiency",
                d.rule_id,
                (*d.citations, *extra_citations),
                ferritin_values + crp_values,
                [threshold],
                note=" ".join(notes) or None,
                advice_key=advice_key("iron-deficiency"),
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
            (*ins.citations, *extra_citations),
            values,
            [ferritin_threshold, Threshold("tsat", "<", ins.tsat_below, unit_t)],
            note=f"Paediatric threshold (AASM 2024): ferritin < {format_number(ins.pediatric_ferritin_below)} ug/L."
            if pediatric
            else None,
            advice_key=advice_key("iron-insufficient-for-rls"),
        )
    elif insufficient is None and ferritin_value is not None and tsat is not None:
        ev.indeterminate("ferritin", "iron insufficient for RLS", ferritin, "a bound does not decide the threshold")

    # missing-iron-studies: no usable ferritin OR no usable TSAT (direct or computed); an indeterminate one is done
    has_ferritin = ferritin is not None or _studied(ev, "ferritin")
    has_tsat = tsat_used is not None or _studied(ev, "tsat")
    missing_parts = [name for name, present in (("ferritin", has_ferritin), ("TSAT", has_tsat)) if not present]
    if missing_parts:
        if not has_ferritin:
            ev.missing("ferritin", "ferritin")
        if not has_tsat:
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
    high = rules.high_ferritin_low_tsat  # D10, D26: at any age
    if ferritin_value and tsat and all3([ferritin_value.above(high.ferritin_above), tsat.below(high.tsat_below)]):
        ev.add(
            "advisory",
            "high-ferritin-low-tsat",
            high.rule_id,
            high.citations,
            ferritin_values + tsat_values,
            [Threshold("ferritin", ">", high.ferritin_above, unit_f), Threshold("tsat", "<", high.tsat_below, unit_t)],
        )
    iv_iron = rules.dialysis_iv_iron
    if (
        kidney_failure
        and not pediatric  # D11: no IV wording for a child
        and ferritin_value
        and tsat
        and all3([ferritin_value.below(iv_iron.ferritin_below), tsat.below(iv_iron.tsat_below)])
    ):
        ev.add(
            "advisory",
            "dialysis-iv-iron-consideration",
            iv_iron.rule_id,
            iv_iron.citations,
            ferritin_values + tsat_values,
            [
                Threshold("ferritin", "<", iv_iron.ferritin_below, unit_f),
                Threshold("tsat", "<", iv_iron.tsat_below, unit_t),
            ],
        )
    if pediatric and (ferritin or tsat_used):
        ev.add("advisory", "pediatric-iron-threshold", ins.rule_id, ins.citations, ferritin_values + tsat_values)

    return IronOutcome(band, band_advice, inflammation_word)


def _first(steps: Sequence[tuple[Truth, IronBandName]]) -> IronBandName:
    """The band of the first step that holds. A step the data cannot decide (a bound) may or may not
    hold, so every band still possible is kept; the answer is given only when they all agree."""
    possible: set[IronBandName] = set()
    for holds, band in steps:
        if holds is None or holds:
            possible.add(band)
        if holds:
            break
    else:
        possible.add("indeterminate")
    return possible.pop() if len(possible) == 1 else "indeterminate"


def _overload(ev: Evaluation, tsat: Bound | None) -> Truth:
    """D10, D26 first step: TSAT >= 45 % (no TSAT: the step does not apply)."""
    return tsat.at_least(ev.rules.iron.band.not_indicated_tsat_at_least) if tsat else False


def _adult_band(ev: Evaluation, ferritin: Bound | None, tsat: Bound | None, dialysis: bool) -> IronBandName:
    """D10 (AASM 2024; IRLSSG 2018), or D24 on dialysis (AASM 2024, conditional), steps in order."""
    band = ev.rules.iron.band
    tsat_low = tsat.below(band.tsat_below) if tsat else None
    if dialysis:
        iv_iron = ev.rules.iron.dialysis_iv_iron
        low_ferritin = ferritin.below(iv_iron.ferritin_below) if ferritin else None
        low_tsat = tsat.below(iv_iron.tsat_below) if tsat else None
        return _first(
            [
                (_overload(ev, tsat), "not-indicated"),
                (all3([low_ferritin, low_tsat]), "iv-only"),
                (any3([not3(low_ferritin), not3(low_tsat)]), "not-indicated"),
            ]
        )
    if ferritin is None:
        return _first([(_overload(ev, tsat), "not-indicated"), (None, "indeterminate")])
    return _first(
        [
            (_overload(ev, tsat), "not-indicated"),
            (ferritin.above(band.not_indicated_ferritin_above), "not-indicated"),
            (ferritin.at_most(band.oral_or_iv_ferritin_at_most), "oral-or-iv"),
            (
                any3(
                    [
                        all3(
                            [
                                ferritin.above(band.oral_or_iv_ferritin_at_most),
                                ferritin.at_most(band.iv_only_ferritin_at_most),
                            ]
                        ),
                        all3([tsat_low, ferritin.at_most(band.not_indicated_ferritin_above)]),
                    ]
                ),
                "iv-only",
            ),
            (all3([ferritin.above(band.iv_only_ferritin_at_most), not3(tsat_low)]), "not-indicated"),
        ]
    )


def _child_band(ev: Evaluation, ferritin: Bound | None, tsat: Bound | None) -> IronBandName:
    """D11, D26 (AASM 2024 paediatric statement): oral iron only; no adult 75/100 thresholds."""
    band = ev.rules.iron.band
    low_ferritin = ferritin.below(band.pediatric_ferritin_below) if ferritin else None
    tsat_adequate = tsat.at_least(band.tsat_below) if tsat else None
    return _first(
        [
            (_overload(ev, tsat), "not-indicated"),
            (low_ferritin, "oral-only"),
            (tsat_adequate, "not-indicated"),
        ]
    )
