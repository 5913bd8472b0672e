"""The findings of rule set 2026.3 as one group (docs/rules.md section 11): mimics or aggravators of leg
symptoms, never established causes of RLS, and the two advisories every such output carries.

``add_mimic_caveat`` adds ``mimic-not-established-cause`` when any section-11 finding was made, citing
the sources of those findings; ``add_caffeine_note`` adds W6's ``caffeine-not-assessed`` to every
Assessment (no standard coded observation of caffeine intake exists; it is never a finding).
"""

from __future__ import annotations

from rls_screen.engine.evaluation import Evaluation
from rls_screen.ruleset import RuleSet

MIMIC_FINDINGS = (
    "hypernatremia",
    "possible-dehydration",
    "b12-deficiency",
    "b12-borderline",
    "folate-deficiency",
    "hba1c-diabetes-range",
    "hba1c-prediabetes-range",
    "alcohol-use-positive",
)
"""In the order ``evaluate`` lists findings (after the electrolytes of section 5)."""


def _citation_keys(rules: RuleSet, code: str) -> tuple[str, ...]:
    """The rule set's citation keys behind one section-11 finding."""
    by_code = {
        "hypernatremia": rules.electrolytes.citations,
        "possible-dehydration": rules.hydration.citations,
        "b12-deficiency": rules.neuropathy.b12.citations,
        "b12-borderline": rules.neuropathy.b12.citations,
        "folate-deficiency": rules.neuropathy.folate.citations,
        "hba1c-diabetes-range": rules.neuropathy.hba1c.citations,
        "hba1c-prediabetes-range": rules.neuropathy.hba1c.citations,
        "alcohol-use-positive": rules.alcohol.citations,
    }
    return by_code[code]


def add_mimic_caveat(ev: Evaluation) -> None:
    found = [f.code for f in ev.findings if f.code in MIMIC_FINDINGS]
    if not found:
        return
    keys = tuple(dict.fromkeys(key for code in found for key in _citation_keys(ev.rules, code)))
    ev.add("advisory", "mimic-not-established-cause", "MIMIC-CAVEAT", keys, [])


def add_caffeine_note(ev: Evaluation) -> None:
    """W6: once per Assessment, whatever else was found."""
    rule = ev.rules.caffeine
    ev.add("advisory", "caffeine-not-assessed", rule.rule_id, rule.citations, [])
