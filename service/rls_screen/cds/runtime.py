"""One CDS call from request to response: data, engine, cards, suppression, feedback.

``CdsRuntime`` holds what lives for the process (knowledge, drug catalogue, feedback store, the
pooled HTTP session, the clock); ``call`` is synchronous and runs in a worker thread under the
request deadline (see ``app``). The clinical decision is the engine's (``evaluate``); this module
only decides which data to ask for, in which order, and which cards survive suppression.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rls_screen.assessment import assess
from rls_screen.cds.auth import VerifiedClient
from rls_screen.cds.card_constants import CardConstants
from rls_screen.cds.card_links import CardLinks
from rls_screen.cds.card_parts import CardDraft
from rls_screen.cds.cards import CardBuilder
from rls_screen.cds.feedback import FeedbackOutcome, FeedbackStore, IssuedCard, Scope, window_start
from rls_screen.cds.models import (
    Action,
    CdsResponse,
    DraftOrders,
    FeedbackRequest,
    HookRequest,
    OrderSelectRequest,
    OrderSignRequest,
    PatientViewRequest,
)
from rls_screen.cds.orders import DrugCatalog, OrderMatch, draft_medications
from rls_screen.cds.prefetch import FhirAccess, FhirAccessConfig, PatientDataResolver
from rls_screen.cds.services import ORDER_SELECT_SERVICE, ORDER_SIGN_SERVICE, PATIENT_VIEW_SERVICE
from rls_screen.cds.settings import CdsSettings
from rls_screen.codesets import value_set_url
from rls_screen.contract import CONDITIONS_KEY, CONTRACT_KEYS
from rls_screen.engine import is_active_condition
from rls_screen.knowledge import Knowledge
from rls_screen.model import Assessment
from rls_screen.observations import codings_of
from rls_screen.patient_data import group_resources
from rls_screen.references import PatientLink
from rls_screen.state import StateStoreError

RLS_CONDITION_VALUE_SET = value_set_url("rls-condition")
IRON_FINDING_PRIORITY = ("iron-deficiency", "iron-insufficient-for-rls", "missing-iron-studies")
log = logging.getLogger("rls_screen.cds")


@dataclass(frozen=True)
class CallOutcome:
    response: CdsResponse
    sources: Mapping[str, str]
    fhir_requests: int
    suppressed: int


def has_active_rls(conditions: Sequence[Mapping[str, Any]], knowledge: Knowledge, link: PatientLink) -> bool:
    """An active (not refuted) Condition of this patient (D1) coded in ValueSet rls-condition (SNOMED CT
    32914008, ICD-10-CM G25.81). Another patient's Condition in the prefetch never opens the gate."""
    terminology = knowledge.terminology
    for condition in conditions:
        if not link.links(condition):
            continue
        if not terminology.contains(RLS_CONDITION_VALUE_SET, codings_of(condition.get("code"))):
            continue
        if is_active_condition(condition):
            return True
    return False


AFTER_GATE_KEYS = tuple(key for key in CONTRACT_KEYS if key != CONDITIONS_KEY)
"""The keys read once the RLS gate is open (the Conditions were read for the gate): the data contract (D2)."""


def assess_call_data(resolver: PatientDataResolver, link: PatientLink, knowledge: Knowledge) -> Assessment:
    """The Assessment of a call's patient from the prefetch and fallback reads: every service reads the
    same data (the contract), so one patient gets one Assessment whichever hook asked."""
    resolver.fetch_missing(AFTER_GATE_KEYS)
    patient = resolver.patient()
    resources = [
        *resolver.conditions(),
        *resolver.observations(),
        *resolver.procedures(),
        *(resolver.medications() or []),
    ]
    return assess(group_resources(patient, resources, link=link), knowledge=knowledge, as_of=resolver.as_of)


