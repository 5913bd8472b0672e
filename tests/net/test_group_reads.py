"""A group read answered by a loopback server in ways a real server should not: nothing is given to a
patient unless its subject names that patient (D1), and what cannot be given to one patient refuses the
whole group read (the batch then reads those patients one by one). The real server's answers, with
interleaved patients, are tested in tests/fhir/test_group_writeback.py."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import pytest
from tests.support.scripted_server import Received, Reply, base_url, scripted_server

from rls_screen.fhir_client import Allowlist, FhirClient
from rls_screen.fhir_reader import UnattributableError, read_group_data, read_group_states
from rls_screen.knowledge import load_knowledge
from rls_screen.patient_data import PatientData
from rls_screen.writeback import FLAG_ID_SYSTEM, RISK_ASSESSMENT_ID_SYSTEM

AS_OF = date(2026, 11, 25)
KNOWLEDGE = load_knowledge()
FERRITIN = {"system": "http://loinc.org", "code": "2276-4"}


def _searchset(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in resources]}


def _observation(n: int, subject: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": f"o{n}",
        "status": "final",
        "code": {"coding": [FERRITIN]},
        "subject": {"reference": subject},
        "effectiveDateTime": "2026-11-01",
        "valueQuantity": {"value": 30, "unit": "ug/L", "system": "http://unitsofmeasure.org", "code": "ug/L"},
    }


def _answering(observations: list[dict[str, Any]]) -> Any:
    """A batch answer: Patients p1 and p2, the given Observations, nothing else."""

    def script(received: Received) -> Reply:
        batch = json.loads(received.body)
        answers = []
        for entry in batch["entry"]:
            url = entry["request"]["url"]
            if url.startswith("Patient?"):
                found = _searchset([{"resourceType": "Patient", "id": p} for p in ("p1", "p2")])
            elif url.startswith("Observation?"):
                found = _searchset(observations)
            else:
                found = _searchset([])
            answers.append({"resource": found, "response": {"status": "200 OK"}})
        return Reply(200, {"resourceType": "Bundle", "type": "batch-response", "entry": answers})

    return script


def _client(url: str) -> FhirClient:
    return FhirClient(url, allowlist=Allowlist((url,)), sleep=lambda s: None)


def test_interleaved_results_go_each_to_the_patient_its_subject_names() -> None:
    holder: dict[str, str] = {}
    observations = [_observation(1, "Patient/p2"), _observation(2, "Patient/p1"), _observation(3, "Patient/p2")]
    with scripted_server(_answering(observations)) as server:
        holder["base"] = base_url(server)
        # the server's own absolute URL and a versioned reference name the patient too (D1)
        observations.append(_observation(4, f"{holder['base']}/Patient/p1"))
        observations.append(_observation(5, "Patient/p1/_history/3"))
        data = read_group_data(_client(holder["base"]), ["p1", "p2", "p3"], KNOWLEDGE, AS_OF)
    p1, p2 = data["p1"], data["p2"]
    assert isinstance(p1, PatientData)
    assert isinstance(p2, PatientData)
    assert sorted(o["id"] for o in p1.observations) == ["o2", "o4", "o5"]
    assert sorted(o["id"] for o in p2.observations) == ["o1", "o3"]
    assert "not found" in str(data["p3"])


@pytest.mark.parametrize(
    "subject",
    ["Patient/p9", "https://other.example/fhir/Patient/p1", "Patient/p1/Patient/p2", "p1"],
    ids=["another patient", "another server", "odd path", "bare id"],
)
def test_a_result_whose_subject_is_none_of_the_group_refuses_the_group_read(subject: str) -> None:
    observations = [_observation(1, "Patient/p1"), _observation(2, subject)]
    with scripted_server(_answering(observations)) as server, pytest.raises(UnattributableError):
        read_group_data(_client(base_url(server)), ["p1", "p2"], KNOWLEDGE, AS_OF)


def _state_answer(flags: list[dict[str, Any]]) -> Any:
    def script(received: Received) -> Reply:
        assessment = {
            "resourceType": "RiskAssessment",
            "id": "ra1",
            "identifier": [{"system": RISK_ASSESSMENT_ID_SYSTEM, "value": "ra-p1"}],
        }
        answers = [_searchset(flags), _searchset([]), _searchset([assessment])]
        entries = [{"resource": a, "response": {"status": "200 OK"}} for a in answers]
        return Reply(200, {"resourceType": "Bundle", "type": "batch-response", "entry": entries})

    return script


def _flag(owner: str, subject: str) -> dict[str, Any]:
    return {
        "resourceType": "Flag",
        "id": f"f-{owner}",
        "status": "active",
        "identifier": [{"system": FLAG_ID_SYSTEM, "value": f"{owner}.iron-deficiency"}],
        "subject": {"reference": subject},
    }


def test_the_pre_write_state_is_given_by_identifier_and_subject_both() -> None:
    with scripted_server(_state_answer([_flag("p2", "Patient/p2")])) as server:
        states = read_group_states(_client(base_url(server)), {"p1": "ra-p1", "p2": "ra-p2"})
        [sent] = server.received
    assert sent.headers["Cache-Control"] == "no-cache"
    assert states["p1"].risk_assessment_exists
    assert not states["p2"].risk_assessment_exists
    assert set(states["p2"].flags) == {"iron-deficiency"}
    assert states["p1"].flags == {}


@pytest.mark.parametrize(
    ("owner", "subject"),
    [("p1", "Patient/p2"), ("p9", "Patient/p9"), ("p1", "Patient/p1/x")],
    ids=["identifier of one, subject of another", "not of the group", "subject not a patient reference"],
)
def test_a_flag_that_cannot_be_given_to_one_patient_refuses_the_state_read(owner: str, subject: str) -> None:
    with scripted_server(_state_answer([_flag(owner, subject)])) as server, pytest.raises(UnattributableError):
        read_group_states(_client(base_url(server)), {"p1": "ra-p1", "p2": "ra-p2"})
