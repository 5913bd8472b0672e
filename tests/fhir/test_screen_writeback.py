"""`screen` against the real HAPI server: read, evaluate, write back, idempotently and atomically."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from tests.support.fhir_data import count, observation, patient, put_all, search

from rls_screen.cli import main
from rls_screen.engine import evaluate
from rls_screen.errors import FhirOperationError
from rls_screen.fhir_client import Allowlist, FhirClient, validation_errors
from rls_screen.fhir_reader import read_patient_data
from rls_screen.knowledge import Knowledge, load_knowledge
from rls_screen.screening import screen_patient

AS_OF = date(2026, 11, 25)
RECORDED = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)
WRITTEN_TYPES = ("RiskAssessment", "Flag", "ServiceRequest", "Provenance")


@pytest.fixture(scope="module")
def knowledge() -> Knowledge:
    return load_knowledge()


@pytest.fixture
def client(fhir_base_url: str) -> FhirClient:
    return FhirClient(fhir_base_url, allowlist=Allowlist((fhir_base_url,)))


def iron_deficient_patient(fhir_base_url: str, prefix: str) -> None:
    put_all(
        fhir_base_url,
        [
            patient(prefix),
            observation(prefix, 1, "2276-4", 9, "ug/L", "2026-10-01"),
            observation(prefix, 2, "718-7", 10.1, "g/dL", "2026-10-01"),
            observation(prefix, 3, "98979-8", 40, "mL/min/{1.73_m2}", "2026-10-01"),
            observation(prefix, 4, "2823-3", 3.2, "mmol/L", "2026-10-01"),
        ],
    )


def counts(fhir_base_url: str, prefix: str) -> dict[str, int]:
    return {
        t: count(fhir_base_url, t, subject=f"Patient/{prefix}") for t in ("RiskAssessment", "Flag", "ServiceRequest")
    }


def test_read_is_the_patient_and_one_search_per_contract_type(
    fhir_base_url: str, client: FhirClient, knowledge: Knowledge, unique_prefix: str
) -> None:
    iron_deficient_patient(fhir_base_url, unique_prefix)
    data = read_patient_data(client, unique_prefix, knowledge, AS_OF)
    assert [s.resource_type for s in knowledge.contract.searches] == [
        "Condition",
        "Observation",
        "Procedure",
        "MedicationRequest",
    ]
    assert client.requests_made == 1 + len(knowledge.contract.searches)
    assert sorted(o["id"] for o in data.observations) == [f"{unique_prefix}-o{n}" for n in range(1, 5)]


def test_uibc_and_non_egfr_results_are_read_and_said_why_they_are_not_used(
    fhir_base_url: str, client: FhirClient, knowledge: Knowledge, unique_prefix: str
) -> None:
    """The search asks for UIBC and the eGFR look-alikes too, so the output explains their absence."""
    put_all(
        fhir_base_url,
        [
            patient(unique_prefix),
            observation(unique_prefix, 1, "2498-4", 40, "ug/dL", "2026-10-01"),  # serum iron
            observation(unique_prefix, 2, "2501-5", 300, "ug/dL", "2026-10-01"),  # UIBC, not TIBC
            observation(unique_prefix, 3, "35591-7", 55, "mL/min", "2026-10-01"),  # Cockcroft-Gault clearance
        ],
    )
    data = read_patient_data(client, unique_prefix, knowledge, AS_OF)
    assessment = evaluate(data.facts(), data.observations, as_of=AS_OF, knowledge=knowledge)
    why = {ne.observation: ne.detail for ne in assessment.not_evaluable if ne.observation}
    assert why[f"Observation/{unique_prefix}-o2"] == "UIBC is not TIBC: not used for transferrin saturation"
    assert why[f"Observation/{unique_prefix}-o3"].startswith("not an eGFR")


def test_every_written_resource_passes_validate(
    fhir_base_url: str, client: FhirClient, knowledge: Knowledge, unique_prefix: str
) -> None:
    iron_deficient_patient(fhir_base_url, unique_prefix)
    result = screen_patient(client, unique_prefix, knowledge=knowledge, as_of=AS_OF, recorded=RECORDED)
    assert result.written
    assert {f.code for f in result.assessment.findings} >= {"iron-deficiency", "anemia", "hypokalemia"}
    written = []
    for entry in result.response["entry"]:  # type: ignore[index]
        location = entry["response"]["location"].split("/_history")[0]
        resource_type, resource_id = location.split("/")[-2:]
        written.append(client.read(resource_type, resource_id))
    assert {r["resourceType"] for r in written} >= set(WRITTEN_TYPES)
    device_ref = next(r for r in written if r["resourceType"] == "Provenance")["agent"][0]["who"]["reference"]
    written.append(client.read(*device_ref.split("/")))
    for resource in written:
        assert validation_errors(client.validate(resource)) == [], resource["resourceType"]


def test_screening_twice_writes_nothing_new(
    fhir_base_url: str, client: FhirClient, knowledge: Knowledge, unique_prefix: str
) -> None:
    iron_deficient_patient(fhir_base_url, unique_prefix)
    first = screen_patient(client, unique_prefix, knowledge=knowledge, as_of=AS_OF, recorded=RECORDED)
    before = counts(fhir_base_url, unique_prefix)
    provenance_before = count(fhir_base_url, "Provenance")
    second = screen_patient(client, unique_prefix, knowledge=knowledge, as_of=AS_OF, recorded=RECORDED)
    assert first.written
    assert not second.written
    assert second.plan.bundle is None
    assert counts(fhir_base_url, unique_prefix) == before
    assert count(fhir_base_url, "Provenance") == provenance_before
    assert before == {"RiskAssessment": 1, "Flag": 5, "ServiceRequest": 1}


def test_a_newer_normal_result_turns_the_flag_inactive_and_adds_a_risk_assessment(
    fhir_base_url: str, client: FhirClient, knowledge: Knowledge, unique_prefix: str
) -> None:
    iron_deficient_patient(fhir_base_url, unique_prefix)
    screen_patient(client, unique_prefix, knowledge=knowledge, as_of=AS_OF, recorded=RECORDED)
    put_all(fhir_base_url, [observation(unique_prefix, 5, "2823-3", 4.1, "mmol/L", "2026-11-20")])
    later = screen_patient(client, unique_prefix, knowledge=knowledge, as_of=AS_OF, recorded=RECORDED)
    assert "hypokalemia" not in later.assessment.finding_codes
    assert count(fhir_base_url, "RiskAssessment", subject=f"Patient/{unique_prefix}") == 2
    flags = {
        f["identifier"][0]["value"].rsplit(".", 1)[-1]: f
        for f in search(fhir_base_url, "Flag", subject=f"Patient/{unique_prefix}")
    }
    assert len(flags) == 5
    assert flags["hypokalemia"]["status"] == "inactive"
    assert flags["hypokalemia"]["period"]["end"] == AS_OF.isoformat()
    assert flags["iron-deficiency"]["status"] == "active"


def test_a_rejected_entry_leaves_nothing_half_written(
    fhir_base_url: str, client: FhirClient, knowledge: Knowledge, unique_prefix: str
) -> None:
    iron_deficient_patient(fhir_base_url, unique_prefix)
    planned = screen_patient(client, unique_prefix, knowledge=knowledge, as_of=AS_OF, recorded=RECORDED, dry_run=True)
    bundle = planned.plan.bundle
    assert bundle is not None
    assert not planned.written
    # The last Flag now points at a patient that does not exist: the server must reject the whole transaction.
    flag_entry = next(e for e in reversed(bundle["entry"]) if e["resource"]["resourceType"] == "Flag")
    flag_entry["resource"]["subject"] = {"reference": f"Patient/{unique_prefix}-missing"}
    with pytest.raises(FhirOperationError):
        client.transaction(bundle)
    assert counts(fhir_base_url, unique_prefix) == {"RiskAssessment": 0, "Flag": 0, "ServiceRequest": 0}


def test_cli_screen_prints_summary_and_what_was_written(
    fhir_base_url: str, unique_prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    iron_deficient_patient(fhir_base_url, unique_prefix)
    assert main(["screen", "--patient", unique_prefix, "--fhir-url", fhir_base_url, "--as-of", "2026-11-25"]) == 0
    out = capsys.readouterr().out
    assert "Iron deficiency" in out
    assert "ferritin 9 µg/L on 2026-10-01" in out
    assert "Written in one transaction" in out
    assert (
        main(["screen", "--patient", unique_prefix, "--fhir-url", fhir_base_url, "--as-of", "2026-11-25", "--dry-run"])
        == 0
    )
    assert "nothing would be written" in capsys.readouterr().out


def test_cli_screen_unknown_patient_is_a_clear_error(
    fhir_base_url: str, unique_prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["screen", "--patient", f"{unique_prefix}-nobody", "--fhir-url", fhir_base_url])
    assert code != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "was not found" in err[0]


def test_cli_screen_refuses_a_server_off_the_allowlist(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from rls_screen.settings import get_settings

    monkeypatch.setenv("FHIR_BASE_URL", "http://127.0.0.1:8080/fhir")
    get_settings.cache_clear()
    try:
        code = main(["screen", "--patient", "x", "--fhir-url", "https://other.example.org/fhir"])
    finally:
        get_settings.cache_clear()
    assert code == 4
    assert "not on the allowlist" in capsys.readouterr().err
