"""From an Assessment (and matched draft orders) to CDS Hooks cards: short, sourced, not alarmist.

One card per finding (so an override silences exactly that finding for that patient), plus one per
matched draft order. Every card carries: a one-sentence summary under 140 characters with the
value, date and threshold; an indicator from the finding and its severity (table below); markdown
detail with values, dates, thresholds, the lab's own range, caveats, what to consider (the rule
set's ``advice``) and full citations; a source (label, rule documentation URL, topic = our finding
code); override reasons; a link to the rule documentation; and a deterministic uuid (uuid5 of
hookInstance + service + the scoped subject key + card key + data signature), so the same call gives
the same cards, while two patients, or two issuers or tenants, never share a card uuid even when an
EHR reuses a hookInstance (feedback names a card by its uuid alone).

Wording follows docs/rules.md: iron deficiency, kidney failure and pregnancy are established
causes or aggravators of RLS; magnesium, potassium and calcium abnormalities are not: they mimic or
aggravate leg symptoms. The clinical sentences come from the rule set (``advice``) and the engine
(``note``); this module only arranges them.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from rls_screen import __version__
from rls_screen.cds.feedback import data_signature
from rls_screen.cds.models import Action, Card, Coding, Link, Source, Suggestion
from rls_screen.cds.orders import Drug, OrderMatch
from rls_screen.codesets import FINDING_SYSTEM, OVERRIDE_REASON_SYSTEM
from rls_screen.knowledge import Knowledge
from rls_screen.model import Assessment, Finding, Threshold, ValueUsed
from rls_screen.quantities import format_number
from rls_screen.report import (
    advice_for,
    equivalents_text,
    iron_band_text,
    pregnancy_text,
    short_source,
    threshold_groups,
)
from rls_screen.writeback import (
    DEVICE_ID_SYSTEM,
    DEVICE_IDENTIFIER,
    RISK_ASSESSMENT_ID_SYSTEM,
    build_flag,
    build_risk_assessment,
    build_service_request,
    risk_assessment_identifier,
    to_json,
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

# Why the finding matters in RLS, in docs/rules.md's own terms (summary line only).
RLS_RELEVANCE = {
    "iron-deficiency": "an established, treatable aggravator of RLS",
    "iron-insufficient-for-rls": "AASM 2024: iron therapy may be considered for RLS",
    # the engine's advice entry for the patient's context (D10-D13, D26) picks these when present
    "iron-insufficient-for-rls.child": "AASM 2024: oral iron may be considered for RLS",
    "iron-insufficient-for-rls.pregnancy": "oral iron may be considered for RLS; no IV iron in the first trimester",
    "iron-insufficient-for-rls.dialysis": "AASM 2024: IV iron sucrose may be considered on dialysis",
    "iron-insufficient-for-rls.not-indicated": "iron therapy for RLS is not indicated at these values",
    "iron-insufficient-for-rls.indeterminate": "whether iron therapy is indicated cannot be determined",
    "anemia": "consider the cause; iron deficiency is common and aggravates RLS",
    "reduced-kidney-function": "associated with RLS; one result cannot show chronicity",
    "kidney-failure": "an established secondary cause of RLS",
    "hypomagnesemia": "may mimic or aggravate leg symptoms; not an established RLS cause",
    "hypokalemia": "may mimic or aggravate leg symptoms; not an established RLS cause",
    "hyperkalemia": "may mimic or aggravate leg symptoms; not an established RLS cause",
    "hypocalcemia": "may mimic or aggravate leg symptoms; not an established RLS cause",
}
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
}
IRON_FINDINGS = ("iron-deficiency", "iron-insufficient-for-rls", "missing-iron-studies")
ELECTROLYTE_FINDINGS = ("hypomagnesemia", "hypokalemia", "hyperkalemia", "hypocalcemia")
IRON_ANALYTES = ("ferritin", "tsat", "iron", "tibc", "crp")
ANALYTE_NAMES = {
    "egfr": "eGFR",
    "tsat": "TSAT",
    "tibc": "TIBC",
    "crp": "CRP",
    "calcium-total": "calcium (total)",
    "calcium-ionized": "calcium (ionized)",
    "calcium-corrected": "calcium (albumin-corrected)",
    "pregnancy-status": "pregnancy status",
    "gestational-age": "gestational age",
}
UNIT_NAMES = {"mL/min/{1.73_m2}": "mL/min/1.73 m2", "%": "%"}
SEVERITY_NAMES = {
    "grade-1-2": "CTCAE grade 1-2",
    "grade-1": "CTCAE grade 1",
    "grade-2": "CTCAE grade 2",
    "grade-3": "CTCAE grade 3",
    "grade-4": "CTCAE grade 4",
}
ANTIDEPRESSANT_CATEGORIES = ("SSRIs and SNRIs", "Mirtazapine and tricyclic antidepressants")
DISCLAIMER = (
    "_Decision support from rls-screen (rule set {version}); it supports clinical judgement and makes no diagnosis._"
)
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|<>~])")


def md(text: str) -> str:
    """Escape data-derived text (lab strings, order names) so it cannot inject markdown or links."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(text.split()))


