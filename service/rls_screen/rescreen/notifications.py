"""Which patients a FHIR Subscription notification is about (pure: JSON in, patient ids out).

The shapes servers send (docs/subscriptions.md):

- R4 rest-hook with ``payload: application/fhir+json`` (HAPI FHIR): ``PUT <endpoint>/<type>/<id>`` with
  the created or updated resource as the body; a deletion is ``DELETE <endpoint>/<type>/<id>`` with no body.
- R4 rest-hook without a payload: ``POST <endpoint>`` with no body, a bare "something changed" that
  names no patient (the reconciliation job, ``batch --since``, is the answer there).
- Subscriptions R5 Backport IG (R4): ``POST <endpoint>`` with a ``history`` Bundle whose first entry is the
  subscription status (a Parameters resource); ``full-resource`` entries hold the resources,
  ``id-only`` entries only their ``fullUrl`` (``references`` lists those, for the caller to read).

A resource belongs to the patient its ``subject`` (else ``patient``) names as ``Patient/<id>`` or
``<FHIR base>/Patient/<id>`` (the one reference rule, ``rls_screen.references``); anything else names
no patient and is counted, not guessed. The notification only says whom to screen: the re-screen reads
the patient's data from the configured FHIR server, never from the notification.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rls_screen.references import patient_id_of

MAX_ENTRIES = 1000
"""Entries read from one notification Bundle; a notification is a handful of events, not an export."""
STATUS_TYPES = frozenset({"Parameters", "SubscriptionStatus"})
"""The first entry of a Backport notification (R4: a Parameters resource; R4B/R5: SubscriptionStatus)."""


@dataclass
class Notification:
    """What one notification asks for."""

    patient_ids: list[str] = field(default_factory=list)
    references: list[str] = field(default_factory=list)
    """``id-only`` entries: resources to read (``Type/id``) to learn their patient."""
    unlinked: int = 0
    """Resources that name no patient in a form the module accepts."""

    def add_patient(self, patient_id: str) -> None:
        if patient_id not in self.patient_ids:
            self.patient_ids.append(patient_id)


def patient_of(resource: Mapping[str, Any], fhir_base_url: str) -> str | None:
    """The patient a resource is about (``subject``, else ``patient``), or None."""
    for element in ("subject", "patient"):
        value = resource.get(element)
        if isinstance(value, Mapping):
            return patient_id_of(value.get("reference"), fhir_base_url)
    return None


def from_resource(resource: Any, fhir_base_url: str) -> Notification:
    """A rest-hook delivery of one resource (``PUT <endpoint>/<type>/<id>``)."""
    notification = Notification()
    if isinstance(resource, Mapping) and resource.get("resourceType") == "Bundle":
        return from_bundle(resource, fhir_base_url)
    patient = patient_of(resource, fhir_base_url) if isinstance(resource, Mapping) else None
    if patient is None:
        notification.unlinked += 1
    else:
        notification.add_patient(patient)
    return notification


def relative_reference(full_url: Any, fhir_base_url: str) -> str | None:
    """``Type/id`` of an ``id-only`` entry's fullUrl on the configured FHIR server; None for any other server."""
    if not isinstance(full_url, str):
        return None
    base = fhir_base_url.rstrip("/") + "/"
    text = full_url[len(base) :] if full_url.startswith(base) else full_url
    parts = text.split("/")
    if len(parts) >= 2 and parts[0].isalpha() and parts[0][:1].isupper() and parts[1] and "://" not in text:
        return f"{parts[0]}/{parts[1]}"
    return None


def from_bundle(bundle: Mapping[str, Any], fhir_base_url: str) -> Notification:
    """A Backport IG notification Bundle (or any Bundle of resources): each entry's patient."""
    notification = Notification()
    entries = bundle.get("entry")
    if not isinstance(entries, list):
        return notification
    for entry in entries[:MAX_ENTRIES]:
        if not isinstance(entry, Mapping):
            notification.unlinked += 1
            continue
        resource = entry.get("resource")
        if isinstance(resource, Mapping):
            if resource.get("resourceType") in STATUS_TYPES:
                continue
            patient = patient_of(resource, fhir_base_url)
            if patient is None:
                notification.unlinked += 1
            else:
                notification.add_patient(patient)
            continue
        reference = relative_reference(entry.get("fullUrl"), fhir_base_url)
        if reference is None:
            notification.unlinked += 1
        elif reference not in notification.references:
            notification.references.append(reference)
    return notification
