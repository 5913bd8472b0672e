"""D1: whose data is this? The reference resolver, table-driven, and what grouping does with its answer."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from rls_screen.assessment import assess
from rls_screen.errors import FhirResponseError
from rls_screen.knowledge import load_knowledge
from rls_screen.patient_data import from_bundle, group_resources
from rls_screen.references import PatientLink, check_patient

BASE = "https://ehr.example/fhir"
URN = "urn:uuid:6f1c1f3e-6a0e-4d55-9a5b-0d7c1e2b3a4f"


def _observation(subject: Any, n: int = 1) -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "Observation", "id": f"o{n}"}
    if subject is not ...:
        resource["subject"] = subject
    return resource


LINKED = [
    {"reference": "Patient/p1"},
    {"reference": "Patient/p1/_history/3"},
    {"reference": f"{BASE}/Patient/p1"},
    {"reference": f"{BASE}/Patient/p1/_history/2"},
    {"reference": URN},
    {"reference": "Patient/p1", "display": "Jane"},
]
NOT_LINKED = [
    ({"reference": "Patient/OTHER"}, "another patient"),
    ({"reference": "Patient/p11"}, "another patient"),
    ({"reference": "Patient/OTHER/Patient/p1"}, "does not resolve"),
    ({"reference": "https://other-hospital.example/fhir/Patient/p1"}, "another FHIR server"),
    ({"reference": f"{BASE}evil/Patient/p1"}, "another FHIR server"),
    ({"reference": f"{BASE}/Group/x/Patient/p1"}, "another FHIR server"),
    ({"reference": "urn:uuid:00000000-0000-0000-0000-000000000000"}, "does not resolve"),
    ({"reference": "Group/p1"}, "does not resolve"),
    ({"reference": "p1"}, "does not resolve"),
    ({"identifier": {"system": "urn:mrn", "value": "123"}}, "only by identifier"),
    ({"display": "Jane Doe"}, "without a reference"),
    ({"reference": 5}, "not a string"),
    ("Patient/p1", "not a Reference"),
    (None, "no subject"),
    (..., "no subject"),
]


@pytest.mark.parametrize("subject", LINKED)
def test_references_that_name_the_patient(subject: dict[str, Any]) -> None:
    link = PatientLink.of("p1", base_url=BASE + "/", full_urls=(URN,))
    assert link.why_not_linked(_observation(subject)) is None


@pytest.mark.parametrize(("subject", "why"), NOT_LINKED)
def test_references_that_do_not_name_the_patient(subject: Any, why: str) -> None:
    link = PatientLink.of("p1", base_url=BASE, full_urls=(URN,))
    reason = link.why_not_linked(_observation(subject))
    assert reason is not None
    assert why in reason
    assert "p1" not in reason
    assert "OTHER" not in reason


def test_an_absolute_url_counts_only_on_the_base_the_data_came_from() -> None:
    observation = _observation({"reference": f"{BASE}/Patient/p1"})
    assert not PatientLink.of("p1").links(observation)  # NDJSON: no base known
    assert PatientLink.of("p1", base_url=BASE).links(observation)
    assert PatientLink.of("p1", full_urls=(f"{BASE}/Patient/p1",)).links(observation)  # a Bundle's fullUrl base


def test_grouping_keeps_unlinked_resources_apart_with_why() -> None:
    patient = {"resourceType": "Patient", "id": "p1"}
    resources = [
        _observation({"reference": "Patient/p1"}, 1),
        _observation({"reference": "Patient/OTHER"}, 2),
        {"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/OTHER"}},
        {"resourceType": "MedicationRequest", "id": "m1", "subject": {"identifier": {"value": "x"}}},
        {"resourceType": "Procedure", "id": "pr1", "subject": {"reference": "Patient/p1"}},
        {"resourceType": "Encounter", "id": "e1", "subject": {"reference": "Patient/OTHER"}},  # outside the contract
    ]
    data = group_resources(patient, resources)
    assert [o["id"] for o in data.observations] == ["o1"]
    assert [p["id"] for p in data.procedures] == ["pr1"]
    assert data.conditions == ()
    assert data.medications == ()
    assert [(r["id"], why) for r, why in data.unlinked] == [
        ("o2", "the subject is another patient"),
        ("c1", "the subject is another patient"),
        ("m1", "subject given only by identifier"),
    ]


def test_a_bundle_resolves_references_by_the_patient_entrys_full_url() -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"fullUrl": URN, "resource": {"resourceType": "Patient", "id": "p1"}},
            {"fullUrl": "urn:uuid:a", "resource": _observation({"reference": URN}, 1)},
            {"fullUrl": "urn:uuid:b", "resource": _observation({"reference": "urn:uuid:someone-else"}, 2)},
        ],
    }
    data = from_bundle(bundle)
    assert [o["id"] for o in data.observations] == ["o1"]
    assert [r["id"] for r, _ in data.unlinked] == ["o2"]


def test_a_patient_read_must_answer_with_that_patient() -> None:
    assert check_patient({"resourceType": "Patient", "id": "p1"}, "p1", "read")["id"] == "p1"
    with pytest.raises(FhirResponseError, match="different Patient"):
        check_patient({"resourceType": "Patient", "id": "p2"}, "p1", "read")
    with pytest.raises(FhirResponseError, match="did not return a Patient"):
        check_patient({"resourceType": "Group", "id": "p1"}, "p1", "read")


def _potassium(n: int, subject: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": f"k{n}",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "2823-3"}]},
        "subject": subject,
        "effectiveDateTime": "2026-11-30T08:00:00Z",
        "valueQuantity": {"value": 4.01, "unit": "mmol/L", "system": "http://unitsofmeasure.org", "code": "mmol/L"},
    }


def test_a_synthea_style_bundle_has_its_labs_used_and_another_patients_reported() -> None:
    """The opposite failure: a urn:uuid subject is the patient's; another patient's potassium is said, not used."""
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": URN, "resource": {"resourceType": "Patient", "id": "p1", "gender": "female"}},
            {"fullUrl": "urn:uuid:k1", "resource": _potassium(1, {"reference": URN})},
            {"fullUrl": "urn:uuid:k2", "resource": _potassium(2, {"reference": "Patient/OTHER"})},
        ],
    }
    assessment = assess(from_bundle(bundle), knowledge=load_knowledge(), as_of=date(2026, 12, 1))
    assert [u.reference for u in assessment.used_observations] == ["Observation/k1"]
    (unlinked,) = [n for n in assessment.not_evaluable if n.reason == "not-linked"]
    assert unlinked.observation == "Observation/k2"
    assert unlinked.detail == "Observation not linked to this patient: the subject is another patient"


@pytest.mark.parametrize(
    "reference",
    [
        "HTTPS://EHR.EXAMPLE/fhir/Patient/p1",
        "https://ehr.example:443/fhir/Patient/p1",
        "https://ehr.example/fhir/Patient/p1/",
        "https://ehr.example/fhir/Patient/p1/_history/4",
    ],
)
def test_spellings_of_the_patients_absolute_url_on_the_same_base_are_the_patient(reference: str) -> None:
    assert PatientLink.of("p1", base_url="https://ehr.example/fhir").links(_observation({"reference": reference}))


@pytest.mark.parametrize(
    "reference",
    ["https://ehr.example/fhir/../other/Patient/p1", "https://user@ehr.example/fhir/Patient/p1"],
)
def test_refused_urls_never_name_the_patient(reference: str) -> None:
    assert not PatientLink.of("p1", base_url="https://ehr.example/fhir").links(_observation({"reference": reference}))


@pytest.mark.parametrize(
    "resource",
    [
        {"resourceType": "Observation", "id": "o1", "subject": {"reference": ["Patient/p1"]}},
        {"resourceType": ["Observation"], "id": "o2", "subject": {"reference": "Patient/p1"}},
        {"resourceType": "Condition", "id": "c1", "subject": {"reference": {"x": 1}}},
    ],
)
def test_malformed_references_and_types_are_not_used_and_never_crash(resource: dict[str, Any]) -> None:
    data = group_resources({"resourceType": "Patient", "id": "p1"}, [resource])
    assert data.observations == ()
    assert data.conditions == ()


@pytest.mark.parametrize("full_url", ["Patient/OTHER", "https://ehr.example/fhir/Patient/OTHER"])
def test_a_patient_full_url_that_names_another_patient_is_refused(full_url: str) -> None:
    from rls_screen.errors import InputError

    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"fullUrl": full_url, "resource": {"resourceType": "Patient", "id": "p1"}},
            {"resource": _observation({"reference": "Patient/OTHER"}, 1)},
        ],
    }
    with pytest.raises(InputError, match="does not name this Patient"):
        from_bundle(bundle)
