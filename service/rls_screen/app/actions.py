"""What the clinician can do in the app, with their own token: change a Flag, accept the iron-studies proposal.

Each action is one transaction: the changed or new resource and a Provenance naming the user (the
id_token's ``fhirUser``) as author, the reason in ``Provenance.reason``. Both are checked with the
server's ``$validate`` before the transaction is sent; the Flag is updated with ``If-Match`` on the
version the user saw, so a change made meanwhile is refused rather than overwritten. Only the
module's own resources (its identifier systems) of the patient in context can be changed.

- resolve: Flag.status ``inactive``, ``period.end`` today (docs/smart-app.md);
- entered-in-error: Flag.status ``entered-in-error`` (the flag was wrong; the period is kept);
- accept proposal: a new ServiceRequest ``intent=order``, ``status=draft``, ``basedOn`` the proposal,
  requester the user: a draft order for the EHR's ordering workflow to sign. The proposal is unchanged.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import urlsplit

from rls_screen.app.sessions import UserSession
from rls_screen.app.summary import orders_based_on
from rls_screen.errors import RlsScreenError
from rls_screen.fhir_client import FhirClient, validation_errors
from rls_screen.urls import is_under
from rls_screen.writeback import FLAG_ID_SYSTEM, SERVICE_REQUEST_ID_SYSTEM

FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
FLAG_ACTIONS = {"resolve": "inactive", "entered-in-error": "entered-in-error"}
DATA_OPERATION = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"
PARTICIPANT_TYPE = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
MAX_REASON = 500


class ActionError(RlsScreenError):
    """An action refused before anything was written; ``message`` is fit for the user's page."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def user_reference(user: UserSession) -> dict[str, str]:
    """The user as a Reference: relative when fhirUser lies on the launching FHIR server, else absolute."""
    reference: dict[str, str] = {}
    if user.fhir_user:
        if is_under(user.iss, user.fhir_user):
            reference["reference"] = user.fhir_user[len(user.iss) :].lstrip("/")
        elif urlsplit(user.fhir_user).scheme in ("http", "https"):
            reference["reference"] = user.fhir_user
    reference["display"] = user.user_name or "the signed-in user"
    return reference


def _own(resource: Mapping[str, Any], system: str, user: UserSession) -> bool:
    subject = resource.get("subject")
    identifiers = resource.get("identifier")
    return (
        isinstance(subject, Mapping)
        and subject.get("reference") == f"Patient/{user.patient}"
        and isinstance(identifiers, list)
        and any(isinstance(i, Mapping) and i.get("system") == system for i in identifiers)
    )


def provenance(target: str, user: UserSession, activity: str, reason: str, now: datetime) -> dict[str, Any]:
    out: dict[str, Any] = {
        "resourceType": "Provenance",
        "target": [{"reference": target}],
        "recorded": now.isoformat(timespec="seconds"),
        "activity": {"coding": [{"system": DATA_OPERATION, "code": activity}]},
        "agent": [
            {
                "type": {"coding": [{"system": PARTICIPANT_TYPE, "code": "author", "display": "Author"}]},
                "who": user_reference(user),
            }
        ],
    }
    if reason:
        out["reason"] = [{"text": reason}]
    return out


def _check_valid(client: FhirClient, resource: Mapping[str, Any]) -> None:
    errors = validation_errors(client.validate(resource))
    if errors:
        raise ActionError(f"The server's $validate refused the {resource['resourceType']}: {errors[0][:200]}")


def _clean_reason(reason: str) -> str:
    text = " ".join(reason.split())
    if len(text) > MAX_REASON:
        raise ActionError(f"The reason is longer than {MAX_REASON} characters.")
    return text


def changed_flag(flag: Mapping[str, Any], action: str, today: date) -> dict[str, Any]:
    """The Flag after the user's action (pure)."""
    out = {k: v for k, v in flag.items() if k != "meta"}
    out["status"] = FLAG_ACTIONS[action]
    if action == "resolve":
        period = dict(flag.get("period") or {})
        period["end"] = today.isoformat()
        if "start" in period and str(period["start"])[:10] > period["end"]:
            period["end"] = str(period["start"])[:10]
        out["period"] = period
    return out


def change_flag(
    client: FhirClient, user: UserSession, flag_id: str, action: str, reason: str, today: date
) -> dict[str, Any]:
    if not FHIR_ID.fullmatch(flag_id) or action not in FLAG_ACTIONS:
        raise ActionError("That change is not one the app offers.")
    reason = _clean_reason(reason)
    if action == "resolve" and not reason:
        raise ActionError("Give a reason for resolving the flag.")
    flag = client.read("Flag", flag_id)
    if not _own(flag, FLAG_ID_SYSTEM, user):
        raise ActionError("That flag is not one of this patient's RLS screening flags.")
    if flag.get("status") != "active":
        raise ActionError("That flag is no longer active; open the summary again.")
    updated = changed_flag(flag, action, today)
    record = provenance(f"Flag/{flag_id}", user, "UPDATE", reason, datetime.now(UTC))
    for resource in (updated, record):
        _check_valid(client, resource)
    version = (flag.get("meta") or {}).get("versionId")
    put: dict[str, Any] = {"method": "PUT", "url": f"Flag/{flag_id}"}
    if version:
        put["ifMatch"] = f'W/"{version}"'
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": updated, "request": put},
            {"resource": record, "request": {"method": "POST", "url": "Provenance"}},
        ],
    }
    return client.transaction(bundle)


def draft_order(proposal: Mapping[str, Any], user: UserSession, today: date) -> dict[str, Any]:
    """The draft order made from the module's proposal (pure)."""
    out: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "status": "draft",
        "intent": "order",
        "basedOn": [{"reference": f"ServiceRequest/{proposal['id']}"}],
        "subject": {"reference": f"Patient/{user.patient}"},
        "authoredOn": today.isoformat(),
        "requester": user_reference(user),
    }
    for key in ("category", "code", "reasonCode", "supportingInfo"):
        if key in proposal:
            out[key] = proposal[key]
    return out


def accept_proposal(client: FhirClient, user: UserSession, request_id: str, today: date) -> dict[str, Any]:
    if not FHIR_ID.fullmatch(request_id):
        raise ActionError("That proposal is not one the app offers.")
    proposal = client.read("ServiceRequest", request_id)
    if not _own(proposal, SERVICE_REQUEST_ID_SYSTEM, user) or proposal.get("intent") != "proposal":
        raise ActionError("That is not this patient's iron-studies proposal.")
    if proposal.get("status") != "active":
        raise ActionError("That proposal is no longer active; open the summary again.")
    if orders_based_on(client, request_id):
        raise ActionError("That proposal has already been accepted; open the summary again.")
    order = draft_order(proposal, user, today)
    record = provenance(f"ServiceRequest/{request_id}", user, "CREATE", "proposal accepted", datetime.now(UTC))
    _check_valid(client, order)
    _check_valid(client, record)
    # the new order is a target too, by its place in the transaction (the server gives it its id)
    order_entry = f"urn:uuid:{uuid.uuid4()}"
    record["target"].insert(0, {"reference": order_entry})
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": order_entry, "resource": order, "request": {"method": "POST", "url": "ServiceRequest"}},
            {"resource": record, "request": {"method": "POST", "url": "Provenance"}},
        ],
    }
    return client.transaction(bundle)
