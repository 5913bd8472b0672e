"""Alcohol (docs/rules.md section 11): a positive AUDIT-C (W5, W13).

``alcohol-use-positive`` (USPSTF 2018): the latest usable AUDIT-C total score (a survey Observation:
a ``valueInteger`` or a unitless / ``{score}`` quantity) at or above the cut-off for the patient's
sex; other or unknown sex uses the higher cut-off. (Caffeine, W6, is a note of ``mimics``.)
"""

from __future__ import annotations

from rls_screen.engine.evaluation import Evaluation, used
from rls_screen.model import Threshold


def evaluate_alcohol(ev: Evaluation) -> None:
    rule = ev.rules.alcohol
    score = ev.latest.get("audit-c")
    if score is None or score.value is None:
        return
    ev.use(score)
    sex = ev.patient.sex
    if sex == "male":
        cut_off, label, note = rule.male_at_least, "male", None
    elif sex == "female":
        cut_off, label, note = rule.female_at_least, "female", None
    else:
        cut_off, label = rule.other_or_unknown_sex_at_least, "other or unknown sex"
        note = f"Sex not recorded as male or female: the cut-off {cut_off:g} applies (W13)."
    answer = score.value.at_least(cut_off)
    if answer:
        ev.add(
            "finding",
            "alcohol-use-positive",
            rule.rule_id,
            rule.citations,
            [used(score)],
            [Threshold(f"audit-c ({label})", ">=", cut_off, rule.unit)],
            note=note,
        )
    elif answer is None:
        ev.indeterminate("audit-c", "alcohol-use-positive", score, "the reported bound does not decide")
