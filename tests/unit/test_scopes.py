"""SMART scopes: each command asks for what it does, and a grant missing one is named."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from rls_screen.assessment import assess
from rls_screen.knowledge import load_knowledge
from rls_screen.patient_data import PatientData
from rls_screen.scopes import explain_missing, missing_scopes, scopes_for
from rls_screen.writeback import ExistingState, plan_writeback

_PERMISSION_OF_METHOD = {"POST": "c", "PUT": "u"}


def test_the_read_scopes_are_the_data_contracts_types() -> None:
    knowledge = load_knowledge()
    read = scopes_for(write=False).split()
    assert read == [f"system/{t}.rs" for t in knowledge.contract.bulk_types()]


def test_write_back_scopes_cover_every_entry_the_write_back_sends() -> None:
    """The write-back transaction for a patient with findings, entry by entry, against the default grant."""
    knowledge = load_knowledge()
    data = PatientData(patient={"resourceType": "Patient", "id": "s1", "gender": "female", "birthDate": "1970-01-01"})
    assessment = assess(data, knowledge=knowledge, as_of=date(2026, 12, 1))
    plan = plan_writeback(
        assessment,
        ExistingState(flags={}, service_request=None, risk_assessment_exists=False),
        terminology=knowledge.terminology,
        rules=knowledge.ruleset,
        recorded=datetime(2026, 12, 1, tzinfo=UTC),
        device_ref="Device/d1",
    )
    assert plan.bundle is not None
    needed: list[str] = []
    for entry in plan.bundle["entry"]:
        request = entry["request"]
        kind = entry["resource"]["resourceType"]
        needed.append(f"system/{kind}.{_PERMISSION_OF_METHOD[request['method']]}")
        if request.get("ifNoneExist") or "?" in request["url"]:
            needed.append(f"system/{kind}.s")  # a conditional write searches first
    for kind in ("Flag", "ServiceRequest", "RiskAssessment"):  # the read before the write (fhir_reader)
        needed.append(f"system/{kind}.s")
    assert missing_scopes(" ".join(needed), scopes_for(write=True)) == []
    assert missing_scopes(" ".join(needed), scopes_for(write=False)) != []


@pytest.mark.parametrize(
    ("needed", "granted", "missing"),
    [
        ("system/Flag.crus", "system/Flag.crus", []),
        ("system/Flag.crus", "system/Flag.rs", ["system/Flag.crus"]),
        ("system/Flag.crus", "system/Flag.rs system/Flag.cu", []),
        ("system/Flag.rs", "system/*.read", []),
        ("system/Flag.cu", "system/Flag.write", []),
        ("system/Flag.cruds", "system/Flag.*", []),
        ("system/Flag.rs", "patient/Flag.rs", ["system/Flag.rs"]),
        ("system/Group.r", "system/Group.r?_tag=x", []),
        ("system/Group.r", "openid fhirUser", ["system/Group.r"]),
        ("system/Group.r", "", ["system/Group.r"]),
    ],
)
def test_a_grant_covers_a_scope_by_context_type_and_letters(needed: str, granted: str, missing: list[str]) -> None:
    assert missing_scopes(needed, granted) == missing


def test_a_missing_scope_is_named_with_why() -> None:
    assert explain_missing(["system/Flag.crus", "system/Group.r"]) == (
        "the authorization server did not grant system/Flag.crus (to write the Flags), "
        "system/Group.r (to read the panel's Group)"
    )
