"""``batch --bulk`` against the real HAPI server: the export holds the data contract and nothing else,
for every contract type, by GET (repeated ``_typeFilter``) and by POST (Parameters), and screening
the export gives what the REST (``--group``) path gives for the same patients."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from tests.support.fhir_data import observation, put_all

from rls_screen.batch import bulk_export
from rls_screen.batch.jobs import JobStore
from rls_screen.cli import main
from rls_screen.contract import CONTRACT_TYPES
from rls_screen.engine import load_knowledge
from rls_screen.fhir_client import Allowlist, FhirClient
from rls_screen.settings import get_settings
from rls_screen.synth import chunked_transaction_bundles, generate_panel

pytestmark = pytest.mark.slow
AS_OF = date(2026, 11, 25)
SNOMED = "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
REPORTED = ("findings", "advisories", "gfrCategory", "ironBand", "notEvaluable", "values")
"""What a patient's result says about the patient (a dry run's planned writes differ by path)."""


@pytest.fixture
def prefix() -> str:
    """This module's own ids on the shared server."""
    return f"bulkx{uuid.uuid4().hex[:10]}"


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("RLS_SCREEN_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("RLS_SCREEN_BULK_POLL_MAX_S", "2")  # HAPI asks for 120 s; its jobs take seconds here
    get_settings.cache_clear()
    yield tmp_path / "state"
    get_settings.cache_clear()


def _coded(kind: str, resource_id: str, subject: str, system: str, code: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": kind,
        "id": resource_id,
        "code": {"coding": [{"system": system, "code": code}]},
        "subject": {"reference": f"Patient/{subject}"},
        **extra,
    }


def _medication(resource_id: str, subject: str, status: str) -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "id": resource_id,
        "status": status,
        "intent": "order",
        "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "3498"}]},  # diphenhydramine
        "subject": {"reference": f"Patient/{subject}"},
    }


def load(base_url: str, prefix: str) -> tuple[dict[str, str], set[str]]:
    """A synthetic panel plus, for its first patient, resources outside the contract and one inside it
    for each type the panel lacks. Returns (id -> type) of the contract extras, and the excluded ids."""
    panel = generate_panel(6, seed=9, as_of=AS_OF, id_prefix=prefix)
    client = FhirClient(base_url, allowlist=Allowlist((base_url,)))
    for bundle in chunked_transaction_bundles(panel, patients_per_bundle=25):
        client.transaction(bundle)
    client.close()
    first = panel.patients[0].patient["id"]
    vital = observation(first, 900, "8867-4", 72, "/min", "2026-11-01")  # heart rate: a vital sign
    vital["category"][0]["coding"][0]["code"] = "vital-signs"
    old = observation(first, 901, "2276-4", 9, "ug/L", "2024-06-01")  # ferritin before the window
    outside = [
        vital,
        _coded("Condition", f"{prefix}-htn", first, SNOMED, "38341003"),  # hypertension
        _coded("Procedure", f"{prefix}-appx", first, SNOMED, "80146002", status="completed"),  # appendectomy
        _medication(f"{prefix}-mr-done", first, "completed"),
    ]
    inside = [
        old,  # exported: the window is applied in memory on every path, not by the export (D2, D4)
        _coded("Procedure", f"{prefix}-hd", first, SNOMED, "302497006", status="in-progress"),  # haemodialysis
        _medication(f"{prefix}-mr-active", first, "active"),
    ]
    put_all(base_url, outside + inside)
    return {r["id"]: r["resourceType"] for r in inside}, {r["id"] for r in outside}


def batch(tmp_path: Path, base_url: str, *args: str) -> int:
    return main(
        [
            "batch",
            "--fhir-url",
            base_url,
            "--as-of",
            AS_OF.isoformat(),
            "--dry-run",
            "--job-db",
            str(tmp_path / "jobs.sqlite"),
            "--report-dir",
            str(tmp_path / "reports"),
            *args,
        ]
    )


@pytest.mark.parametrize("kickoff", ["POST", "GET"])
def test_the_export_holds_only_the_contract_and_screens_as_the_rest_path_does(
    fhir_base_url: str,
    prefix: str,
    tmp_path: Path,
    state_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    kickoff: str,
) -> None:
    if kickoff == "GET":  # the contract's GET URL is ~5 KB: past our limit, within Tomcat's 8 KiB
        monkeypatch.setattr(bulk_export, "MAX_GET_URL_CHARS", 8000)
    inside, outside = load(fhir_base_url, prefix)
    group = f"Group/{prefix}-panel"
    assert batch(tmp_path, fhir_base_url, "--group", group) == 0
    assert batch(tmp_path, fhir_base_url, "--bulk", group) == 0

    store = JobStore(tmp_path / "jobs.sqlite")
    rest_job, bulk_job = store.job_ids()
    results = [
        {row.patient_id: {key: (row.result or {}).get(key) for key in REPORTED} for row in store.rows(job)}
        for job in (rest_job, bulk_job)
    ]
    store.close()
    assert len(results[0]) == 6
    assert results[1] == results[0]

    exported: dict[str, str] = {}
    contract = load_knowledge().contract
    for path in sorted((state_dir / "jobs" / bulk_job / "export").glob("*.ndjson")):
        for line in path.read_text().splitlines():
            resource = json.loads(line)
            kind = resource["resourceType"]
            assert path.name.startswith(f"{kind}-")
            exported[resource["id"]] = kind
            if kind != "Patient":
                assert contract.in_scope(resource), f"{kind}/{resource['id']} is outside the contract"
    assert set(exported.values()) == set(CONTRACT_TYPES)
    assert inside.items() <= exported.items()
    assert outside.isdisjoint(exported)  # the vital sign, the other codes and statuses
