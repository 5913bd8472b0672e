"""The default patient-view answer: one card for the whole screen (RLS_SCREEN_CDS_CARD_MODE=one-card).

Order is ``rls_screen.priority`` (role from CodeSystem rls-finding: established causes first, then
related findings, a missing test, mimics and aggravators; medicines that may aggravate RLS rank after
every finding), so a new rule set's findings slot in as data. The summary names the first finding with
its value against its own threshold and says how many more; when a finding is potentially dangerous
(D20, indicator critical) and the first one is not, the summary names the dangerous one instead, so the
summary always explains the card's indicator. The indicator is the highest of the findings'. The detail
is a table of every finding (value, date, threshold, lab range, guideline), then per finding what the
per-finding cards say (notes, band, advice, caveats), pregnancy once, the sources and the disclaimer.
The iron-studies suggestion stays on the card whenever iron studies are missing.

Feedback: the card's key is ``patient-view`` and its data signature covers every finding's code,
severity and the Observation versions it rests on. An override therefore means "this screen was
reviewed": the card stays hidden for that client and patient until anything it rests on changes (a new
or resolved finding, a new or amended result); then it comes back whole, because the EHR shows only
the latest card and the clinician needs the whole picture again.
"""

from __future__ import annotations

from collections.abc import Sequence

from rls_screen.cds.card_parts import CardDraft, Indicator, fit, indicator_for, md, raise_indicator
from rls_screen.cds.feedback import data_signature
from rls_screen.cds.finding_parts import FindingParts
from rls_screen.model import Assessment, Finding, ValueUsed
from rls_screen.priority import by_priority
from rls_screen.wording import (
    MEDICINE_RESULT,
    ONE_CARD_HEADING,
    ONE_CARD_ORDER,
    ONE_CARD_TABLE_HEADER,
    analyte_text,
    count_text,
    display_units,
    finding_head,
    more_findings_text,
    threshold_for,
    threshold_text,
    value_text,
)

ONE_CARD_KEY = "patient-view"
MEDICINE_ADVISORY = "aggravating-medication"


