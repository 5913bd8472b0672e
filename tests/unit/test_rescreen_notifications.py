"""What a notification names (pure): the patients of its resources in the accepted reference forms, nothing else;
the secret's comparison and length."""

from __future__ import annotations

from typing import Any

import pytest

from rls_screen.rescreen import notifications
from rls_screen.rescreen.endpoint import secret_matches
from rls_screen.rescreen.settings import RescreenSettings

pytestmark = pytest.mark.unit
SECRET = "a-notification-secret-of-forty-characters!"
BASE = "http://127.0.0.1:9/fhir"


def observation(subject: str) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": "o1", "status": "final", "subject": {"reference": subject}}


def test_the_secret_must_be_long() -> None:
    with pytest.raises(ValueError, match="at least 32"):
        RescreenSettings(secret="short")


def test_secret_comparison_wants_exactly_one_equal_header() -> None:
    assert secret_matches([SECRET.encode()], SECRET)
    assert not secret_matches([SECRET.encode(), SECRET.encode()], SECRET)
    assert not secret_matches([SECRET[:-1].encode()], SECRET)
    assert not secret_matches([], SECRET)


@pytest.mark.parametrize(
    ("subject", "patient"),
    [
        ("Patient/p1", "p1"),
        (f"{BASE}/Patient/p1", "p1"),
        ("Patient/p1/_history/3", "p1"),
        ("http://other.example/fhir/Patient/p1", None),  # another server's patient: never guessed
        ("Group/g1", None),
        ("Patient/OTHER/Patient/p1", None),
    ],
)
def test_a_resource_names_its_patient_only_in_the_accepted_forms(subject: str, patient: str | None) -> None:
    found = notifications.from_resource(observation(subject), BASE)
    assert found.patient_ids == ([patient] if patient else [])
    assert found.unlinked == (0 if patient else 1)


def test_a_backport_bundle_names_each_entrys_patient_and_lists_id_only_entries() -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "history",
        "entry": [
            {"resource": {"resourceType": "Parameters", "parameter": []}},
            {"fullUrl": f"{BASE}/Observation/o1", "resource": observation("Patient/p1")},
            {
                "fullUrl": f"{BASE}/Condition/c1",
                "resource": {"resourceType": "Condition", "subject": {"reference": "Patient/p2"}},
            },
            {"fullUrl": f"{BASE}/Observation/o9"},
            {"fullUrl": "http://other.example/fhir/Observation/o8"},
        ],
    }
    found = notifications.from_resource(bundle, BASE)
    assert found.patient_ids == ["p1", "p2"]
    assert found.references == ["Observation/o9"]
    assert found.unlinked == 1
