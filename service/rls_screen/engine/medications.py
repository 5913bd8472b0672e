"""The medication rule (docs/rules.md section 8): active prescriptions of drugs that may aggravate RLS.

An active (or draft, on-hold, intended) MedicationRequest whose RxNorm code is in the aggravating
ValueSet becomes an advisory naming the ingredient as its ValueSet displays it and its category (the
category ValueSet's title), never an RxNorm code (D21); nothing else about medications is read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rls_screen.codesets import RXNORM
from rls_screen.engine.evaluation import Evaluation
from rls_screen.observations import codings_of

ACTIVE_MEDICATION_STATUSES = frozenset({"active", "draft", "on-hold", "intended"})


def evaluate_medications(ev: Evaluation, medications: Sequence[Mapping[str, Any]]) -> None:
    rule = ev.rules.medications
    terminology = ev.knowledge.terminology
    category_urls = ev.knowledge.aggravating_category_urls
    for medication in medications:
        if not isinstance(medication, Mapping):
            continue
        status = medication.get("status")
        if not isinstance(status, str) or status not in ACTIVE_MEDICATION_STATUSES:
            continue
        codes = tuple(c for c in codings_of(medication.get("medicationCodeableConcept")) if c[0] == RXNORM)
        if not codes or not terminology.contains(rule.aggravating_value_set, codes):
            continue
        category = next((terminology.value_set_titles[u] for u in category_urls if terminology.contains(u, codes)), "")
        reference = f"{medication.get('resourceType', 'MedicationRequest')}/{medication.get('id', '?')}"
        # D21: the ingredient as the ValueSet displays it ("sertraline"), never its RxNorm code; the
        # category as its ValueSet's title is written ("SSRIs and SNRIs").
        ingredient = next(c for c in codes if terminology.contains(rule.aggravating_value_set, [c]))
        name = terminology.display_of(ingredient) or "a listed medicine"
        ev.add(
            "advisory",
            "aggravating-medication",
            rule.rule_id,
            rule.citations,
            [],
            note=f"{name} ({category or 'listed aggravator'}) may aggravate RLS symptoms.",
            extra_basis=(reference,),
        )
