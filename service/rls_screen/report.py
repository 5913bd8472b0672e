"""Clinician-readable text for an Assessment: what was found, value and date, threshold and source,
what to consider. Short and plain; the same words feed Flags and CDS cards.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from rls_screen.model import Assessment, Finding, Threshold, ValueUsed
from rls_screen.quantities import format_number


def advice_for(finding: Finding, advice: Mapping[str, str]) -> str | None:
    """The rule set's advice for a finding in its context (the engine chose the entry: D10-D13)."""
    return advice.get(finding.advice_key or finding.code)


def iron_band_text(assessment: Assessment, advice: Mapping[str, str]) -> str:
    """The band's wording for this patient (adult, child, pregnancy, dialysis), from the rule set."""
    key = assessment.iron_band_advice or f"iron-band.{assessment.iron_band}"
    return advice.get(key) or advice.get(f"iron-band.{assessment.iron_band}", assessment.iron_band)


def pregnancy_text(assessment: Assessment) -> str:
    """'pregnant (trimester 1, 13w6d)': D18, the gestational age at the as-of date in weeks+days."""
    ctx = assessment.context
    if ctx.trimester and ctx.gestational_age_days is not None:
        days = ctx.gestational_age_days
        return f"pregnant (trimester {ctx.trimester}, {days // 7}w{days % 7}d)"
    return f"pregnant (trimester {ctx.trimester})" if ctx.trimester else "pregnant"


# A short name for each citation, for one-line text (the JSON carries the full citation).
SHORT_SOURCES = {
    "Winkelman": "AASM 2024",
    "Allen RP": "IRLSSG 2018",
    "WHO guideline on use of ferritin": "WHO 2020",
    "Thurnham": "Thurnham 2010",
    "WHO guideline on haemoglobin": "WHO 2024",
    "KDIGO": "KDIGO 2024",
    "Inker": "CKD-EPI 2021",
    "Payne": "Payne 1973",
    "CTCAE": "CTCAE v5.0",
    "Picchietti": "Picchietti 2015",
}


# Clinician words for analyte keys and UCUM codes (outputs keep the codes; text shows these).
ANALYTE_DISPLAY = {
    "ferritin": "ferritin",
    "tsat": "TSAT",
    "iron": "serum iron",
    "tibc": "TIBC",
    "crp": "CRP",
    "hemoglobin": "Hb",
    "egfr": "eGFR",
    "creatinine": "creatinine",
    "albumin": "albumin",
    "magnesium": "magnesium",
    "potassium": "potassium",
    "calcium-total": "calcium",
    "calcium-ionized": "ionized calcium",
    "calcium-corrected": "corrected calcium",
    "gestational-age": "gestational age",
}
UNIT_DISPLAY = {
    "ug/L": "µg/L",
    "ug/dL": "µg/dL",
    "umol/L": "µmol/L",
    "meq/L": "mEq/L",
    "mL/min/{1.73_m2}": "mL/min/1.73 m²",
    "wk": "weeks",
}


def unit_text(ucum: str) -> str:
    return UNIT_DISPLAY.get(ucum, ucum)


def analyte_text(name: str) -> str:
    """'tsat' -> 'TSAT'; 'hemoglobin (female, non-pregnant)' -> 'Hb (female, non-pregnant)'."""
    head, _, rest = name.partition(" ")
    return f"{ANALYTE_DISPLAY.get(head, head)} {rest}".strip()


def value_phrase(value: ValueUsed) -> str:
    """'ferritin 110 pmol/L (= 49 µg/L) on 2026-10-09': as reported, and in the threshold's unit when different."""
    canonical = f"{value.value.display()} {unit_text(value.unit)}"
    if value.computed:
        shown = f"{value.value.display(1)} {unit_text(value.unit)} ({value.computed}; {value.reported})"
    elif value.reported and not value.reported.endswith((f" {value.unit}", f" {unit_text(value.unit)}")):
        shown = f"{value.reported} (= {canonical})"
    else:
        shown = value.reported or canonical
    return f"{analyte_text(value.analyte)} {shown} on {value.effective.isoformat()}"


def short_source(citation: str) -> str:
    return next((short for key, short in SHORT_SOURCES.items() if key in citation), citation[:40])


