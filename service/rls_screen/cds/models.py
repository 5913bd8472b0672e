"""The CDS Hooks 2.0 wire format as pydantic models: requests we accept, responses we send.

Fields are snake_case in Python and camelCase on the wire (an alias generator, as in the rule set);
requests accept only the wire names. ``FhirAuthorization`` is the exception the spec makes: its
fields are snake_case on the wire too.
Requests tolerate extra fields (the spec allows extensions and EHRs add more); what the service
relies on is checked strictly: ids are FHIR ids, ``hookInstance`` is a UUID, ``fhirAuthorization``
needs ``fhirServer`` (spec invariant cds-r-1). Responses are built from these models and serialised
without nulls: CDS Hooks omits an optional field rather than sending null.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, SecretStr, StringConstraints, model_validator
from pydantic.alias_generators import to_camel

FHIR_ID_PATTERN = r"^[A-Za-z0-9\-.]{1,64}$"
USER_REFERENCE_PATTERN = r"^(Practitioner|PractitionerRole|Patient|RelatedPerson)/[A-Za-z0-9\-.]{1,64}$"
MAX_DRAFT_ORDERS = 200
MAX_PREFETCH_KEYS = 20

FhirId = Annotated[str, StringConstraints(pattern=FHIR_ID_PATTERN)]
UserReference = Annotated[str, StringConstraints(pattern=USER_REFERENCE_PATTERN)]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=1024)]
Url = Annotated[str, StringConstraints(pattern=r"^https?://[^\s]{1,2040}$")]


class _Lenient(BaseModel):
    """Incoming objects: unknown fields are kept, not rejected (extensions, vendor additions)."""

    model_config = ConfigDict(extra="allow", alias_generator=to_camel, validate_by_alias=True, validate_by_name=False)


class _Strict(BaseModel):
    """Outgoing objects: only the fields the spec defines, built by field name, sent by alias."""

    model_config = ConfigDict(
        extra="forbid", alias_generator=to_camel, validate_by_name=True, validate_by_alias=True, serialize_by_alias=True
    )


# --- requests ------------------------------------------------------------------------------------


class FhirAuthorization(BaseModel):
    """The EHR's bearer token for its FHIR server: transient, never stored or logged."""

    model_config = ConfigDict(extra="allow")

    access_token: SecretStr = Field(min_length=1, max_length=16384)
    token_type: Annotated[str, StringConstraints(pattern=r"^[Bb][Ee][Aa][Rr][Ee][Rr]$")]
    expires_in: int | None = Field(default=None, ge=0)
    scope: str | None = Field(default=None, max_length=8192)
    subject: str | None = Field(default=None, max_length=1024)
    patient: FhirId | None = None


class BundleEntry(_Lenient):
    full_url: str | None = Field(default=None, max_length=2048)
    resource: dict[str, Any] | None = None


class DraftOrders(_Lenient):
    resource_type: Literal["Bundle"]
    entry: list[BundleEntry] = Field(default_factory=list, max_length=MAX_DRAFT_ORDERS)


class PatientViewContext(_Lenient):
    user_id: UserReference
    patient_id: FhirId
    encounter_id: FhirId | None = None


class OrderSelectContext(_Lenient):
    user_id: UserReference
    patient_id: FhirId
    encounter_id: FhirId | None = None
    selections: list[Annotated[str, StringConstraints(min_length=1, max_length=256)]] = Field(
        max_length=MAX_DRAFT_ORDERS
    )
    draft_orders: DraftOrders


class OrderSignContext(_Lenient):
    user_id: UserReference
    patient_id: FhirId
    encounter_id: FhirId | None = None
    draft_orders: DraftOrders


PrefetchValue = dict[str, Any] | None


class _HookRequest(_Lenient):
    hook_instance: UUID
    fhir_server: Url | None = None
    fhir_authorization: FhirAuthorization | None = None
    prefetch: dict[Annotated[str, StringConstraints(min_length=1, max_length=64)], PrefetchValue] | None = Field(
        default=None, max_length=MAX_PREFETCH_KEYS
    )

    @model_validator(mode="after")
    def _authorization_needs_server(self) -> _HookRequest:
        if self.fhir_authorization is not None and self.fhir_server is None:
            raise ValueError("fhirAuthorization requires fhirServer (CDS Hooks 2.0)")
        return self


class PatientViewRequest(_HookRequest):
    hook: Literal["patient-view"]
    context: PatientViewContext

    @model_validator(mode="after")
    def _token_patient_matches(self) -> PatientViewRequest:
        _check_token_patient(self.fhir_authorization, self.context.patient_id)
        return self


