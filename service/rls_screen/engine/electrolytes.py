"""The electrolyte rules (docs/rules.md section 5): magnesium, potassium and calcium.

Owns hypomagnesemia, hypokalemia and hyperkalemia with their CTCAE grades, and hypocalcemia: ionized
calcium when it is on the same day as, or later than, the latest total calcium (D22), else total
calcium corrected for same-day albumin (Payne 1973) or, without one, uncorrected; plus the advisory
that an electrolyte finding is not an established cause of RLS. A result reported in a unit with a
stated equivalent is compared with that equivalent (D7); a bound gets the grade it implies, and
grades 3 and 4 are worded as potentially dangerous (D20).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

from rls_screen.engine.evaluation import Evaluation, select_latest, used
from rls_screen.model import LabResult, Threshold, ValueUsed
from rls_screen.quantities import Bound, Comparator, Truth, combine_monotonic
from rls_screen.ruleset import AboveBand, BelowBand, Equivalent

ELECTROLYTE_FINDINGS = ("hypomagnesemia", "hypokalemia", "hyperkalemia", "hypocalcemia")
_D7_NOTE = "Compared in the reported unit with the stated equivalent (D7)."


@dataclasses.dataclass(frozen=True, slots=True)
class Comparison:
    """D7: what a finding's threshold test compares, and the thresholds it states (the compared one first)."""

    value: Bound
    threshold: float
    thresholds: tuple[Threshold, ...]
    note: str | None


def comparison_in_reported_unit(
    name: str,
    comparator: Comparator,
    canonical: tuple[Bound, float, str],
    equivalents: Sequence[Equivalent],
    source: tuple[Bound | None, str | None],
) -> Comparison:
    value, threshold, unit = canonical
    source_value, source_unit = source
    stated = [Threshold(name, comparator, threshold, unit)]
    stated += [Threshold(name, comparator, e.value, e.unit) for e in equivalents]
    equivalent = next((e for e in equivalents if e.unit == source_unit), None)
    if equivalent is None or source_value is None or source_unit == unit:
        return Comparison(value, threshold, tuple(stated), None)
    first = next(t for t in stated if t.unit == equivalent.unit)
    ordered = (first, *(t for t in stated if t is not first))
    return Comparison(source_value, equivalent.value, ordered, _D7_NOTE)


def _grade(answers: Iterable[tuple[str, Truth]]) -> tuple[str | None, bool]:
    """The first band (most severe first) the value is in, and whether a more severe one was undecided.

    D20: "Mg <0.4 mmol/L" is not decided against grade 4 (< 0.3) but is in grade 3: ``("grade-3", True)``,
    grade 3 or higher.
    """
    undecided = False
    for severity, answer in answers:
        if answer is None:
            undecided = True
        elif answer:
            return severity, undecided
    return None, False


def _below_grade(value: Bound, bands: Sequence[BelowBand]) -> tuple[str | None, bool]:
    return _grade((band.severity, value.below(band.below)) for band in bands)


def above_grade(value: Bound, bands: Sequence[AboveBand]) -> tuple[str | None, bool]:
    return _grade((band.severity, value.above(band.above)) for band in bands)


def _grade_note(ev: Evaluation, shown: str, severity: str | None, at_least: bool) -> str | None:
    """D20: '<Analyte> <value>: CTCAE grade N [or higher][, potentially dangerous: act on it now ...]'."""
    if severity is None:
        return None
    dangerous = ev.rules.electrolytes.potentially_dangerous
    grade = f"CTCAE grade {severity.removeprefix('grade-')}{' or higher' if at_least else ''}"
    if severity in dangerous.severities:
        return f"{shown[:1].upper()}{shown[1:]}: {grade}, {dangerous.note}"
    return f"{shown[:1].upper()}{shown[1:]}: {grade}." if at_least else None


def add_graded(
    ev: Evaluation,
    code: str,
    rule_id: str,
    citations: tuple[str, ...],
    values: Sequence[ValueUsed],
    comparison: Comparison,
    graded: tuple[str | None, bool],
    shown: str,
    notes: Sequence[str | None] = (),
) -> None:
    severity, at_least = graded
    text = " ".join(n for n in (_grade_note(ev, shown, severity, at_least), *notes, comparison.note) if n)
    ev.add("finding", code, rule_id, citations, values, comparison.thresholds, severity=severity, note=text or None)
    if at_least:
        ev.findings[-1] = dataclasses.replace(ev.findings[-1], severity_at_least=True)


def reported_source(result: LabResult) -> tuple[Bound | None, str | None]:
    return result.source_value, result.source_unit


