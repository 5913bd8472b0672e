"""One patient's FHIR data, as the engine needs it, from a Bundle or from server reads.

Parsing is light on purpose (plain JSON, the fields the rules use); ``from_bundle`` is what
``rls-screen evaluate`` reads, and the FHIR reader builds the same ``PatientData``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from rls_screen.errors import InputError
from rls_screen.model import PatientFacts, Sex

BUNDLE_TYPES = frozenset({"collection", "searchset", "transaction", "batch", "transaction-response"})
SEX_BY_GENDER: dict[str, Sex] = {"male": "male", "female": "female"}


@dataclass(frozen=True)
class PatientData:
    patient: Mapping[str, Any]
    observations: tuple[Mapping[str, Any], ...] = ()
    conditions: tuple[Mapping[str, Any], ...] = ()
    procedures: tuple[Mapping[str, Any], ...] = ()
    medications: tuple[Mapping[str, Any], ...] = ()

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


def subject_matches(resource: Mapping[str, Any], patient_id: str) -> bool:
    """True when the resource's subject/patient reference points at this patient (or is absent)."""
    subject = resource.get("subject") or resource.get("patient")
    if not isinstance(subject, Mapping) or "reference" not in subject:
        return True
    reference = str(subject["reference"])
    return reference == f"Patient/{patient_id}" or reference.endswith(f"/Patient/{patient_id}")


def group_resources(
    patient: Mapping[str, Any], resources: Iterable[Mapping[str, Any]], aliases: frozenset[str] = frozenset()
) -> PatientData:
    """Sort a patient's resources by type; resources about another patient are left out.

    ``aliases``: other references that mean this patient (its Bundle entry's ``fullUrl``, e.g. a
    ``urn:uuid:`` as Synthea writes subjects).
    """
    patient_id = str(patient.get("id", ""))
    # ``subject_matches`` inlined, its two references built once per patient (once per resource they cost ~20 %)
    own, suffix = f"Patient/{patient_id}", f"/Patient/{patient_id}"
    by_type: dict[str, list[Mapping[str, Any]]] = {}
    for resource in resources:
        subject = resource.get("subject") or resource.get("patient")
        if (type(subject) is dict or isinstance(subject, Mapping)) and "reference" in subject:
            reference = str(subject["reference"])
            if reference != own and not reference.endswith(suffix) and reference not in aliases:
                continue
        kind = str(resource.get("resourceType"))
        same_kind = by_type.get(kind)
        if same_kind is None:
            by_type[kind] = [resource]
        else:
            same_kind.append(resource)
    return PatientData(
        patient=patient,
        observations=tuple(by_type.get("Observation", ())),
        conditions=tuple(by_type.get("Condition", ())),
        procedures=tuple(by_type.get("Procedure", ())),
        medications=tuple(by_type.get("MedicationRequest", []) + by_type.get("MedicationStatement", [])),
    )


def from_bundle(bundle: Any) -> PatientData:
    """A Bundle holding exactly one Patient and its resources (Observations, Conditions, Procedures,
    MedicationRequests), referring to it as ``Patient/<id>`` or by its entry's ``fullUrl``."""
    if not isinstance(bundle, Mapping) or bundle.get("resourceType") != "Bundle":
        found = bundle.get("resourceType") if isinstance(bundle, Mapping) else type(bundle).__name__
        raise InputError(f"expected a FHIR Bundle, found {found}")
    if bundle.get("type") not in BUNDLE_TYPES:
        raise InputError(f"Bundle.type '{bundle.get('type')}' is not one of {', '.join(sorted(BUNDLE_TYPES))}")
    entries = bundle.get("entry") or []
    if not isinstance(entries, list):
        raise InputError("Bundle.entry is not a list")
    usable = [entry for entry in entries if isinstance(entry, Mapping) and isinstance(entry.get("resource"), Mapping)]
    resources = [entry["resource"] for entry in usable]
    patients = [r for r in resources if r.get("resourceType") == "Patient"]
    if not patients:
        raise InputError("the Bundle holds no Patient")
    if len(patients) > 1:
        raise InputError(f"the Bundle holds {len(patients)} Patients; evaluate takes one")
    patient = patients[0]
    if not isinstance(patient.get("id"), str) or not patient["id"]:
        raise InputError("the Patient has no id")
    # Subjects may point at the Patient's entry by fullUrl (urn:uuid:..., FHIR R4 Bundle 2.36.4.1).
    full_urls = frozenset(
        str(entry["fullUrl"])
        for entry in usable
        if entry["resource"] is patient and isinstance(entry.get("fullUrl"), str)
    )
    return group_resources(patient, (r for r in resources if r is not patient), full_urls)
