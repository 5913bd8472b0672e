"""Clinician-readable text for an Assessment: what was found, value and date, threshold and source,
what to consider. Short and plain; the same words feed Flags and CDS cards.
"""

from __future__ import annotations

from collections import Counter

from rls_screen.model import Assessment, Finding, Threshold
from rls_screen.quantities import format_number

IRON_BAND_TEXT = {
    "oral-or-iv": "oral or IV iron may be considered (AASM 2024)",
    "iv-only": "IV iron may be considered; oral iron not indicated (AASM 2024)",
    "not-indicated": "iron therapy not indicated by iron status (AASM 2024)",
    "indeterminate": "cannot be determined from the available results",
}

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
}


def short_source(citation: str) -> str:
    return next((short for key, short in SHORT_SOURCES.items() if key in citation), citation[:40])


def sources(finding: Finding) -> str:
    return "; ".join(dict.fromkeys(short_source(c) for c in finding.citations))


def thresholds_text(thresholds: tuple[Threshold, ...]) -> str:
    return ", ".join(f"{t.name} {t.comparator} {format_number(t.value)} {t.unit}" for t in thresholds)


def values_text(finding: Finding) -> str:
    parts = []
    for value in finding.values:
        shown = value.reported or f"{value.value.display()} {value.unit}"
        if value.computed:
            shown = f"{value.value.display(1)} {value.unit} ({value.computed}; {value.reported})"
        parts.append(f"{value.analyte} {shown} on {value.effective.isoformat()}")
    return "; ".join(parts)


def finding_sentence(finding: Finding, advice: str | None) -> str:
    """One finding as: name [severity]: values; threshold (sources). Note. Consider ..."""
    head = finding.display + (f" ({finding.severity})" if finding.severity else "")
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


def format_text(assessment: Assessment, advice: dict[str, str]) -> str:
    ctx = assessment.context
    who = [assessment.patient]
    if ctx.sex:
        who.append(ctx.sex)
    if ctx.age_years is not None:
        who.append(f"{ctx.age_years} y")
    if ctx.pregnant:
        who.append(f"pregnant (trimester {ctx.trimester})" if ctx.trimester else "pregnant")
    lines = [
        f"RLS secondary-cause screen: {', '.join(who)}; as of {assessment.as_of.isoformat()}; "
        f"rule set {assessment.rule_set_id} {assessment.rule_set_version}",
    ]
    if assessment.findings:
        lines.append("Findings:")
        lines.extend(f"  - {finding_sentence(f, advice.get(f.code))}" for f in assessment.findings)
    else:
        lines.append("Findings: none on the usable results.")
    lines.append(f"GFR category: {assessment.gfr_category or 'not determined'}")
    lines.append(f"Iron therapy band: {assessment.iron_band}: {IRON_BAND_TEXT[assessment.iron_band]}")
    if assessment.advisories:
        lines.append("Advisories:")
        lines.extend(f"  - {a.display}: {a.note or advice.get(a.code, '')}".rstrip(": ") for a in assessment.advisories)
    if assessment.not_evaluable:
        counts = Counter(n.reason for n in assessment.not_evaluable)
        lines.append("Not used: " + ", ".join(f"{count} {reason}" for reason, count in sorted(counts.items())))
        for item in assessment.not_evaluable:
            if item.reason in ("missing", "unit-not-understood", "comparator-indeterminate", "indeterminate"):
                lines.append(f"  - {item.analyte or 'result'}: {item.detail}")
    return "\n".join(lines)
