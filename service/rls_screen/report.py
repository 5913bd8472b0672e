"""The clinician-readable text report of an Assessment: who, what was found (value and date,
threshold and source, what to consider), the GFR category and iron band, advisories and what could
not be used. The words themselves come from ``wording`` and the rule set.
"""

from __future__ import annotations

from collections import Counter

from rls_screen.model import Assessment
from rls_screen.ruleset import RuleSet
from rls_screen.wording import (
    advisory_text,
    analyte_text,
    display_units,
    finding_sentence,
    iron_band_text,
    pregnancy_text,
    window_text,
)


def format_text(assessment: Assessment, rules: RuleSet) -> str:
    advice = rules.advice
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
        lines.extend(f"  - {finding_sentence(f, rules)}" for f in assessment.findings)
    else:
        lines.append("Findings: none on the usable results.")
    lines.append(f"GFR category: {assessment.gfr_category or 'not determined'}")
    lines.append(f"Iron therapy band: {assessment.iron_band}: {iron_band_text(assessment, advice)}")
    if assessment.advisories:
        lines.append("Advisories:")
        lines.extend(f"  - {advisory_text(a, advice)}" for a in assessment.advisories)
    missing = [n.analyte for n in assessment.not_evaluable if n.reason == "missing" and n.analyte]
    if missing:
        names = ", ".join(dict.fromkeys(analyte_text(name) for name in missing))
        lines.append(f"No usable result in {window_text(rules)} before {assessment.as_of.isoformat()}: {names}")
    others = [n for n in assessment.not_evaluable if n.reason != "missing"]
    if others:
        counts = Counter(n.reason for n in others)
        lines.append("Not used: " + ", ".join(f"{count} {reason}" for reason, count in sorted(counts.items())))
        for item in others:
            if item.reason in ("unit-not-understood", "comparator-indeterminate", "indeterminate"):
                # a unit the lab sent that was not understood is quoted as sent
                detail = item.detail if item.reason == "unit-not-understood" else display_units(item.detail)
                lines.append(f"  - {analyte_text(item.analyte or 'result')}: {detail}")
    return "\n".join(lines)
