"""Whose data is this? The one reference resolver, used for every resource type on every path.

Rule D1 (docs/rules.md section 10, "Reference resolution"), after FHIR R4 section 3.3 (Bundle.entry.fullUrl):
a resource belongs to the patient only when its ``subject`` (or, for types without one, ``patient``)
reference resolves to that Patient:

- a relative reference ``Patient/<id>`` (optionally ``/_history/<version>``) with the patient's id;
- inside a Bundle, the ``fullUrl`` of the Patient's entry (``urn:uuid:...`` as Synthea and the SMART
  Bulk Data reference server write them, or an absolute URL);
- an absolute URL ``<base>/Patient/<id>`` where ``<base>`` is the FHIR base the data came from (the
  server the module read, the CDS call's ``fhirServer``, the base of the Patient's own fullUrl).

Anything else is not the patient's: a subject given only by identifier or display, a missing subject,
another server's URL, ``Patient/OTHER/Patient/<id>``, any other shape. Such a resource is not used
and is reported (``NotEvaluable`` reason ``not-linked``). Matching is by whole string equality
against the accepted forms, never by suffix or prefix.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from rls_screen.errors import FhirResponseError, UnsafeUrlError
from rls_screen.urls import normalise

_FHIR_ID = r"[A-Za-z0-9\-.]{1,64}"
_RELATIVE = re.compile(rf"^Patient/({_FHIR_ID})(?:/_history/{_FHIR_ID})?$")
_HISTORY = re.compile(rf"/_history/{_FHIR_ID}$")


def _normal_absolute(reference: str) -> str | None:
    """An absolute http(s) reference in the module's URL normal form (lower-case scheme and host, no
    default port, no trailing slash, no ``_history``), so spellings of one URL compare equal; None
    when it is not absolute or is refused (dot segments, userinfo, ...: never the patient)."""
    if not reference[:8].lower().startswith(("http://", "https://")):
        return None
    try:
        text = normalise(reference)
    except UnsafeUrlError:
        return None
    return _HISTORY.sub("", text.rstrip("/"))


def _base_of(full_url: str) -> str | None:
    """The FHIR base of an absolute ``<base>/Patient/<id>`` URL, else None."""
    if not full_url.startswith(("http://", "https://")):
        return None
    head, _, tail = full_url.rstrip("/").rpartition("/Patient/")
    return head if head and tail and "/" not in tail else None


@dataclass(frozen=True)
class PatientLink:
    """The reference forms that name one patient, in the context the data came from."""

    patient_id: str
    accepted: frozenset[str]

    @classmethod
    def of(cls, patient_id: str, *, base_url: str | None = None, full_urls: Iterable[str] = ()) -> PatientLink:
        """``base_url``: the FHIR base the data was read from; ``full_urls``: the Patient entry's fullUrl."""
        accepted = {f"Patient/{patient_id}"}
        bases = {base_url.rstrip("/")} if base_url else set()
        for full_url in full_urls:
            if full_url:
                accepted.add(full_url)
                base = _base_of(full_url)
                if base is not None:
                    bases.add(base)
        accepted |= {f"{base}/Patient/{patient_id}" for base in bases}
        absolute = {_normal_absolute(form) for form in accepted}
        return cls(patient_id, frozenset(accepted | {form for form in absolute if form is not None}))

    def why_not_linked(self, resource: Mapping[str, Any]) -> str | None:
        """None when the resource's subject is this patient; else why not (no PHI: no ids, no URLs)."""
        subject = resource.get("subject") if "subject" in resource else resource.get("patient")
        if subject is None:
            return "no subject reference"
        if not isinstance(subject, Mapping):
            return "the subject is not a Reference"
        reference = subject.get("reference")
        if reference is None:
            return "subject given only by identifier" if "identifier" in subject else "subject without a reference"
        if not isinstance(reference, str):
            return "the subject reference is not a string"
        if reference in self.accepted or _HISTORY.sub("", reference) in self.accepted:
            return None
        absolute = _normal_absolute(reference)
        if absolute is not None and absolute in self.accepted:
            return None
        relative = _RELATIVE.match(reference)
        if relative is not None:
            return "the subject is another patient"
        if reference.startswith(("http://", "https://")):
            return "the subject is a Patient on another FHIR server, or another patient"
        return "the subject reference does not resolve to this patient"

    def links(self, resource: Mapping[str, Any]) -> bool:
        return self.why_not_linked(resource) is None


def patient_full_url(full_url: Any, patient_id: str) -> str | None:
    """The Patient entry's fullUrl when it can name this Patient: ``urn:uuid:``/``urn:oid:``, or an
    absolute URL ending ``/Patient/<its id>``; None when there is none. A relative or mismatching
    fullUrl ("Patient/OTHER" on Patient p1) would make another patient's references resolve to this
    one: ``ValueError``."""
    if not isinstance(full_url, str) or not full_url:
        return None
    if full_url.startswith(("urn:uuid:", "urn:oid:")):
        return full_url
    if full_url.startswith(("http://", "https://")) and _HISTORY.sub("", full_url.rstrip("/")).endswith(
        f"/Patient/{patient_id}"
    ):
        return full_url
    raise ValueError("the Patient entry's fullUrl does not name this Patient (relative, or another id)")


def patient_id_of(reference: Any, base_url: str | None = None) -> str | None:
    """The patient id a reference names when it is ``Patient/<id>`` or ``<base_url>/Patient/<id>``; else None.

    For lists of patients (a Group's members, a search's subjects) where there is no one patient to
    link against: the same forms as ``PatientLink`` accepts, nothing looser."""
    if not isinstance(reference, str):
        return None
    if base_url and reference.startswith(base_url.rstrip("/") + "/"):
        reference = reference[len(base_url.rstrip("/")) + 1 :]
    match = _RELATIVE.match(reference)
    return match.group(1) if match else None


def check_patient(resource: Any, patient_id: str, what: str) -> Mapping[str, Any]:
    """The answer to ``GET Patient/<id>`` must be that Patient: another id is never used (D1)."""
    if not isinstance(resource, Mapping) or resource.get("resourceType") != "Patient":
        raise FhirResponseError(f"{what}: the FHIR server did not return a Patient")
    if resource.get("id") != patient_id:
        raise FhirResponseError(f"{what}: the FHIR server returned a different Patient than the one asked for")
    return resource
