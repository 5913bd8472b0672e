"""The parts every CDS card shares: indicator, summary fitting, markdown escaping, the card's
deterministic uuid (uuid5 of hookInstance + service + the scoped subject key + card key + data
signature, so the same call gives the same cards while two patients, issuers or tenants never share
a card uuid), source, links, override reasons, and the detail blocks (values table, thresholds,
advice, iron band, pregnancy, advisories, results not used, sources, disclaimer).

The words come from ``rls_screen.wording`` and the rule set; this module only lays them out.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from rls_screen.cds.card_constants import CardConstants
from rls_screen.cds.card_links import CardLinks
from rls_screen.cds.feedback import data_signature
from rls_screen.cds.markdown import md as md
from rls_screen.cds.models import Card, Link, Source, Suggestion
from rls_screen.knowledge import Knowledge
from rls_screen.model import Assessment, Finding, ValueUsed
from rls_screen.wording import (
    advice_for,
    advisory_text,
    analyte_text,
    equivalents_text,
    iron_band_text,
    pregnancy_text,
    threshold_groups,
    threshold_text,
    value_text,
)

Indicator = Literal["info", "warning", "critical"]
MAX_SUMMARY = 139  # CDS Hooks 2.0: "<140-character summary"
CARD_NAMESPACE = uuid.UUID("0b7f3c2e-5a61-4f0e-9d3c-2f8e6b1a7c54")

# Indicator: the finding's default, raised by its graded severity. Critical is kept for values that
# CTCAE grades 3-4 or WHO calls severe; nothing RLS-specific is critical.
BASE_INDICATOR: Mapping[str, Indicator] = {
    "iron-deficiency": "warning",
    "kidney-failure": "warning",
}
SEVERITY_INDICATOR: Mapping[str, Indicator] = {
    "grade-4": "critical",
    "grade-3": "critical",
    "severe": "critical",
    "grade-2": "warning",
    "moderate": "warning",
}
INDICATOR_ORDER = ("info", "warning", "critical")


# Advisories shown inside the card of the finding they qualify.
RELATED_ADVISORIES = {
    "iron-deficiency": (
        "ferritin-inflammation-caveat",
        "tsat-iron-overload-risk",
        "pediatric-iron-threshold",
        "dialysis-iv-iron-consideration",
    ),
    "iron-insufficient-for-rls": (
        "ferritin-inflammation-caveat",
        "tsat-iron-overload-risk",
        "high-ferritin-low-tsat",
        "pediatric-iron-threshold",
        "dialysis-iv-iron-consideration",
    ),
    "missing-iron-studies": ("ferritin-inflammation-caveat", "pediatric-iron-threshold"),
    "anemia": ("hemoglobin-altitude-smoking-caveat",),
    "reduced-kidney-function": ("egfr-chronicity-caveat", "egfr-computed-from-creatinine"),
    "kidney-failure": ("egfr-computed-from-creatinine", "dialysis-iv-iron-consideration"),
    "hypomagnesemia": ("electrolyte-not-established-cause",),
    "hypokalemia": ("electrolyte-not-established-cause",),
    "hyperkalemia": ("electrolyte-not-established-cause",),
    "hypocalcemia": ("electrolyte-not-established-cause",),
    "hypernatremia": ("mimic-not-established-cause",),
    "possible-dehydration": ("osmolality-not-dehydration", "mimic-not-established-cause"),
    "b12-deficiency": ("mimic-not-established-cause",),
    "b12-borderline": ("mimic-not-established-cause",),
    "folate-deficiency": ("mimic-not-established-cause",),
    "hba1c-diabetes-range": ("mimic-not-established-cause",),
    "hba1c-prediabetes-range": ("mimic-not-established-cause",),
    "alcohol-use-positive": ("mimic-not-established-cause", "caffeine-not-assessed"),
}
IRON_FINDINGS = ("iron-deficiency", "iron-insufficient-for-rls", "missing-iron-studies")
ELECTROLYTE_FINDINGS = ("hypomagnesemia", "hypokalemia", "hyperkalemia", "hypocalcemia", "hypernatremia")
IRON_ANALYTES = ("ferritin", "tsat", "iron", "tibc", "crp")


def fit(*candidates: str) -> str:
    """The first candidate that fits the summary limit, else the last one cut at a word."""
    for text in candidates:
        if len(text) <= MAX_SUMMARY:
            return text
    last = candidates[-1]
    return last[: MAX_SUMMARY - 1].rsplit(" ", 1)[0].rstrip(",;:") + "…"


def raise_indicator(indicator: Indicator, other: Indicator) -> Indicator:
    """The higher of two indicators (info < warning < critical)."""
    return indicator if INDICATOR_ORDER.index(indicator) >= INDICATOR_ORDER.index(other) else other


def indicator_for(finding: Finding) -> Indicator:
    base: Indicator = BASE_INDICATOR.get(finding.code, "info")
    severity = SEVERITY_INDICATOR.get(finding.severity or "")
    return raise_indicator(base, severity) if severity else base


@dataclass(frozen=True)
class CardDraft:
    """A card with what suppression needs: its key (finding or check) and the data it rests on."""

    key: str
    signature: str
    card: Card


class CardParts:
    """The shared parts of the cards of one call (one service, one hookInstance, one client's patient).

    ``subject`` is the feedback store's salted key of (issuer, tenant, patient id): it keeps card
    uuids apart across patients and clients without putting the patient id into them. ``constants``
    (the process's per-rule-set parts, ``card_constants``) is made here when the caller has none.
    """

    def __init__(
        self,
        knowledge: Knowledge,
        service_id: str,
        hook_instance: str,
        subject: str,
        *,
        links: CardLinks | None = None,
        constants: CardConstants | None = None,
    ) -> None:
        self._knowledge, self._service_id, self._hook_instance = knowledge, service_id, hook_instance
        self._subject = subject
        self._constants = constants or CardConstants(knowledge, links)
        self._rules = knowledge.ruleset
        self._advice = knowledge.ruleset.advice

    # --- shared parts -----------------------------------------------------------------------------

    def card_uuid(self, key: str, signature: str) -> str:
        name = f"{self._hook_instance}|{self._service_id}|{self._subject}|{key}|{signature}"
        return str(uuid.uuid5(CARD_NAMESPACE, name))

    def _source(self, code: str) -> Source:
        return self._constants.source(code)

    def _rule_url(self, rule_id: str) -> str | None:
        return self._constants.rule_url(rule_id)

    def _links(self, rule_id: str, citations: Iterable[str], *, smart: bool = False) -> list[Link] | None:
        return self._constants.links(rule_id, citations, smart=smart)

    def _card(
        self,
        *,
        key: str,
        topic: str,
        rule_id: str,
        summary: str,
        detail: str,
        indicator: Indicator,
        signature: str,
        citations: Iterable[str] = (),
        suggestions: list[Suggestion] | None = None,
        smart: bool = False,
    ) -> CardDraft:
        card = Card(
            uuid=self.card_uuid(key, signature),
            summary=summary,
            detail=detail,
            indicator=indicator,
            source=self._source(topic),
            suggestions=suggestions or None,
            selection_behavior="at-most-one" if suggestions else None,
            override_reasons=self._constants.override_reasons(),
            links=self._links(rule_id, citations, smart=smart),
        )
        return CardDraft(key=key, signature=signature, card=card)

    @staticmethod
    def _values_table(values: Sequence[ValueUsed]) -> list[str]:
        if not values:
            return []
        rows = ["| Result | Value | Date | Lab reference |", "|---|---|---|---|"]
        for value in values:
            lab = "; ".join(md(x) for x in (value.lab_reference_range, value.lab_interpretation) if x) or "-"
            shown = md(value_text(value))
            if value.computed:
                shown += f" - {md(value.computed)}"
            rows.append(f"| {md(analyte_text(value.analyte))} | {shown} | {value.effective.isoformat()} | {lab} |")
        return [*rows, ""]

    def _sources(self, citations: Iterable[str]) -> list[str]:
        return self._constants.sources(citations)

    @staticmethod
    def _threshold_lines(finding: Finding) -> list[str]:
        if not finding.thresholds:
            return []
        shown = ", ".join(  # D23: each threshold named by its own analyte ('TSAT < 20 %')
            f"{threshold_text(first)}{equivalents_text(rest)}" for first, *rest in threshold_groups(finding.thresholds)
        )
        return [f"**Threshold:** {shown}", ""]

    def _advice_lines(self, code: str) -> list[str]:
        advice = self._advice.get(code)
        return [advice, ""] if advice else []

    def _finding_advice_lines(self, finding: Finding) -> list[str]:
        advice = advice_for(finding, self._advice)
        return [advice, ""] if advice else []

    def _band_lines(self, assessment: Assessment) -> list[str]:
        return [f"**Iron therapy band:** {iron_band_text(assessment, self._advice)}.", ""]

    def _pregnancy_lines(self, assessment: Assessment) -> list[str]:
        """D12: pregnancy is an established aggravator of RLS; every card for a pregnant patient says so."""
        advisory = next((a for a in assessment.advisories if a.code == "pregnancy-aggravator"), None)
        if advisory is None:
            return []
        state = pregnancy_text(assessment)
        return [f"**{state[0].upper()}{state[1:]}:** {self._advice.get(advisory.code, advisory.display)}", ""]

    def _disclaimer(self) -> str:
        return self._constants.disclaimer

    @staticmethod
    def _signature(assessment: Assessment, references: Iterable[str]) -> str:
        versions = {r.reference: r.version_id or "-" for r in assessment.used_observations}
        return data_signature(f"{ref}/_history/{versions.get(ref, '-')}" for ref in references)

    def _advisory_lines(self, assessment: Assessment, codes: Sequence[str]) -> list[str]:
        lines = []
        for advisory in assessment.advisories:
            if advisory.code in codes:
                text = advisory_text(advisory, self._advice)
                said = text.startswith(advisory.display)  # the advice already opens with the advisory's name
                lines.append(f"- {text}" if said else f"- {advisory.display}: {text}")
        return [*dict.fromkeys(lines), ""] if lines else []

    def _missing_iron_text(self, assessment: Assessment) -> str:
        used = {r.analyte for r in assessment.used_observations}
        has_tsat = "tsat" in used or {"iron", "tibc"} <= used
        missing = [name for name, present in (("ferritin", "ferritin" in used), ("TSAT", has_tsat)) if not present]
        what = " or ".join(missing) if missing else "ferritin or TSAT"
        return f"no usable {what} in the last {self._rules.selection.window_days} days"

    def _short(self, citation_keys: Sequence[str]) -> str:
        """'AASM 2024': the rule set's short label(s) for citation keys."""
        return "; ".join(dict.fromkeys(self._rules.citations[key].short for key in citation_keys))

    def _not_evaluable_lines(self, assessment: Assessment, analytes: Sequence[str]) -> list[str]:
        lines = [
            f"- {analyte_text(item.analyte or 'result')}: {self._knowledge.terminology.display(item.reason)}"
            f" ({md(item.detail)})"
            for item in assessment.not_evaluable
            if item.analyte in analytes and item.reason != "missing"
        ]
        return ["**Results not used**", "", *lines, ""] if lines else []

    # --- patient-view -----------------------------------------------------------------------------