class OneCard(FindingParts):
    """Builds the one patient-view card of a call."""

    def one_card(self, assessment: Assessment) -> list[CardDraft]:
        medicines = [a for a in assessment.advisories if a.code == MEDICINE_ADVISORY]
        items = by_priority([*assessment.findings, *medicines], self._knowledge.terminology.concepts)
        if not items:
            return []
        indicator: Indicator = "info"
        for item in items:
            indicator = raise_indicator(indicator, self._indicator(item))
        headline = items[0]
        if indicator == "critical" and self._indicator(headline) != "critical":  # the summary explains the indicator
            headline = next(i for i in items if self._indicator(i) == "critical")
        citations = [c for item in items for c in item.citations]
        signature = data_signature(
            f"{item.code}:{item.severity or ''}:{self._item_signature(assessment, item)}" for item in items
        )
        missing = next((i for i in items if i.code == "missing-iron-studies"), None)
        suggestions = [self.iron_studies_suggestion(assessment, ONE_CARD_KEY, signature)] if missing else None
        return [
            self._card(
                key=ONE_CARD_KEY,
                topic=headline.code,
                rule_id=headline.rule_id,
                summary=self._summary(assessment, headline, len(items) - 1),
                detail="\n".join(self._detail(assessment, items)),
                indicator=indicator,
                signature=signature,
                citations=citations,
                suggestions=suggestions,
                smart=True,
            )
        ]

    # --- parts ------------------------------------------------------------------------------------

    @staticmethod
    def _indicator(item: Finding) -> Indicator:
        return "info" if item.code == MEDICINE_ADVISORY else indicator_for(item)

    def _item_signature(self, assessment: Assessment, item: Finding) -> str:
        if item.code == MEDICINE_ADVISORY:
            return data_signature(item.extra_basis[:1])
        return self._signature(assessment, item.basis)

    def _summary(self, assessment: Assessment, headline: Finding, others: int) -> str:
        if headline.code != MEDICINE_ADVISORY:
            return self.finding_summary(assessment, headline, others=others)
        note = (headline.note or headline.display).rstrip(".")
        more = more_findings_text(others)
        if more:
            return fit(f"{note} {more}", f"{headline.display} {more}")
        return fit(f"{note}; consider whether it is still needed", note)

    def _detail(self, assessment: Assessment, items: Sequence[Finding]) -> list[str]:
        heading = ONE_CARD_HEADING.format(count=count_text(len(items))) + (ONE_CARD_ORDER if len(items) > 1 else "")
        lines = [f"**{heading}** (rule set {self._rules.version})", ""]
        lines += self._table(assessment, items)
        lines += self._pregnancy_lines(assessment)
        for item in items:
            lines += self._section(assessment, item)
        lines += self._sources([c for item in items for c in item.citations])
        lines.append(self._disclaimer())
        return lines

    def _table(self, assessment: Assessment, items: Sequence[Finding]) -> list[str]:
        rows = ["| " + " | ".join(ONE_CARD_TABLE_HEADER) + " |", "|" + "---|" * len(ONE_CARD_TABLE_HEADER)]
        for item in items:
            name, guideline = self._name_cell(item), self._guideline_cell(item)
            if item.code == MEDICINE_ADVISORY:
                note = md((item.note or item.display).rstrip("."))
                rows.append(f"| {name} | {MEDICINE_RESULT} | {note} | - | - | - | {guideline} |")
                continue
            if item.code == "missing-iron-studies":  # its values are the study present, not the one missing
                rows.append(f"| {name} | - | {md(self._missing_iron_text(assessment))} | - | - | - | {guideline} |")
                continue
            if not item.values:
                _, threshold = self.value_and_threshold(assessment, item)
                rows.append(f"| {name} | - | - | - | {threshold or '-'} | - | {guideline} |")
                continue
            for n, value in enumerate(item.values):
                first = n == 0
                cells = (
                    name if first else "",
                    md(analyte_text(value.analyte)),
                    self._value_cell(value),
                    value.effective.isoformat(),
                    self._threshold_cell(assessment, item, value),
                    "; ".join(md(x) for x in (value.lab_reference_range, value.lab_interpretation) if x) or "-",
                    guideline if first else "",
                )
                rows.append("| " + " | ".join(cells) + " |")
        return [*rows, ""]

    def _name_cell(self, item: Finding) -> str:
        head = finding_head(item)
        url = self._rule_url(item.rule_id)
        return f"[{head}]({url})" if url else head

    def _guideline_cell(self, item: Finding) -> str:
        return self._constants.guideline_cell(item.citations)

    @staticmethod
    def _value_cell(value: ValueUsed) -> str:
        shown = md(value_text(value))
        return f"{shown} - {md(value.computed)}" if value.computed else shown

    @staticmethod
    def _threshold_cell(assessment: Assessment, item: Finding, value: ValueUsed) -> str:
        own = threshold_for(value, item.thresholds)  # D23: a value only against its own analyte's threshold
        text = threshold_text(own, named=False) if own else ""
        if item.code == "reduced-kidney-function" and assessment.gfr_category and value.analyte == "egfr":
            text = f"{text} (category {assessment.gfr_category})".strip()
        return text or "-"  # our own words from the rule set: no escaping needed

    def _section(self, assessment: Assessment, item: Finding) -> list[str]:
        url = self._rule_url(item.rule_id)
        rule = f"[{item.rule_id}]({url})" if url else item.rule_id
        lines = [f"**{finding_head(item)}** - rule {rule}", ""]
        if item.code == MEDICINE_ADVISORY:
            reference = item.extra_basis[0] if item.extra_basis else "MedicationRequest/?"
            note = display_units((item.note or item.display).rstrip("."))
            return [*lines, f"{md(note)} (active order {md(reference)}).", "", *self._advice_lines(item.code)]
        if item.code != "missing-iron-studies":
            lines += self._threshold_lines(item)
        return lines + self.finding_notes(assessment, item, pregnancy=False)
