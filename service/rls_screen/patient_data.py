"""One patient's FHIR data, as the engine needs it, from a Bundle or from server reads.

Parsing is light on purpose (plain JSON, the fields the rules use); ``from_bundle`` is what
``rls-screen evaluate`` reads, and the FHIR reader builds the same ``PatientData``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from rls_screen.contract import CONTRACT_TYPES
from rls_screen.errors import InputError
from rls_screen.model import PatientFacts, Sex
from rls_screen.references import PatientLink, patient_full_url

BUNDLE_TYPES = frozenset({"collection", "searchset", "transaction", "batch", "transaction-response"})
LINKED_TYPES = tuple(kind for kind in CONTRACT_TYPES if kind != "Patient")
SEX_BY_GENDER: dict[str, Sex] = {"male": "male", "female": "female"}


@dataclass(frozen=True)
class PatientData:
    patient: Mapping[str, Any]
    observations: tuple[Mapping[str, Any], ...] = ()
    conditions: tuple[Mapping[str, Any], ...] = ()
    procedures: tuple[Mapping[str, Any], ...] = ()
    medications: tuple[Mapping[str, Any], ...] = ()
    unlinked: tuple[tuple[Mapping[str, Any], str], ...] = ()
    """Resources of the contract's types not linked to this patient (D1), with why: never used, reported."""

    @property
    def patient_id(self) -> str:
        return str(self.patient.get("id", ""))

    def facts(self) -> PatientFacts:
        return patient_facts(self.patient)


def patient_facts(patient: Mapping[str, Any]) -> PatientFacts:
    """Sex from Patient.gender (other/unknown -> None); birth date only with day precision."""
    birth: date | None = None
    raw_birth = patient.get("birthDate")
    if isinstance(raw_birth, str) and len(raw_birth) == 10:
        try:
            birth = date.fromisoformat(raw_birth)
        except ValueError:
            birth = None
    gender = patient.get("gender")
    return PatientFacts(
        reference=f"Patient/{patient.get('id', '')}",
        sex=SEX_BY_GENDER.get(gender) if isinstance(gender, str) else None,
        birth_date=birth,
    )


def group_resources(
    patient: Mapping[str, Any], resources: Iterable[Mapping[str, Any]], *, link: PatientLink | None = None
) -> PatientData:
    """Sort a patient's resources by type; those not linked to the patient (D1) are kept apart, with why.

    ``link`` says which references name the patient (default: only ``Patient/<id>``, as NDJSON files and
    a server's own search answers write them). Resource types outside the contract are dropped here.
    """
    link = link or PatientLink.of(str(patient.get("id", "")))
    accepted = link.accepted
    by_type: dict[Any, list[Mapping[str, Any]]] = {kind: [] for kind in LINKED_TYPES}
    unlinked: list[tuple[Mapping[str, Any], str]] = []
    for resource in resources:
        kind = resource.get("resourceType")
        same_kind = by_type.get(kind) if isinstance(kind, str) else None
        if same_kind is None:
            continue
        subject = resource.get("subject")
        # the common case first (a plain relative or fullUrl reference), the resolver for the rest
        reference = subject.get("reference") if type(subject) is dict else None
        if isinstance(reference, str) and reference in accepted:
            same_kind.append(resource)
            continue
        why = link.why_not_linked(resource)
        if why is None:
            same_kind.append(resource)
        else:
            unlinked.append((resource, why))
    return PatientData(
        patient=patient,
        observations=tuple(by_type["Observation"]),
        conditions=tuple(by_type["Condition"]),
        procedures=tuple(by_type["Procedure"]),
        medications=tuple(by_type["MedicationRequest"]),
        unlinked=tuple(unlinked),
    )


def from_bundle(bundle: Any) -> PatientData:
    """A Bundle holding exactly one Patient and its resources (references by ``Patient/<id>`` or by fullUrl)."""
    if not isinstance(bundle, Mapping) or bundle.get("resourceType") != "Bundle":
        found = bundle.get("resourceType") if isinstance(bundle, Mapping) else type(bundle).__name__
        raise InputError(f"expected a FHIR Bundle, found {found}")
    if bundle.get("type") not in BUNDLE_TYPES:
        raise InputError(f"Bundle.type '{bundle.get('type')}' is not one of {', '.join(sorted(BUNDLE_TYPES))}")
    entries = bundle.get("entry") or []
    if not isinstance(entries, list):
        raise InputError("Bundle.entry is not a list")
    held = [e for e in entries if isinstance(e, Mapping) and isinstance(e.get("resource"), Mapping)]
    patients = [e for e in held if e["resource"].get("resourceType") == "Patient"]
    if not patients:
        raise InputError("the Bundle holds no Patient")
    if len(patients) > 1:
        raise InputError(f"the Bundle holds {len(patients)} Patients; evaluate takes one")
    patient = patients[0]["resource"]
    if not isinstance(patient.get("id"), str) or not patient["id"]:
        raise InputError("the Patient has no id")
    # D1: inside a Bundle, references resolve against the entries' fullUrl too (urn:uuid:..., absolute)
    try:
        full_url = patient_full_url(patients[0].get("fullUrl"), patient["id"])
    except ValueError as error:
        raise InputError(str(error)) from None
    link = PatientLink.of(patient["id"], full_urls=(full_url,) if full_url else ())
    return group_resources(patient, (e["resource"] for e in held if e["resource"] is not patient), link=link)
