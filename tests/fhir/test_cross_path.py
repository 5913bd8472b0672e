"""D2 end to end: the same patients give the same whole Assessment on every path.

A synthetic panel with medications (aggravating, stopped, not aggravating) and dialysis Procedures and
Conditions is loaded into the real HAPI server from Synthea-style Bundles (``urn:uuid`` subjects, PUT so
the ids stay). Then each patient is assessed through:

- ``rls-screen evaluate`` on the same per-patient ``urn:uuid`` collection Bundles (offline),
- the REST read ``screen`` and ``batch --group`` use (``read_patient_data``),
- the NDJSON files of ``batch --bulk`` (a real Bulk $export) and of ``batch --ndjson`` (synth's files),
- the CDS service's data resolution with a full prefetch (as an EHR fills the templates) and with no
  prefetch at all (the service's own fallback reads on ``fhirServer``),

and the whole Assessment JSON (findings, advisories, band, GFR category, not evaluable, the
Observations used) must be identical. The batch jobs' rows must equal the summary of that Assessment.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
from tests.fhir.test_batch import batch

from rls_screen import synth
from rls_screen.assessment import assess
from rls_screen.batch.jobs import JobStore
from rls_screen.batch.runner import patient_summary
from rls_screen.batch.sources import NdjsonIndex
from rls_screen.cds.prefetch import FhirAccess, FhirAccessConfig, PatientDataResolver, prefetch_templates
from rls_screen.cds.runtime import assess_call_data
from rls_screen.cli import main
from rls_screen.engine.mimics import MIMIC_FINDINGS
from rls_screen.fhir_client import Allowlist, FhirClient
from rls_screen.fhir_reader import read_patient_data
from rls_screen.knowledge import Knowledge, load_knowledge
from rls_screen.model import Assessment
from rls_screen.patient_data import from_bundle
from rls_screen.references import PatientLink
from rls_screen.screening import ScreenResult

pytestmark = pytest.mark.slow
AS_OF = date(2026, 11, 25)
PATIENTS, SEED = 44, 1  # seed 1 patients 7, 11 and 42 carry every kind of order and dialysis record


@pytest.fixture(scope="module")
def knowledge() -> Knowledge:
    return load_knowledge()


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    from rls_screen.settings import get_settings

    monkeypatch.setenv("RLS_SCREEN_STATE_DIR", str(tmp_path / "state"))
    get_settings.cache_clear()
    yield tmp_path / "state"
    get_settings.cache_clear()


def _prefetch(base_url: str, knowledge: Knowledge, patient_id: str) -> dict[str, Any]:
    """What an EHR sends: each template filled and read, every page merged into one Bundle."""
    prefetch: dict[str, Any] = {}
    for key, template in prefetch_templates(knowledge).items():
        url: str | None = f"{base_url}/{template.replace('{{context.patientId}}', quote(patient_id))}"
        entries: list[Any] = []
        while url:
            body = requests.get(url, headers={"Accept": "application/fhir+json"}, timeout=30).json()
            if body["resourceType"] != "Bundle":
                prefetch[key] = body
                break
            entries += body.get("entry", [])
            url = next((link["url"] for link in body.get("link", []) if link["relation"] == "next"), None)
        else:
            prefetch[key] = {"resourceType": "Bundle", "type": "searchset", "entry": entries}
    return prefetch


def _cds(knowledge: Knowledge, base_url: str, patient_id: str, prefetch: dict[str, Any] | None) -> Assessment:
    config = FhirAccessConfig(
        allowlist=Allowlist((base_url,)),
        session=requests.Session(),
        connect_timeout_s=5,
        read_timeout_s=30,
        max_retries=0,
        max_pages=50,
    )
    access = FhirAccess(config, base_url if prefetch is None else None, None)
    resolver = PatientDataResolver(patient_id, prefetch, access, knowledge, AS_OF)
    return assess_call_data(resolver, PatientLink.of(patient_id, base_url=access.server), knowledge)


def _edge_lab(prefix: str, name: str, loinc: str, value: float, unit: str, subject: dict[str, str]) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": f"{prefix}-edge-{name}",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": loinc}]},
        "subject": subject,
        "effectiveDateTime": "2026-11-19T09:30:00Z",
        "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit},
    }


def _edge_patient(prefix: str) -> dict[str, Any]:
    patient_url = f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, prefix + '-edge')}"
    subject = {"reference": patient_url}
    ucum = "http://unitsofmeasure.org"
    resources: list[dict[str, Any]] = [
        {"resourceType": "Patient", "id": f"{prefix}-edge", "gender": "female", "birthDate": "1960-04-02"},
        {
            "resourceType": "Observation",
            "id": f"{prefix}-edge-cmp",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "24323-8"}]},
            "subject": subject,
            "effectiveDateTime": "2026-11-20",
            "component": [
                {
                    "code": {"coding": [{"system": "http://loinc.org", "code": "2823-3"}]},
                    "valueQuantity": {"value": 7.2, "unit": "mmol/L", "system": ucum, "code": "mmol/L"},
                }
            ],
        },
        {
            "resourceType": "Observation",
            "id": f"{prefix}-edge-fer",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "2276-4"}]},
            "subject": subject,
            "issued": "2026-11-15T08:00:00Z",
            "valueQuantity": {"value": 9, "unit": "ug/L", "system": ucum, "code": "ug/L"},
        },
        # docs/rules.md section 11: a survey AUDIT-C valueInteger (W13), B12 in pmol/L and HbA1c in mmol/mol
        # under a % code (W8), and a grade-3 sodium with a measured osmolality (W11, W12)
        {
            "resourceType": "Observation",
            "id": f"{prefix}-edge-auditc",
            "status": "final",
            "category": [
                {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "survey"}]}
            ],
            "code": {"coding": [{"system": "http://loinc.org", "code": "75626-2"}]},
            "subject": subject,
            "effectiveDateTime": "2026-11-18",
            "valueInteger": 3,
        },
        _edge_lab(prefix, "b12", "2132-9", 120, "pmol/L", subject),
        _edge_lab(prefix, "hba1c", "4548-4", 50, "mmol/mol", subject),
        _edge_lab(prefix, "osm", "2692-2", 318, "mosm/kg", subject),
        _edge_lab(prefix, "na", "2951-2", 157, "mmol/L", subject),
        {
            "resourceType": "Condition",
            "id": f"{prefix}-edge-rls",
            "clinicalStatus": {
                "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]
            },
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "32914008"}]},
            "subject": subject,
        },
    ]
    entries = []
    for resource in resources:
        url = (
            patient_url
            if resource["resourceType"] == "Patient"
            else f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, resource['id'])}"
        )
        method_url = f"{resource['resourceType']}/{resource['id']}"
        entries.append({"fullUrl": url, "resource": resource, "request": {"method": "PUT", "url": method_url}})
    return {"resourceType": "Bundle", "entry": entries}


def _rows(tmp_path: Path) -> list[dict[str, dict[str, Any]]]:
    store = JobStore(tmp_path / "jobs.sqlite")
    try:
        jobs = store.job_ids()
        return [{r.patient_id: r.result for r in store.rows(job) if r.result is not None} for job in jobs]
    finally:
        store.close()


def _without_changes(summary: dict[str, Any]) -> dict[str, Any]:
    """The row without what a write would create or did (dry runs; the REST path plans, NDJSON does not)."""
    return {key: value for key, value in summary.items() if key not in ("changes", "written")}


def test_every_path_gives_the_same_assessment(
    fhir_base_url: str,
    unique_prefix: str,
    tmp_path: Path,
    state_dir: Path,
    knowledge: Knowledge,
    capsys: pytest.CaptureFixture[str],
) -> None:
    panel = synth.generate_panel(PATIENTS, seed=SEED, as_of=AS_OF, id_prefix=unique_prefix)
    client = FhirClient(fhir_base_url, allowlist=Allowlist((fhir_base_url,)))
    for bundle in synth.urn_uuid_bundles(panel, method="PUT"):
        client.transaction(bundle)
    ids = [record.patient_id for record in panel.patients]

    # offline: rls-screen evaluate on the Synthea-style Bundles
    offline: dict[str, dict[str, Any]] = {}
    for record in panel.patients:
        path = tmp_path / f"{record.patient_id}.json"
        path.write_text(json.dumps(synth.urn_uuid_bundle(record, bundle_type="collection")))
        assert main(["evaluate", str(path), "--format", "json", "--as-of", AS_OF.isoformat()]) == 0
        offline[record.patient_id] = json.loads(capsys.readouterr().out)
    # the panel exercises what the contract adds: medications and dialysis by Procedure
    advisories = {a["code"] for result in offline.values() for a in result["advisories"]}
    assert "aggravating-medication" in advisories
    assert any(
        basis.startswith("Procedure/")
        for result in offline.values()
        for finding in result["findings"]
        for basis in finding.get("basis", [])
    ), "no finding rests on a dialysis Procedure"
    assert not any(n["reason"] == "not-linked" for result in offline.values() for n in result["notEvaluable"])

    def same(path_name: str, assessment: Assessment, patient_id: str) -> None:
        assert assessment.to_json() == offline[patient_id], f"{path_name}: {patient_id}"

    # an edge patient the panel lacks: a panel Observation carrying potassium as a component (D5) and a
    # ferritin dated only by issued (D4); it is not in the Group, so the batch paths below skip it
    edge = _edge_patient(unique_prefix)
    client.transaction({**edge, "type": "transaction"})
    edge_path = tmp_path / "edge.json"
    edge_path.write_text(
        json.dumps(
            {
                **edge,
                "type": "collection",
                "entry": [{k: v for k, v in e.items() if k != "request"} for e in edge["entry"]],
            }
        )
    )
    assert main(["evaluate", str(edge_path), "--format", "json", "--as-of", AS_OF.isoformat()]) == 0
    edge_id = f"{unique_prefix}-edge"
    offline[edge_id] = json.loads(capsys.readouterr().out)
    assert {f["code"] for f in offline[edge_id]["findings"]} >= {
        "hyperkalemia",
        "iron-deficiency",
        "alcohol-use-positive",
        "b12-deficiency",
        "hba1c-diabetes-range",
        "possible-dehydration",
        "hypernatremia",
    }
    # the panel carries section-11 results too (synth mimics), AUDIT-C among them
    panel_findings = {f["code"] for result in offline.values() for f in result["findings"]}
    assert len(panel_findings & set(MIMIC_FINDINGS)) >= 4, panel_findings

    # REST (screen and batch --group read this way), CDS with a full prefetch and with none
    for patient_id in [*ids, edge_id]:
        same(
            "rest",
            assess(read_patient_data(client, patient_id, knowledge, AS_OF), knowledge=knowledge, as_of=AS_OF),
            patient_id,
        )
        same(
            "cds prefetch",
            _cds(knowledge, fhir_base_url, patient_id, _prefetch(fhir_base_url, knowledge, patient_id)),
            patient_id,
        )
        same("cds fallback", _cds(knowledge, fhir_base_url, patient_id, None), patient_id)

    # NDJSON: synth's files, and a real Bulk $export of the Group (both screened by batch, dry run)
    ndjson_dir = tmp_path / "ndjson"
    synth.write_ndjson(panel, ndjson_dir)
    group = f"Group/{synth.panel_id(unique_prefix)}"
    assert batch(tmp_path, fhir_base_url, "--group", group, "--dry-run") == 0
    assert batch(tmp_path, fhir_base_url, "--bulk", group, "--dry-run") == 0
    assert batch(tmp_path, fhir_base_url, "--ndjson", str(ndjson_dir), "--dry-run") == 0
    exported = {p.parent for p in state_dir.rglob("Observation*.ndjson")}
    assert len(exported) == 1, exported
    for directory in (ndjson_dir, exported.pop()):
        index = NdjsonIndex(tmp_path / f"index-{directory.name}.sqlite")
        index.load(directory)
        for patient_id in ids:
            same(
                f"ndjson {directory.name}",
                assess(index.patient_data(patient_id), knowledge=knowledge, as_of=AS_OF),
                patient_id,
            )
        index.close()

    # the batch jobs' rows: the summary of that same Assessment, on every batch path
    group_rows, bulk_rows, ndjson_rows = _rows(tmp_path)
    for patient_id in ids:
        record = panel.patients[ids.index(patient_id)]
        expected = assess(
            from_bundle(synth.urn_uuid_bundle(record, bundle_type="collection")), knowledge=knowledge, as_of=AS_OF
        )
        summary = _without_changes(patient_summary(expected, ScreenResult(expected, None, False, None)))
        for name, rows in (("group", group_rows), ("bulk", bulk_rows), ("ndjson", ndjson_rows)):
            assert _without_changes(rows[patient_id]) == summary, f"batch --{name}: {patient_id}"
