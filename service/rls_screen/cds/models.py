"""The CDS Hooks 2.0 wire format as pydantic models: requests we accept, responses we send.

FHIR and CDS Hooks spell fields in camelCase, so these models do too (this module is the boundary).
Requests tolerate extra fields (the spec allows extensions and EHRs add more); what the service
relies on is checked strictly: ids are FHIR ids, ``hookInstance`` is a UUID, ``fhirAuthorization``
needs ``fhirServer`` (spec invariant cds-r-1). Responses are built from these models and serialised
without nulls: CDS Hooks omits an optional field rather than sending null.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, SecretStr, StringConstraints, model_validator

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

    model_config = ConfigDict(extra="allow")


class _Strict(BaseModel):
    """Outgoing objects: only the fields the spec defines."""

    model_config = ConfigDict(extra="forbid")


# --- requests ------------------------------------------------------------------------------------


class FhirAuthorization(_Lenient):
    """The EHR's bearer token for its FHIR server: transient, never stored or logged."""

    access_token: SecretStr = Field(min_length=1, max_length=16384)
    token_type: Annotated[str, StringConstraints(pattern=r"^[Bb][Ee][Aa][Rr][Ee][Rr]$")]
    expires_in: int | None = Field(default=None, ge=0)
    scope: str | None = Field(default=None, max_length=8192)
    subject: str | None = Field(default=None, max_length=1024)
    patient: FhirId | None = None


class BundleEntry(_Lenient):
    fullUrl: str | None = Field(default=None, max_length=2048)
    resource: dict[str, Any] | None = None


class DraftOrders(_Lenient):
    resourceType: Literal["Bundle"]
    entry: list[BundleEntry] = Field(default_factory=list, max_length=MAX_DRAFT_ORDERS)


class PatientViewContext(_Lenient):
    userId: UserReference
    patientId: FhirId
    encounterId: FhirId | None = None


class OrderSelectContext(_Lenient):
    userId: UserReference
    patientId: FhirId
    encounterId: FhirId | None = None
    selections: list[Annotated[str, StringConstraints(min_length=1, max_length=256)]] = Field(
        max_length=MAX_DRAFT_ORDERS
    )
    draftOrders: DraftOrders


class OrderSignContext(_Lenient):
    userId: UserReference
    patientId: FhirId
    encounterId: FhirId | None = None
    draftOrders: DraftOrders


PrefetchValue = dict[str, Any] | None


class _HookRequest(_Lenient):
    hookInstance: UUID
    fhirServer: Url | None = None
    fhirAuthorization: FhirAuthorization | None = None
    prefetch: dict[Annotated[str, StringConstraints(min_length=1, max_length=64)], PrefetchValue] | None = Field(
        default=None, max_length=MAX_PREFETCH_KEYS
    )

    @model_validator(mode="after")
    def _authorization_needs_server(self) -> _HookRequest:
        if self.fhirAuthorization is not None and self.fhirServer is None:
            raise ValueError("fhirAuthorization requires fhirServer (CDS Hooks 2.0)")
        return self


class PatientViewRequest(_HookRequest):
    hook: Literal["patient-view"]
    context: PatientViewContext

    @model_validator(mode="after")
    def _token_patient_matches(self) -> PatientViewRequest:
        _check_token_patient(self.fhirAuthorization, self.context.patientId)
        return self


class OrderSelectRequest(_HookRequest):
    hook: Literal["order-select"]
    context: OrderSelectContext

    @model_validator(mode="after")
    def _token_patient_matches(self) -> OrderSelectRequest:
        _check_token_patient(self.fhirAuthorization, self.context.patientId)
        return self


class OrderSignRequest(_HookRequest):
    hook: Literal["order-sign"]
    context: OrderSignContext

    @model_validator(mode="after")
    def _token_patient_matches(self) -> OrderSignRequest:
        _check_token_patient(self.fhirAuthorization, self.context.patientId)
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
    userComment: str | None = Field(default=None, max_length=4096)


class FeedbackItem(_Lenient):
    card: ShortText
    outcome: Literal["accepted", "overridden"]
    acceptedSuggestions: list[AcceptedSuggestion] | None = Field(default=None, max_length=100)
    overrideReason: OverrideReason | None = None
    outcomeTimestamp: AwareDatetime

    @model_validator(mode="after")
    def _accepted_names_suggestions(self) -> FeedbackItem:
        if self.outcome == "accepted" and not self.acceptedSuggestions:
            raise ValueError("acceptedSuggestions is required when outcome is 'accepted'")
        return self


class FeedbackRequest(_Lenient):
    feedback: list[FeedbackItem] = Field(min_length=1, max_length=100)


# --- responses -----------------------------------------------------------------------------------


class Coding(_Strict):
    system: str
    code: str
    display: str


class Source(_Strict):
    label: str
    url: str | None = None
    icon: str | None = None
    topic: Coding | None = None


class Action(_Strict):
    type: Literal["create", "update", "delete"]
    description: str
    resource: dict[str, Any] | None = None
    resourceId: str | None = None

    @model_validator(mode="after")
    def _resource_for_type(self) -> Action:
        if self.type in ("create", "update") and self.resource is None:
            raise ValueError(f"a {self.type} action needs a resource")
        if self.type == "delete" and self.resourceId is None:
            raise ValueError("a delete action needs a resourceId")
        return self


class Suggestion(_Strict):
    label: str
    uuid: str | None = None
    isRecommended: bool | None = None
    actions: list[Action] | None = None


class Link(_Strict):
    label: str
    url: str
    type: Literal["absolute", "smart"]
    appContext: str | None = None
    autolaunchable: bool | None = None

    @model_validator(mode="after")
    def _app_context_only_for_smart(self) -> Link:
        if self.appContext is not None and self.type != "smart":
            raise ValueError("appContext is only valid for smart links")
        return self


class Card(_Strict):
    uuid: str | None = None
    summary: Annotated[str, StringConstraints(min_length=1, max_length=139)]
    detail: str | None = None
    indicator: Literal["info", "warning", "critical"]
    source: Source
    suggestions: list[Suggestion] | None = None
    selectionBehavior: Literal["at-most-one", "any"] | None = None
    overrideReasons: list[Coding] | None = None
    links: list[Link] | None = None

    @model_validator(mode="after")
    def _suggestions_need_selection_behavior(self) -> Card:
        if self.suggestions and self.selectionBehavior is None:
            raise ValueError("suggestions require selectionBehavior")
        return self


class CdsResponse(_Strict):
    cards: list[Card]
    systemActions: list[Action] | None = None


class ServiceDescriptor(_Strict):
    hook: str
    title: str | None = None
    description: str
    id: str
    prefetch: dict[str, str] | None = None
    usageRequirements: str | None = None


class Discovery(_Strict):
    services: list[ServiceDescriptor]


class OperationOutcomeIssue(_Strict):
    severity: Literal["fatal", "error", "warning", "information"]
    code: str
    diagnostics: str | None = None


class OperationOutcome(_Strict):
    resourceType: Literal["OperationOutcome"] = "OperationOutcome"
    issue: list[OperationOutcomeIssue]


class Health(_Strict):
    status: str
    checks: dict[str, str] | None = None