def evaluate_electrolytes(ev: Evaluation) -> None:
    rules = ev.rules.electrolytes
    for code, rule in (("hypomagnesemia", rules.hypomagnesemia), ("hypokalemia", rules.hypokalemia)):
        analyte = "magnesium" if code == "hypomagnesemia" else "potassium"
        result = ev.latest.get(analyte)
        if result is None or result.value is None:
            ev.missing(analyte, analyte)
            continue
        ev.use(result)
        comparison = comparison_in_reported_unit(
            analyte, "<", (result.value, rule.below, rule.unit), rule.equivalents, reported_source(result)
        )
        answer = comparison.value.below(comparison.threshold)
        if answer:
            add_graded(
                ev,
                code,
                rule.rule_id,
                rules.citations,
                [used(result)],
                comparison,
                _below_grade(result.value, rule.severity),
                f"{analyte} {result.reported}",
                [rule.severity_note],
            )
        elif answer is None:
            ev.indeterminate(analyte, code, result, "the reported bound does not decide")
    potassium = ev.latest.get("potassium")
    if potassium is not None and potassium.value is not None:
        high = rules.hyperkalemia
        comparison = comparison_in_reported_unit(
            "potassium", ">", (potassium.value, high.above, high.unit), (), reported_source(potassium)
        )
        answer = comparison.value.above(comparison.threshold)
        if answer:
            add_graded(
                ev,
                "hyperkalemia",
                high.rule_id,
                rules.citations,
                [used(potassium)],
                comparison,
                above_grade(potassium.value, high.severity),
                f"potassium {potassium.reported}",
            )
        elif answer is None:
            ev.indeterminate("potassium", "hyperkalemia", potassium, "the reported bound does not decide")
    _evaluate_calcium(ev)
    if any(f.code in ELECTROLYTE_FINDINGS for f in ev.findings):
        ev.add("advisory", "electrolyte-not-established-cause", "ELECTROLYTE-CAVEAT", rules.citations, [])


def _evaluate_calcium(ev: Evaluation) -> None:
    rule = ev.rules.electrolytes.hypocalcemia
    citations = ev.rules.electrolytes.citations
    ionized = ev.latest.get("calcium-ionized")
    ionized = ionized if ionized is not None and ionized.value is not None else None
    total = ev.latest.get("calcium-total")
    total = total if total is not None and total.value is not None else None
    # D22: ionized calcium only when it is as new as the latest usable total calcium (same day or later)
    newest = ionized is not None and (total is None or ionized.effective_date >= total.effective_date)
    if ionized is not None and ionized.value is not None and newest:
        ev.use(ionized)
        comparison = comparison_in_reported_unit(
            "ionized calcium",
            "<",
            (ionized.value, rule.ionized_below, rule.unit),
            rule.ionized_equivalents,
            reported_source(ionized),
        )
        answer = comparison.value.below(comparison.threshold)
        if answer:
            add_graded(
                ev,
                "hypocalcemia",
                rule.rule_id,
                citations,
                [used(ionized)],
                comparison,
                _below_grade(ionized.value, rule.ionized_severity),
                f"ionized calcium {ionized.reported}",
            )
        elif answer is None:
            ev.indeterminate("calcium-ionized", "hypocalcemia", ionized, "the reported bound does not decide")
        return
    if total is None or total.value is None:
        ev.missing("calcium-total", "calcium (ionized or total)")
        return
    older_ionized = (
        f"The ionized calcium of {ionized.effective_date.isoformat()} is older than the total calcium of "
        f"{total.effective_date.isoformat()}: the newer total decides (D22)."
        if ionized is not None
        else None
    )
    ev.use(total)
    same_day_albumin = [a for a in ev.usable.get("albumin", []) if a.effective_date == total.effective_date]
    values = [used(total)]
    payne = rule.payne
    conventional = payne.conventional
    source: tuple[Bound | None, str | None] = reported_source(total)
    if same_day_albumin:
        albumin = select_latest(same_day_albumin)
        albumin_value = albumin.value or Bound(payne.reference_albumin)  # numeric results always have one
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
        source = (None, None)
        if total.source_unit == conventional.unit and total.source_value is not None:
            # D7: corrected in the reported unit, Ca (mg/dL) + 0.8 x (4.0 - albumin g/dL)
            albumin_conventional = _albumin_in(ev, albumin, conventional.albumin_unit)
            if albumin_conventional is not None:
                source = (
                    combine_monotonic(
                        lambda ca, alb: ca + conventional.coefficient * (conventional.reference_albumin - alb),
                        (total.source_value, True),
                        (albumin_conventional, False),
                    ),
                    conventional.unit,
                )
        judged = corrected
        note = None
        citations = (*citations, *payne.citations)
        name = "albumin-corrected calcium"
        shown = f"albumin-corrected calcium {corrected.display()} {rule.unit}"
    else:
        judged = total.value
        note = "No same-day albumin: total calcium not corrected."
        name = "total calcium (uncorrected)"
        shown = f"total calcium {total.reported}"
    comparison = comparison_in_reported_unit(
        name, "<", (judged, rule.corrected_total_below, rule.unit), rule.corrected_total_equivalents, source
    )
    answer = comparison.value.below(comparison.threshold)
    if answer:
        add_graded(
            ev,
            "hypocalcemia",
            rule.rule_id,
            citations,
            values,
            comparison,
            _below_grade(judged, rule.total_severity),
            shown,
            [note, older_ionized],
        )
    elif answer is None:
        ev.indeterminate("calcium-total", "hypocalcemia", total, "the reported bound does not decide")


def _albumin_in(ev: Evaluation, albumin: LabResult, unit: str) -> Bound | None:
    """Albumin in ``unit``: as reported when it was reported in it, else converted back from canonical."""
    if albumin.source_unit == unit and albumin.source_value is not None:
        return albumin.source_value
    factor = ev.knowledge.units.factors.get("albumin", {}).get(unit)
    if factor is None or albumin.value is None:
        return None
    return albumin.value.map_monotonic(factor.invert, increasing=True)