def fit(*candidates: str) -> str:
    """The first candidate that fits the summary limit, else the last one cut at a word."""
    for text in candidates:
        if len(text) <= MAX_SUMMARY:
            return text
    last = candidates[-1]
    return last[: MAX_SUMMARY - 1].rsplit(" ", 1)[0].rstrip(",;:") + "…"


def analyte_name(analyte: str) -> str:
    return ANALYTE_NAMES.get(analyte, analyte)


def unit_name(unit: str) -> str:
    return UNIT_NAMES.get(unit, unit)


def value_text(value: ValueUsed) -> str:
    if value.computed:
        return f"{value.value.display(1)} {unit_name(value.unit)} (computed)"
    return (
        value.reported.replace(value.unit, unit_name(value.unit))
        if value.reported
        else (f"{value.value.display()} {unit_name(value.unit)}")
    )


def threshold_text(threshold: Threshold) -> str:
    return f"{threshold.comparator} {format_number(threshold.value)} {unit_name(threshold.unit)}"


def _raise(indicator: Indicator, other: Indicator) -> Indicator:
    return indicator if INDICATOR_ORDER.index(indicator) >= INDICATOR_ORDER.index(other) else other


def indicator_for(finding: Finding) -> Indicator:
    base: Indicator = BASE_INDICATOR.get(finding.code, "info")
    severity = SEVERITY_INDICATOR.get(finding.severity or "")
    return _raise(base, severity) if severity else base


@dataclass(frozen=True)
class CardDraft:
    """A card with what suppression needs: its key (finding or check) and the data it rests on."""

    key: str
    signature: str
    card: Card


