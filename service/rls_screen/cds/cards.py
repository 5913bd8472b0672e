"""From an Assessment (and matched draft orders) to CDS Hooks cards: short, sourced, not alarmist.

patient-view: one card for the screen by default (``one_card``), or, with RLS_SCREEN_CDS_CARD_MODE=
per-finding, one card per finding (an override then silences exactly that finding for that patient).
Order checks: one card per matched draft order and check. Every card carries: a one-sentence
summary under 140 characters with the value, date and its own analyte's threshold (D23); an
indicator from the finding and its severity; markdown detail with values, dates, thresholds, the
lab's own range, caveats, what to consider (the rule set's ``advice``) and full citations; a
source; override reasons; links to the rule's page on this service and the guideline's DOI
(``card_links``); and a deterministic uuid (``card_parts``).

Wording follows docs/rules.md: iron deficiency, kidney failure and pregnancy are established
causes or aggravators of RLS; magnesium, potassium and calcium abnormalities are not: they mimic or
aggravate leg symptoms. The words come from ``rls_screen.wording``, the rule set (``advice``) and
the engine (``note``); this module only arranges them into cards, ``card_parts`` lays out their parts.
"""

from __future__ import annotations

from typing import Literal

from rls_screen.cds.card_constants import CardConstants
from rls_screen.cds.card_links import CardLinks
from rls_screen.cds.card_parts import (
    RELATED_ADVISORIES,
    CardDraft,
    fit,
    indicator_for,
    md,
)
from rls_screen.cds.feedback import data_signature
from rls_screen.cds.models import Action
from rls_screen.cds.one_card import OneCard
from rls_screen.cds.orders import Drug, OrderMatch
from rls_screen.cds.system_actions import system_actions
from rls_screen.knowledge import Knowledge
from rls_screen.model import Assessment, Finding
from rls_screen.wording import (
    analyte_text,
    finding_head,
    value_text,
)

ANTIDEPRESSANT_CATEGORIES = ("SSRIs and SNRIs", "Mirtazapine and tricyclic antidepressants")


CardMode = Literal["one-card", "per-finding"]


class CardBuilder(OneCard):
    """Builds the cards of one call: patient-view (one card, or one per finding), order checks, systemActions."""

    def __init__(
        self,
        knowledge: Knowledge,
        service_id: str,
        hook_instance: str,
        subject: str,
        *,
        links: CardLinks | None = None,
        mode: CardMode = "one-card",
        constants: CardConstants | None = None,
    ) -> None:
        super().__init__(knowledge, service_id, hook_instance, subject, links=links, constants=constants)
        self._mode = mode

    def patient_view(self, assessment: Assessment) -> list[CardDraft]:
        """RLS_SCREEN_CDS_CARD_MODE: one card for the screen (default), or one per finding."""
        if self._mode == "per-finding":
            return self.per_finding_cards(assessment)
        return self.one_card(assessment)

    # --- patient-view -----------------------------------------------------------------------------

    def finding_card(self, assessment: Assessment, finding: Finding) -> CardDraft:
        if finding.code == "missing-iron-studies":
            return self._missing_iron_card(assessment, finding)
        detail = [f"**{finding_head(finding)}** - rule {finding.rule_id}, rule set {finding.rule_set_version}", ""]
        detail += self._values_table(finding.values)
        detail += self._threshold_lines(finding)
        detail += self.finding_notes(assessment, finding, pregnancy=True)
        detail += self._sources(finding.citations)
        detail.append(self._disclaimer())
        return self._card(
            key=finding.code,
            topic=finding.code,
            rule_id=finding.rule_id,
            summary=self.finding_summary(assessment, finding),
            detail="\n".join(detail),
            indicator=indicator_for(finding),
            signature=self._signature(assessment, finding.basis),
            citations=finding.citations,
            smart=True,
        )

    def _missing_iron_card(self, assessment: Assessment, finding: Finding, *, drug: str | None = None) -> CardDraft:
        gap = self._missing_iron_text(assessment)
        cite = self._short(self._rules.iron.missing_studies.citations)
        if drug is None:
            summary = self.finding_summary(assessment, finding)
            key = finding.code
        else:
            summary = fit(
                f"Check iron before {drug} for RLS: {gap} ({cite})",
                f"Check iron before {drug} for RLS: no usable iron studies ({cite})",
                f"Check iron before this RLS drug: no usable iron studies ({cite})",
            )
            key = f"order-iron:{finding.code}"
        detail = [f"**{finding.display}** - rule {finding.rule_id}, rule set {finding.rule_set_version}", ""]
        detail += self.finding_notes(assessment, finding, pregnancy=True)
        detail += self._sources(finding.citations)
        detail.append(self._disclaimer())
        signature = self._signature(assessment, finding.basis)
        suggestion = self.iron_studies_suggestion(assessment, key, signature)
        return self._card(
            key=key,
            topic=finding.code,
            rule_id=finding.rule_id,
            summary=summary,
            detail="\n".join(detail),
            indicator="warning" if drug else "info",
            signature=signature,
            citations=finding.citations,
            suggestions=[suggestion],
            smart=drug is None,
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
            citations=advisory.citations,
            smart=True,
        )

    def per_finding_cards(self, assessment: Assessment) -> list[CardDraft]:
        """RLS_SCREEN_CDS_CARD_MODE=per-finding: one card per finding and per aggravating medicine."""
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
            f"{analyte_text(ferritin.analyte)} {value_text(ferritin)}"
            if ferritin
            else (f"{analyte_text(iron.values[0].analyte)} {value_text(iron.values[0])}" if iron.values else "")
        )
        cite = self._short(self._rules.medications.citations)
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
                f"{label} ({shown}): consider treating iron first; {name} ordered for RLS ({cite})",
                f"{label} ({shown}): consider iron therapy first ({cite})",
                f"{label}: consider iron therapy first ({cite})",
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
            citations=iron.citations,
        )

    def _augmentation_lines(self, drug: Drug) -> list[str]:
        if drug.kind != "dopaminergic":
            return []
        return [f"**Augmentation:** {self._advice.get('dopaminergic-augmentation-risk', '')}", ""]

    def augmentation_card(self, match: OrderMatch, drug: Drug) -> CardDraft:
        """A dopaminergic drug is ordered for RLS and iron is adequate: the augmentation caveat alone."""
        rule = self._rules.medications
        cite = self._short(rule.citations)
        summary = fit(
            f"{drug.ingredient.capitalize()} for RLS: dopaminergic drugs carry augmentation risk; "
            f"{cite} advises against standard use",
            f"{drug.ingredient.capitalize()} for RLS: augmentation risk ({cite})",
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
            citations=self._rules.cite(rule.citations),
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
            citations=self._rules.cite(rule.citations),
        )

    # --- systemActions ------------------------------------------------------------------------------

    def system_actions(self, assessment: Assessment) -> list[Action]:
        return system_actions(assessment, self._knowledge)