class CdsRuntime:
    def __init__(
        self,
        *,
        knowledge: Knowledge,
        settings: CdsSettings,
        store: FeedbackStore,
        access_config: FhirAccessConfig,
        catalog: DrugCatalog,
        clock: Callable[[], datetime],
    ) -> None:
        self.knowledge, self.settings, self.store = knowledge, settings, store
        self.access_config, self.catalog, self.clock = access_config, catalog, clock
        self._last_prune = 0.0
        # what every call's cards share (source, links, override reasons): worked out once per process
        self.card_constants = CardConstants(knowledge, CardLinks(settings.public_url, settings.app_client_id))

    # --- entry points -----------------------------------------------------------------------------

    def call(
        self, service_id: str, request: HookRequest, client: VerifiedClient, deadline_at: float | None = None
    ) -> CallOutcome:
        """One hook call by ``client``; ``deadline_at`` (time.monotonic()) is when the app answers without cards."""
        now = self.clock()
        scope = self.store.scope(client.issuer, client.tenant, request.context.patient_id)
        token = request.fhir_authorization.access_token.get_secret_value() if request.fhir_authorization else None
        access = FhirAccess(self.access_config, request.fhir_server, token, deadline_at)
        resolver = PatientDataResolver(
            patient_id=request.context.patient_id,
            prefetch=request.prefetch,
            access=access,
            knowledge=self.knowledge,
            as_of=now.date(),
        )
        # D1: what names this patient here: Patient/<id>, or an absolute URL on this call's fhirServer
        link = PatientLink.of(request.context.patient_id, base_url=access.server)
        builder = CardBuilder(
            self.knowledge,
            service_id,
            str(request.hook_instance),
            scope.subject_key,
            mode=self.settings.cds_card_mode,
            constants=self.card_constants,
        )
        system_actions: list[Action] = []
        if isinstance(request, PatientViewRequest) and service_id == PATIENT_VIEW_SERVICE:
            drafts, system_actions = self._patient_view(resolver, builder, link)
        elif isinstance(request, OrderSelectRequest) and service_id == ORDER_SELECT_SERVICE:
            drafts = self._orders(resolver, builder, link, request.context.draft_orders, request.context.selections)
        elif isinstance(request, OrderSignRequest) and service_id == ORDER_SIGN_SERVICE:
            drafts = self._orders(resolver, builder, link, request.context.draft_orders, None)
        else:  # the app routes each service to its own request model; this is a wiring error
            raise RuntimeError(f"service {service_id} cannot take a {request.hook} request")
        access.check_deadline()  # cards nobody will see are not recorded as issued
        shown, suppressed = self._apply_suppression(service_id, scope, drafts, now)
        self._maybe_prune(now)
        response = CdsResponse(cards=[d.card for d in shown], system_actions=system_actions or None)
        return CallOutcome(response, dict(resolver.sources), resolver.access.requests_made, suppressed)

    def feedback(self, service_id: str, client: VerifiedClient, body: FeedbackRequest) -> FeedbackOutcome:
        """Feedback from ``client``: recorded only for cards this service issued to that same client."""
        client_key = self.store.client_key(client.issuer, client.tenant)
        return self.store.add_feedback(client_key, service_id, body.feedback, self.clock())

    # --- services ---------------------------------------------------------------------------------

    def _assess(self, resolver: PatientDataResolver, link: PatientLink) -> Assessment:
        return assess_call_data(resolver, link, self.knowledge)

    def _patient_view(
        self, resolver: PatientDataResolver, builder: CardBuilder, link: PatientLink
    ) -> tuple[list[CardDraft], list[Action]]:
        if not has_active_rls(resolver.conditions(), self.knowledge, link):
            return [], []
        assessment = self._assess(resolver, link)
        actions = builder.system_actions(assessment) if self.settings.cds_system_actions else []
        return builder.patient_view(assessment), actions

    def _orders(
        self,
        resolver: PatientDataResolver,
        builder: CardBuilder,
        link: PatientLink,
        draft_orders: DraftOrders,
        selections: Sequence[str] | None,
    ) -> list[CardDraft]:
        orders = draft_medications(draft_orders, selections, link)
        matches = [m for m in (self.catalog.match(o) for o in orders) if m]
        if not matches:
            return []
        rls = has_active_rls(resolver.conditions(), self.knowledge, link)
        rls_condition = self.knowledge.terminology.value_sets[RLS_CONDITION_VALUE_SET]
        drafts: list[CardDraft] = []
        assessment: Assessment | None = None
        for match in matches:
            for_rls = rls or any(coding in rls_condition for coding in match.order.reason_codings)
            if not for_rls:
                continue
            drafts.extend(self._aggravating_cards(builder, match))
            treatment = [d for d in match.drugs if d.kind in ("dopaminergic", "alpha2delta")]
            if not treatment:
                continue
            if assessment is None:
                assessment = self._assess(resolver, link)
            iron = next((f for code in IRON_FINDING_PRIORITY for f in assessment.findings if f.code == code), None)
            drug = treatment[0]
            if iron is not None:
                drafts.append(builder.iron_first_card(assessment, match, drug, iron))
            elif drug.kind == "dopaminergic":
                drafts.append(builder.augmentation_card(match, drug))
        return _unique_keys(drafts)

    @staticmethod
    def _aggravating_cards(builder: CardBuilder, match: OrderMatch) -> list[CardDraft]:
        return [builder.aggravating_order_card(match, d) for d in match.drugs if d.kind == "aggravating"]

    # --- suppression ------------------------------------------------------------------------------

    def _apply_suppression(
        self, service_id: str, scope: Scope, drafts: list[CardDraft], now: datetime
    ) -> tuple[list[CardDraft], int]:
        """Drop the cards this client overrode for this patient on this service; record the rest as issued.

        A state store that fails here (the JWT replay check passed a moment ago) never costs the clinician the
        cards: suppression fails open (every card is shown; an override only hides, never decides), and a card
        not recorded only means its feedback will be counted as ``unknown-card``. Both are logged.
        """
        if not drafts:
            return [], 0
        suppressed: set[str] = set()
        if self.settings.cds_override_suppression_days > 0:
            since = window_start(now, self.settings.cds_override_suppression_days)
            try:
                suppressed = self.store.suppressed(service_id, scope, [(d.key, d.signature) for d in drafts], since)
            except StateStoreError as error:
                log.warning("cds: state store failed; cards shown without override suppression (%s)", error)
        shown = [d for d in drafts if d.key not in suppressed]
        try:
            self.store.record_cards([_issued(service_id, scope, d) for d in shown], now)
        except StateStoreError as error:
            log.warning(
                "cds: state store failed; %d card(s) not recorded, their feedback will be ignored (%s)",
                len(shown),
                error,
            )
        return shown, len(drafts) - len(shown)

    def _maybe_prune(self, now: datetime) -> None:
        if time.monotonic() - self._last_prune < 3600:
            return
        self._last_prune = time.monotonic()
        try:
            self.store.prune(window_start(now, self.settings.cds_override_suppression_days + 30))
        except StateStoreError as error:  # pruning is housekeeping: retried within the hour
            log.warning("cds: state store failed while pruning issued cards (%s)", error)


def _issued(service_id: str, scope: Scope, draft: CardDraft) -> IssuedCard:
    card = draft.card
    return IssuedCard(
        uuid=card.uuid or "",
        service_id=service_id,
        scope=scope,
        card_key=draft.key,
        data_signature=draft.signature,
        override_reasons=tuple((r.system, r.code) for r in card.override_reasons or []),
        suggestion_ids=tuple(s.uuid for s in card.suggestions or [] if s.uuid),
    )


def _unique_keys(drafts: list[CardDraft]) -> list[CardDraft]:
    """One card per key (two orders of the same drug give one card)."""
    seen: dict[str, CardDraft] = {}
    for draft in drafts:
        seen.setdefault(draft.key, draft)
    return list(seen.values())