def sources(finding: Finding) -> str:
    return "; ".join(dict.fromkeys(short_source(c) for c in finding.citations))


def threshold_text(threshold: Threshold) -> str:
    unit = unit_text(threshold.unit)
    return f"{analyte_text(threshold.name)} {threshold.comparator} {format_number(threshold.value)} {unit}"


def threshold_groups(thresholds: tuple[Threshold, ...]) -> list[list[Threshold]]:
    """Consecutive thresholds of one name and comparator: one threshold restated in other units (D7)."""
    groups: list[list[Threshold]] = []
    for t in thresholds:
        if groups and (groups[-1][0].name, groups[-1][0].comparator) == (t.name, t.comparator):
            groups[-1].append(t)
        else:
            groups.append([t])
    return groups


def equivalents_text(equivalents: list[Threshold]) -> str:
    """' (= 0.7 mmol/L = 1.4 mEq/L)', or '' when there are none."""
    if not equivalents:
        return ""
    return f" (= {' = '.join(f'{format_number(t.value)} {unit_text(t.unit)}' for t in equivalents)})"


def thresholds_text(thresholds: tuple[Threshold, ...]) -> str:
    """'magnesium < 1.7 mg/dL (= 0.7 mmol/L = 1.4 mEq/L)': the compared threshold, then its equivalents."""
    return ", ".join(threshold_text(first) + equivalents_text(rest) for first, *rest in threshold_groups(thresholds))


def values_text(finding: Finding) -> str:
    return "; ".join(value_phrase(value) for value in finding.values)


def finding_sentence(finding: Finding, advice: str | None) -> str:
    """One finding as: name [severity]: values; threshold (sources). Note. Consider ..."""
    at_least = " or higher" if finding.severity_at_least else ""  # D20: a grade implied by a bound
    head = finding.display + (f" ({finding.severity}{at_least})" if finding.severity else "")
    body = [values_text(finding)] if finding.values else []
    if finding.thresholds:
        body.append(f"threshold {thresholds_text(finding.thresholds)}")
    text = f"{head}: {'; '.join(body)}" if body else head
    text += f" [{sources(finding)}; rule {finding.rule_id} v{finding.rule_set_version}]"
    if finding.note:
        text += f". {finding.note}"
    if advice:
        text += f" {advice}"
    return text


def format_text(assessment: Assessment, advice: Mapping[str, str]) -> str:
    ctx = assessment.context
    who = [assessment.patient]
    if ctx.sex:
        who.append(ctx.sex)
    if ctx.age_years is not None:
        who.append(f"{ctx.age_years} y")
    if ctx.pregnant:
        who.append(pregnancy_text(assessment))
    lines = [
        f"RLS secondary-cause screen: {', '.join(who)}; as of {assessment.as_of.isoformat()}; "
        f"rule set {assessment.rule_set_id} {assessment.rule_set_version}",
    ]
    if assessment.findings:
        lines.append("Findings:")
        lines.extend(f"  - {finding_sentence(f, advice_for(f, advice))}" for f in assessment.findings)
    else:
        lines.append("Findings: none on the usable results.")
    lines.append(f"GFR category: {assessment.gfr_category or 'not determined'}")
    lines.append(f"Iron therapy band: {assessment.iron_band}: {iron_band_text(assessment, advice)}")
    if assessment.advisories:
        lines.append("Advisories:")
        lines.extend(f"  - {a.note or advice.get(a.code) or a.display}" for a in assessment.advisories)
    missing = [n.analyte for n in assessment.not_evaluable if n.reason == "missing" and n.analyte]
    if missing:
        names = ", ".join(dict.fromkeys(analyte_text(name) for name in missing))
        lines.append(f"No usable result in the 365 days before {assessment.as_of.isoformat()}: {names}")
    others = [n for n in assessment.not_evaluable if n.reason != "missing"]
    if others:
        counts = Counter(n.reason for n in others)
        lines.append("Not used: " + ", ".join(f"{count} {reason}" for reason, count in sorted(counts.items())))
        for item in others:
            if item.reason in ("unit-not-understood", "comparator-indeterminate", "indeterminate"):
                lines.append(f"  - {analyte_text(item.analyte or 'result')}: {item.detail}")
    return "\n".join(lines)