class OrderSelectRequest(_HookRequest):
    hook: Literal["order-select"]
    context: OrderSelectContext

    @model_validator(mode="after")
    def _token_patient_matches(self) -> OrderSelectRequest:
        _check_token_patient(self.fhir_authorization, self.context.patient_id)
        return self


class OrderSignRequest(_HookRequest):
    hook: Literal["order-sign"]
    context: OrderSignContext

    @model_validator(mode="after")
    def _token_patient_matches(self) -> OrderSignRequest:
        _check_token_patient(self.fhir_authorization, self.context.patient_id)
        return self


HookRequest = PatientViewRequest | OrderSelectRequest | OrderSignRequest


def _check_token_patient(authorization: FhirAuthorization | None, patient_id: str) -> None:
    if authorization is not None and authorization.patient is not None and authorization.patient != patient_id:
        raise ValueError("fhirAuthorization.patient differs from context.patientId")


class AcceptedSuggestion(_Lenient):
    id: ShortText


class FeedbackCoding(_Lenient):
    system: str | None = Field(default=None, max_length=1024)
    code: str | None = Field(default=None, max_length=256)
    display: str | None = Field(default=None, max_length=1024)


class OverrideReason(_Lenient):
    reason: FeedbackCoding | None = None
    user_comment: str | None = Field(default=None, max_length=4096)


class FeedbackItem(_Lenient):
    card: ShortText
    outcome: Literal["accepted", "overridden"]
    accepted_suggestions: list[AcceptedSuggestion] | None = Field(default=None, max_length=100)
    override_reason: OverrideReason | None = None
    outcome_timestamp: AwareDatetime

    @model_validator(mode="after")
    def _accepted_names_suggestions(self) -> FeedbackItem:
        if self.outcome == "accepted" and not self.accepted_suggestions:
            raise ValueError("acceptedSuggestions is required when outcome is 'accepted'")
        return self


class FeedbackRequest(_Lenient):
    feedback: list[FeedbackItem] = Field(min_length=1, max_length=100)


# --- responses -----------------------------------------------------------------------------------


class _Shared(_Strict):
    """Outgoing parts that many cards share (``card_constants``): frozen, so no card can change another's."""

    model_config = ConfigDict(frozen=True)


class Coding(_Shared):
    system: str
    code: str
    display: str


class Source(_Shared):
    label: str
    url: str | None = None
    icon: str | None = None
    topic: Coding | None = None


class Action(_Strict):
    type: Literal["create", "update", "delete"]
    description: str
    resource: dict[str, Any] | None = None
    resource_id: str | None = None

    @model_validator(mode="after")
    def _resource_for_type(self) -> Action:
        if self.type in ("create", "update") and self.resource is None:
            raise ValueError(f"a {self.type} action needs a resource")
        if self.type == "delete" and self.resource_id is None:
            raise ValueError("a delete action needs a resourceId")
        return self


class Suggestion(_Strict):
    label: str
    uuid: str | None = None
    is_recommended: bool | None = None
    actions: list[Action] | None = None


class Link(_Shared):
    label: str
    url: str
    type: Literal["absolute", "smart"]
    app_context: str | None = None
    autolaunchable: bool | None = None

    @model_validator(mode="after")
    def _app_context_only_for_smart(self) -> Link:
        if self.app_context is not None and self.type != "smart":
            raise ValueError("appContext is only valid for smart links")
        return self


class Card(_Strict):
    uuid: str | None = None
    summary: Annotated[str, StringConstraints(min_length=1, max_length=139)]
    detail: str | None = None
    indicator: Literal["info", "warning", "critical"]
    source: Source
    suggestions: list[Suggestion] | None = None
    selection_behavior: Literal["at-most-one", "any"] | None = None
    override_reasons: list[Coding] | None = None
    links: list[Link] | None = None

    @model_validator(mode="after")
    def _suggestions_need_selection_behavior(self) -> Card:
        if self.suggestions and self.selection_behavior is None:
            raise ValueError("suggestions require selectionBehavior")
        return self


class CdsResponse(_Strict):
    cards: list[Card]
    system_actions: list[Action] | None = None


class ServiceDescriptor(_Strict):
    hook: str
    title: str | None = None
    description: str
    id: str
    prefetch: dict[str, str] | None = None
    usage_requirements: str | None = None


class Discovery(_Strict):
    services: list[ServiceDescriptor]


class OperationOutcomeIssue(_Strict):
    severity: Literal["fatal", "error", "warning", "information"]
    code: str
    diagnostics: str | None = None


class OperationOutcome(_Strict):
    resource_type: Literal["OperationOutcome"] = "OperationOutcome"
    issue: list[OperationOutcomeIssue]


class Health(_Strict):
    status: str
    checks: dict[str, str] | None = None