class CardBuilder:
    """Builds the cards of one call (one service, one hookInstance, one client's patient).

    ``subject`` is the feedback store's salted key of (issuer, tenant, patient id): it keeps card
    uuids apart across patients and clients without putting the patient id into them.
    """

    def __init__(self, knowledge: Knowledge, service_id: str, hook_instance: str, subject: str) -> None:
        self._knowledge, self._service_id, self._hook_instance = knowledge, service_id, hook_instance
        self._subject = subject
        self._rules = knowledge.ruleset
        self._advice = knowledge.ruleset.advice

    # --- shared parts -----------------------------------------------------------------------------

    def card_uuid(self, key: str, signature: str) -> str:
        name = f"{self._hook_instance}|{self._service_id}|{self._subject}|{key}|{signature}"
        return str(uuid.uuid5(CARD_NAMESPACE, name))

    def _source(self, code: str) -> Source:
        return Source(
            label=f"rls-screen, rule set {self._rules.version}",
            url=self._rules.documentation_url,
            topic=Coding(system=FINDING_SYSTEM, code=code, display=self._knowledge.terminology.display(code)),
        )

    def _links(self, code: str, rule_id: str) -> list[Link]:
        return [
            Link(
                label=f"Rule {rule_id} (rule set {self._rules.version})",
                url=f"{self._rules.documentation_url}#{code}",
                type="absolute",
            )
        ]

    def _override_reasons(self) -> list[Coding]:
        reasons = self._knowledge.terminology.override_reasons  # CodeSystem-cds-override-reason.json
        return [Coding(system=OVERRIDE_REASON_SYSTEM, code=code, display=display) for code, display in reasons]

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
        suggestions: list[Suggestion] | None = None,
    ) -> CardDraft:
        card = Card(
            uuid=self.card_uuid(key, signature),
            summary=summary,
            detail=detail,
            indicator=indicator,
            source=self._source(topic),
            suggestions=suggestions or None,
            selection_behavior="at-most-one" if suggestions else None,
            override_reasons=self._override_reasons() or None,  # CDS Hooks: omit, never send empty
            links=self._links(topic, rule_id),
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
            rows.append(f"| {md(analyte_name(value.analyte))} | {shown} | {value.effective.isoformat()} | {lab} |")
        return [*rows, ""]

    def _sources(self, citations: Iterable[str]) -> list[str]:
        unique = list(dict.fromkeys(citations))
        if not unique:
            return []
        return ["**Sources**", "", *[f"{n}. {c}" for n, c in enumerate(unique, 1)], ""]

    @staticmethod
    def _threshold_lines(finding: Finding) -> list[str]:
        if not finding.thresholds:
            return []
        shown = ", ".join(
            f"{first.name} {threshold_text(first)}{equivalents_text(rest)}"
            for first, *rest in threshold_groups(finding.thresholds)
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
        return DISCLAIMER.format(version=self._rules.version)

    @staticmethod
    def _signature(assessment: Assessment, references: Iterable[str]) -> str:
        versions = {r.reference: r.version_id or "-" for r in assessment.used_observations}
        return data_signature(f"{ref}/_history/{versions.get(ref, '-')}" for ref in references)

    def _advisory_lines(self, assessment: Assessment, codes: Sequence[str]) -> list[str]:
        lines = []
        for advisory in assessment.advisories:
            if advisory.code in codes:
                text = advisory.note or self._advice.get(advisory.code, "")
                lines.append(f"- {advisory.display}: {text}")
        return [*dict.fromkeys(lines), ""] if lines else []

    def _missing_iron_text(self, assessment: Assessment) -> str:
        used = {r.analyte for r in assessment.used_observations}
        has_tsat = "tsat" in used or {"iron", "tibc"} <= used
        missing = [name for name, present in (("ferritin", "ferritin" in used), ("TSAT", has_tsat)) if not present]
        what = " or ".join(missing) if missing else "ferritin or TSAT"
        return f"no usable {what} in the last {self._rules.selection.window_days} days"

    def _not_evaluable_lines(self, assessment: Assessment, analytes: Sequence[str]) -> list[str]:
        lines = [
            f"- {analyte_name(item.analyte or 'result')}: {self._knowledge.terminology.display(item.reason)}"
            f" ({md(item.detail)})"
            for item in assessment.not_evaluable
            if item.analyte in analytes and item.reason != "missing"
        ]
        return ["**Results not used**", "", *lines, ""] if lines else []

    # --- patient-view -----------------------------------------------------------------------------

    def finding_card(self, assessment: Assessment, finding: Finding) -> CardDraft:
        if finding.code == "missing-iron-studies":
            return self._missing_iron_card(assessment, finding)
        at_least = " or higher" if finding.severity_at_least else ""  # D20: a grade implied by a bound
        severity = f" ({SEVERITY_NAMES.get(finding.severity, finding.severity)}{at_least})" if finding.severity else ""
        head = f"{finding.display}{severity}"
        relevance = RLS_RELEVANCE.get(finding.advice_key or finding.code, RLS_RELEVANCE.get(finding.code, ""))
        dangerous = self._rules.electrolytes.potentially_dangerous
        critical = finding.code in ELECTROLYTE_FINDINGS and finding.severity in dangerous.severities
        if critical:
            relevance = dangerous.summary  # D20: worded as potentially dangerous
        value = finding.values[0] if finding.values else None
        if finding.code == "reduced-kidney-function" and assessment.gfr_category:
            threshold = f"category {assessment.gfr_category}"
        elif finding.thresholds:
            threshold = threshold_text(finding.thresholds[0])
        else:
            threshold = ""
        measured = f"{analyte_name(value.analyte)} {value_text(value)}" if value else ""
        dated = f" on {value.effective.isoformat()}" if value else ""
        bracket = f" ({threshold})" if threshold else ""
        if measured:
            summary = fit(
                f"{head}: {measured}{dated}{bracket}; {relevance}",
                f"{head}: {measured}{bracket}; {relevance}",
                *([f"{head}: {measured}; {relevance}"] if critical else []),
                f"{head}: {measured}{dated}{bracket}",
                f"{head}: {measured}",
            )
        else:
            note = finding.note or ""
            summary = fit(f"{head}: {note.rstrip('.')}; {relevance}", f"{head}; {relevance}", head)
        detail = [f"**{head}** - rule {finding.rule_id}, rule set {finding.rule_set_version}", ""]
        detail += self._values_table(finding.values)
        detail += self._threshold_lines(finding)
        if finding.note:
            detail += [finding.note, ""]
        detail += self._pregnancy_lines(assessment)
        if finding.code in IRON_FINDINGS:
            detail += self._band_lines(assessment)
        detail += self._finding_advice_lines(finding)
        detail += self._advisory_lines(assessment, RELATED_ADVISORIES.get(finding.code, ()))
        if finding.code in IRON_FINDINGS:
            detail += self._not_evaluable_lines(assessment, IRON_ANALYTES)
        detail += self._sources(finding.citations)
        detail.append(self._disclaimer())
        return self._card(
            key=finding.code,
            topic=finding.code,
            rule_id=finding.rule_id,
            summary=summary,
            detail="\n".join(detail),
            indicator=indicator_for(finding),
            signature=self._signature(assessment, finding.basis),
        )

    def _missing_iron_card(self, assessment: Assessment, finding: Finding, *, drug: str | None = None) -> CardDraft:
        gap = self._missing_iron_text(assessment)
        if drug is None:
            summary = fit(
                f"Iron studies missing: {gap}; AASM 2024 advises them for every patient with RLS",
                f"Iron studies missing: {gap} (AASM 2024)",
            )
            key = finding.code
        else:
            summary = fit(
                f"Check iron before {drug} for RLS: {gap} (AASM 2024)",
                f"Check iron before {drug} for RLS: no usable iron studies (AASM 2024)",
                "Check iron before this RLS drug: no usable iron studies (AASM 2024)",
            )
            key = f"order-iron:{finding.code}"
        detail = [f"**{finding.display}** - rule {finding.rule_id}, rule set {finding.rule_set_version}", ""]
        detail += [gap[0].upper() + gap[1:] + ".", ""]
        detail += self._pregnancy_lines(assessment)
        detail += self._advice_lines(finding.code)
        detail += self._advisory_lines(assessment, RELATED_ADVISORIES[finding.code])
        detail += self._not_evaluable_lines(assessment, IRON_ANALYTES)
        detail += self._sources(finding.citations)
        detail.append(self._disclaimer())
        signature = self._signature(assessment, finding.basis)
        suggestion = self._iron_studies_suggestion(assessment, key, signature)
        return self._card(
            key=key,
            topic=finding.code,
            rule_id=finding.rule_id,
            summary=summary,
            detail="\n".join(detail),
            indicator="warning" if drug else "info",
            signature=signature,
            suggestions=[suggestion],
        )

    def _iron_studies_suggestion(self, assessment: Assessment, key: str, signature: str) -> Suggestion:
        request = to_json(
            build_service_request(
                assessment,
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

    def aggravating_medication_card(self, assessment: Assessment, advisory: Finding) -> CardDraft:
        reference = advisory.extra_basis[0] if advisory.extra_basis else "MedicationRequest/?"
        note = (advisory.note or "This medicine may aggravate RLS symptoms.").rstrip(".")
        summary = fit(f"{note}; consider whether it is still needed", note)
        detail = [
            f"**{advisory.display}** - rule {advisory.rule_id}, rule set {advisory.rule_set_version}",
            "",
            f"{md(note)} (active order {md(reference)}).",
            "",
            *self._pregnancy_lines(assessment),
            *self._advice_lines(advisory.code),
            *self._sources(advisory.citations),
            self._disclaimer(),
        ]
        return self._card(
            key=f"aggravating-medication:{reference}",
            topic=advisory.code,
            rule_id=advisory.rule_id,
            summary=summary,
            detail="\n".join(detail),
            indicator="info",
            signature=data_signature([reference]),
        )

    def patient_view(self, assessment: Assessment) -> list[CardDraft]:
        drafts = [self.finding_card(assessment, finding) for finding in assessment.findings]
        drafts += [
            self.aggravating_medication_card(assessment, advisory)
            for advisory in assessment.advisories
            if advisory.code == "aggravating-medication"
        ]
        return drafts

    # --- order-select / order-sign ------------------------------------------------------------------

    def _match_lines(self, match: OrderMatch) -> list[str]:
        code = f" {match.code}" if match.code else ""
        drugs = ", ".join(f"{d.ingredient} ({d.category})" for d in match.drugs)
        return [f"**Order:** {md(match.order.name)} - matched by {match.matched_by}{code}: {drugs}.", ""]

    def iron_first_card(self, assessment: Assessment, match: OrderMatch, drug: Drug, iron: Finding) -> CardDraft:
        """An RLS drug is being ordered while iron studies are missing or iron is low (AASM 2024: iron first)."""
        name = drug.ingredient
        if iron.code == "missing-iron-studies":
            draft = self._missing_iron_card(assessment, iron, drug=name)
            combined = "\n".join([*self._match_lines(match), *self._augmentation_lines(drug), draft.card.detail or ""])
            return CardDraft(draft.key, draft.signature, draft.card.model_copy(update={"detail": combined}))
        ferritin = next((v for v in iron.values if v.analyte == "ferritin"), None)
        shown = (
            f"ferritin {value_text(ferritin)}"
            if ferritin
            else (f"{analyte_name(iron.values[0].analyte)} {value_text(iron.values[0])}" if iron.values else "")
        )
        label = "Iron deficiency" if iron.code == "iron-deficiency" else "Iron below the RLS target"
        if assessment.iron_band in ("not-indicated", "indeterminate"):  # D10, D26: never suggest iron therapy
            verdict = "not indicated" if assessment.iron_band == "not-indicated" else "undetermined"
            summary = fit(
                f"{label} ({shown}), but iron therapy is {verdict}; {name} ordered for RLS (see detail)",
                f"{label} ({shown}): iron therapy {verdict} (see detail)",
                f"{label}: iron therapy {verdict}",
            )
        else:
            summary = fit(
                f"{label} ({shown}): consider treating iron first; {name} ordered for RLS (AASM 2024)",
                f"{label} ({shown}): consider iron therapy first (AASM 2024)",
                f"{label}: consider iron therapy first (AASM 2024)",
            )
        detail = [*self._match_lines(match)]
        detail += [f"**{iron.display}** - rule {iron.rule_id}, rule set {iron.rule_set_version}", ""]
        detail += self._values_table(iron.values)
        detail += self._threshold_lines(iron)
        detail += self._pregnancy_lines(assessment)
        detail += self._band_lines(assessment)
        detail += self._finding_advice_lines(iron)
        detail += self._augmentation_lines(drug)
        detail += self._advisory_lines(assessment, RELATED_ADVISORIES[iron.code])
        detail += self._sources(iron.citations)
        detail.append(self._disclaimer())
        return self._card(
            key=f"order-iron:{iron.code}",
            topic=iron.code,
            rule_id=iron.rule_id,
            summary=summary,
            detail="\n".join(detail),
            indicator="warning",
            signature=self._signature(assessment, iron.basis),
        )

    def _augmentation_lines(self, drug: Drug) -> list[str]:
        if drug.kind != "dopaminergic":
            return []
        return [f"**Augmentation:** {self._advice.get('dopaminergic-augmentation-risk', '')}", ""]

    def augmentation_card(self, match: OrderMatch, drug: Drug) -> CardDraft:
        """A dopaminergic drug is ordered for RLS and iron is adequate: the augmentation caveat alone."""
        rule = self._rules.medications
        summary = fit(
            f"{drug.ingredient.capitalize()} for RLS: dopaminergic drugs carry augmentation risk; "
            "AASM 2024 advises against standard use",
            f"{drug.ingredient.capitalize()} for RLS: augmentation risk (AASM 2024)",
        )
        detail = [
            *self._match_lines(match),
            *self._augmentation_lines(drug),
            *self._sources(self._rules.cite(rule.citations)),
            self._disclaimer(),
        ]
        return self._card(
            key=f"dopaminergic-augmentation-risk:{drug.ingredient}",
            topic="dopaminergic-augmentation-risk",
            rule_id=rule.rule_id,
            summary=summary,
            detail="\n".join(detail),
            indicator="info",
            signature=data_signature([drug.ingredient_code]),
        )

    def aggravating_order_card(self, match: OrderMatch, drug: Drug) -> CardDraft:
        rule = self._rules.medications
        summary = fit(
            f"{drug.ingredient.capitalize()} may aggravate RLS ({drug.category}); "
            "consider whether an alternative is suitable",
            f"{drug.ingredient.capitalize()} may aggravate RLS; consider an alternative",
        )
        detail = [*self._match_lines(match)]
        detail += [
            f"**{drug.ingredient.capitalize()}** ({drug.category}) is listed among the medicines that may "
            f"aggravate RLS (rule {rule.rule_id}, rule set {self._rules.version}).",
            "",
            *self._advice_lines("aggravating-medication"),
        ]
        if drug.category in ANTIDEPRESSANT_CATEGORIES:
            detail += ["Bupropion is not listed as an aggravator of RLS.", ""]
        detail += [*self._sources(self._rules.cite(rule.citations)), self._disclaimer()]
        return self._card(
            key=f"aggravating-medication:{drug.ingredient}",
            topic="aggravating-medication",
            rule_id=rule.rule_id,
            summary=summary,
            detail="\n".join(detail),
            indicator="warning",
            signature=data_signature([drug.ingredient_code]),
        )

    # --- systemActions ------------------------------------------------------------------------------

    def system_actions(self, assessment: Assessment) -> list[Action]:
        """The write-back RiskAssessment and one Flag per finding, as create actions.

        The EHR holds neither our Device nor (yet) the RiskAssessment, so references to them are
        logical (by identifier), not literal.
        """
        if not assessment.findings:
            return []
        terminology = self._knowledge.terminology
        device: dict[str, Any] = {
            "identifier": {"system": DEVICE_ID_SYSTEM, "value": DEVICE_IDENTIFIER},
            "display": f"rls-screen {__version__}",
        }
        ra_identifier = risk_assessment_identifier(assessment)
        ra_reference: dict[str, Any] = {
            "type": "RiskAssessment",
            "identifier": {"system": RISK_ASSESSMENT_ID_SYSTEM, "value": ra_identifier},
        }
        risk = to_json(build_risk_assessment(assessment, terminology, self._advice, "Device/rls-screen"))
        risk["performer"] = device
        actions = [
            Action(
                type="create",
                description=f"Record the RLS secondary-cause screen ({len(assessment.findings)} finding(s))",
                resource=risk,
            )
        ]
        for finding in assessment.findings:
            flag = to_json(
                build_flag(
                    assessment,
                    finding,
                    terminology,
                    device_ref="Device/rls-screen",
                    risk_assessment_ref="RiskAssessment/placeholder",
                    start=assessment.as_of,
                )
            )
            flag["author"] = device
            for extension in flag.get("extension", []):
                if "valueReference" in extension:
                    extension["valueReference"] = ra_reference
            actions.append(
                Action(
                    type="create",
                    description=f"Flag: {finding.display} ({short_source(finding.citations[0])})"
                    if finding.citations
                    else f"Flag: {finding.display}",
                    resource=flag,
                )
            )
        return actions
