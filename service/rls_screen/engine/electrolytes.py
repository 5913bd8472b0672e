"""The electrolyte rules (docs/rules.md section 5): magnesium, potassium and calcium.

Owns hypomagnesemia, hypokalemia and hyperkalemia with their severity bands, and hypocalcemia: ionized
calcium when there is one, else total calcium corrected for same-day albumin (Payne 1973) or, without
one, uncorrected; plus the advisory that an electrolyte finding is not an established cause of RLS.
"""

from __future__ import annotations

from rls_screen.engine.evaluation import Evaluation, select_latest, severity_of, used
from rls_screen.model import Threshold, ValueUsed
from rls_screen.quantities import Bound, combine_monotonic


def evaluate_electrolytes(ev: Evaluation) -> None:
    rules = ev.rules.electrolytes
    for code, rule in (("hypomagnesemia", rules.hypomagnesemia), ("hypokalemia", rules.hypokalemia)):
        analyte = "magnesium" if code == "hypomagnesemia" else "potassium"
        result = ev.latest.get(analyte)
        if result is None or result.value is None:
            ev.missing(analyte, analyte)
            continue
        ev.use(result)
        answer = result.value.below(rule.below)
        if answer:
            ev.add(
                "finding",
                code,
                rule.rule_id,
                rules.citations,
                [used(result)],
                [Threshold(analyte, "<", rule.below, rule.unit)],
                severity=severity_of(result.value, rule.severity),
                note=rule.severity_note,
            )
        elif answer is None:
            ev.indeterminate(analyte, code, result, "the reported bound does not decide")
    potassium = ev.latest.get("potassium")
    if potassium is not None and potassium.value is not None:
        high = rules.hyperkalemia
        answer = potassium.value.above(high.above)
        if answer:
            severity = None
            for band in high.severity:
                decided = potassium.value.above(band.above)
                if decided is None:
                    break
                if decided:
                    severity = band.severity
                    break
            ev.add(
                "finding",
                "hyperkalemia",
                high.rule_id,
                rules.citations,
                [used(potassium)],
                [Threshold("potassium", ">", high.above, high.unit)],
                severity=severity,
            )
        elif answer is None:
            ev.indeterminate("potassium", "hyperkalemia", potassium, "the reported bound does not decide")
    _evaluate_calcium(ev)
    if any(f.code in ("hypomagnesemia", "hypokalemia", "hyperkalemia", "hypocalcemia") for f in ev.findings):
        ev.add("advisory", "electrolyte-not-established-cause", "ELECTROLYTE-CAVEAT", rules.citations, [])


def _evaluate_calcium(ev: Evaluation) -> None:
    rule = ev.rules.electrolytes.hypocalcemia
    ionized = ev.latest.get("calcium-ionized")
    if ionized is not None and ionized.value is not None:
        ev.use(ionized)
        answer = ionized.value.below(rule.ionized_below)
        if answer:
            ev.add(
                "finding",
                "hypocalcemia",
                rule.rule_id,
                ev.rules.electrolytes.citations,
                [used(ionized)],
                [Threshold("ionized calcium", "<", rule.ionized_below, rule.unit)],
                severity=severity_of(ionized.value, rule.ionized_severity),
            )
        elif answer is None:
            ev.indeterminate("calcium-ionized", "hypocalcemia", ionized, "the reported bound does not decide")
        return
    total = ev.latest.get("calcium-total")
    if total is None or total.value is None:
        ev.missing("calcium-total", "calcium (ionized or total)")
        return
    ev.use(total)
    same_day_albumin = [a for a in ev.usable.get("albumin", []) if a.effective_date == total.effective_date]
    values = [used(total)]
    citations = ev.rules.electrolytes.citations
    if same_day_albumin:
        albumin = select_latest(same_day_albumin)
        albumin_value = albumin.value or Bound(rule.payne.reference_albumin)  # numeric results always have one
        payne = rule.payne
        # Payne 1973: corrected calcium rises with calcium and falls with albumin
        corrected_or_none = combine_monotonic(
            lambda ca, alb: ca + payne.coefficient_per_gram_per_litre * (payne.reference_albumin - alb),
            (total.value, True),
            (albumin_value, False),
        )
        if corrected_or_none is None:
            ev.indeterminate(
                "calcium-total",
                "albumin-corrected calcium",
                total,
                "calcium and albumin bounds point in opposite directions",
            )
            return
        corrected = corrected_or_none
        ev.use(albumin)
        values = [
            ValueUsed(
                "calcium-corrected",
                corrected,
                rule.unit,
                total.effective_date,
                (total.reference, albumin.reference),
                reported=f"calcium {total.reported}, albumin {albumin.reported}",
                computed="total calcium corrected for same-day albumin (Payne 1973)",
            ),
            used(total),
            used(albumin),
        ]
        judged = corrected
        note = None
        citations = (*citations, *payne.citations)
        name = "albumin-corrected calcium"
    else:
        judged = total.value
        note = "No same-day albumin: total calcium not corrected."
        name = "total calcium (uncorrected)"
    answer = judged.below(rule.corrected_total_below)
    if answer:
        ev.add(
            "finding",
            "hypocalcemia",
            rule.rule_id,
            citations,
            values,
            [Threshold(name, "<", rule.corrected_total_below, rule.unit)],
            severity=severity_of(judged, rule.total_severity),
            note=note,
        )
    elif answer is None:
        ev.indeterminate("calcium-total", "hypocalcemia", total, "the reported bound does not decide")
