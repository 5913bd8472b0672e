"""What every patient-view card says about one finding: its summary sentence, the value a summary shows
first against its own threshold (D23), whether it is potentially dangerous (D20), the notes after its
values, and the iron-studies suggestion. Shared by the one-card layout (``one_card``) and the
per-finding cards (``cards``), so both modes say one finding the same way.
"""

from __future__ import annotations

import uuid

from rls_screen.cds.card_parts import (
    CARD_NAMESPACE,
    ELECTROLYTE_FINDINGS,
    IRON_ANALYTES,
    IRON_FINDINGS,
    RELATED_ADVISORIES,
    CardParts,
    fit,
)
from rls_screen.cds.models import Action, Suggestion
from rls_screen.model import Assessment, Finding, ValueUsed
from rls_screen.wording import (
    analyte_text,
    display_units,
    finding_head,
    more_findings_text,
    rls_relevance,
    threshold_for,
    threshold_text,
    unit_text,
    value_text,
)
from rls_screen.writeback import (
    DEVICE_IDENTIFIER,
    build_service_request,
    risk_assessment_identifier,
    to_json,
)


class FindingParts(CardParts):
    """The per-finding words and parts of a patient-view card."""

    def finding_summary(self, assessment: Assessment, finding: Finding, *, others: int = 0) -> str:
        """One sentence under 140 characters: the finding, its value against its own threshold (D23), why
        it matters in RLS; with ``others`` (the one card), '+ 3 more RLS-relevant findings' instead of the
        why, except for a potentially dangerous finding (D20), which keeps saying so."""
        more = more_findings_text(others)
        if finding.code == "missing-iron-studies":
            gap, cite = self._missing_iron_text(assessment), self._short(self._rules.iron.missing_studies.citations)
            if more:
                return fit(f"Iron studies missing: {gap} {more}", f"Iron studies missing {more}")
            return fit(
                f"Iron studies missing: {gap}; {cite} advises them for every patient with RLS",
                f"Iron studies missing: {gap} ({cite})",
            )
        head = finding_head(finding)
        relevance = rls_relevance(finding)
        critical = self.is_critical(finding)
        if critical:
            relevance = self._rules.electrolytes.potentially_dangerous.summary  # D20: worded as potentially dangerous
        value, threshold = self.value_and_threshold(assessment, finding)
        measured = f"{analyte_text(value.analyte)} {value_text(value)}" if value else ""
        if more and value and not value.computed:  # the short form: the value in the threshold's own unit
            measured = f"{analyte_text(value.analyte)} {value.value.display()} {unit_text(value.unit)}"
        dated = f" on {value.effective.isoformat()}" if value else ""
        bracket = f" ({threshold})" if threshold else ""
        if more:
            short = more_findings_text(others, short=True)  # when the full close does not fit
            closing = f"; {relevance} {more}" if critical else f" {more}"
            short_closing = f"; {relevance} {short}" if critical else f" {short}"
            with_value = [f"{head}: {measured}{bracket}{closing}", f"{head}: {measured}{closing}"] if measured else []
            with_value += [f"{head}: {measured}{short_closing}", f"{head}: {measured} {more}"] if measured else []
            return fit(*with_value, f"{head}{closing}", f"{head} {more}")
        if measured:
            return fit(
                f"{head}: {measured}{dated}{bracket}; {relevance}",
                f"{head}: {measured}{bracket}; {relevance}",
                *([f"{head}: {measured}; {relevance}"] if critical else []),
                f"{head}: {measured}{dated}{bracket}",
                f"{head}: {measured}",
            )
        note = display_units(finding.note or "")
        return fit(f"{head}: {note.rstrip('.')}; {relevance}", f"{head}; {relevance}", head)

    def is_critical(self, finding: Finding) -> bool:
        """D20: an electrolyte at a CTCAE grade the rule set calls potentially dangerous."""
        dangerous = self._rules.electrolytes.potentially_dangerous
        return finding.code in ELECTROLYTE_FINDINGS and finding.severity in dangerous.severities

    def value_and_threshold(self, assessment: Assessment, finding: Finding) -> tuple[ValueUsed | None, str]:
        """The value a summary shows first and its own threshold's text (D23), or the GFR category."""
        value = finding.values[0] if finding.values else None
        own = threshold_for(value, finding.thresholds) if value else None
        if finding.code == "reduced-kidney-function" and assessment.gfr_category:
            return value, f"category {assessment.gfr_category}"
        if own:
            return value, threshold_text(own, named=False)
        if finding.thresholds and not value:
            return value, threshold_text(finding.thresholds[0])
        return value, ""

    def finding_notes(self, assessment: Assessment, finding: Finding, *, pregnancy: bool) -> list[str]:
        """What a finding's detail says after its values: the engine's note, pregnancy (once per card), the
        iron band, what to consider, the advisories that qualify it and the results not used."""
        if finding.code == "missing-iron-studies":
            gap = self._missing_iron_text(assessment)
            lines = [gap[0].upper() + gap[1:] + ".", ""]
            lines += self._pregnancy_lines(assessment) if pregnancy else []
            lines += self._advice_lines(finding.code)
            lines += self._advisory_lines(assessment, RELATED_ADVISORIES[finding.code])
            return lines + self._not_evaluable_lines(assessment, IRON_ANALYTES)
        lines = [display_units(finding.note), ""] if finding.note else []
        lines += self._pregnancy_lines(assessment) if pregnancy else []
        if finding.code in IRON_FINDINGS:
            lines += self._band_lines(assessment)
        lines += self._finding_advice_lines(finding)
        lines += self._advisory_lines(assessment, RELATED_ADVISORIES.get(finding.code, ()))
        if finding.code in IRON_FINDINGS:
            lines += self._not_evaluable_lines(assessment, IRON_ANALYTES)
        return lines

    def iron_studies_suggestion(self, assessment: Assessment, key: str, signature: str) -> Suggestion:
        request = to_json(
            build_service_request(
                assessment,
                rules=self._rules,
                device_ref=f"Device/{DEVICE_IDENTIFIER}",
                risk_assessment_ref=f"RiskAssessment/{risk_assessment_identifier(assessment)}",
                status="draft",
            )
        )
        # The EHR has neither our Device nor our RiskAssessment: the clinician who accepts becomes
        # the requester, and the links would dangle.
        request.pop("requester", None)
        request.pop("supportingInfo", None)
        return Suggestion(
            label="Order iron studies (ferritin, serum iron, TIBC, transferrin saturation)",
            uuid=str(uuid.uuid5(CARD_NAMESPACE, f"{self.card_uuid(key, signature)}|order-iron-studies")),
            is_recommended=True,
            actions=[
                Action(
                    type="create",
                    description="Propose a ferritin and iron panel (draft ServiceRequest, intent proposal)",
                    resource=request,
                )
            ],
        )
