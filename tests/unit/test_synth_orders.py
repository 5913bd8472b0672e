"""MedicationRequests and dialysis Procedures of the synthetic panel, and its urn:uuid Bundles.

The manifest says which orders must fire ``aggravating-medication`` and which dialysis records the
kidney-failure finding must cite; the engine is held to that here, as to the expected findings.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.medicationrequest import MedicationRequest
from fhir.resources.R4B.procedure import Procedure

from rls_screen import synth
from rls_screen.cli import main
from rls_screen.codesets import RXNORM, load_terminology, value_set_url
from rls_screen.engine import FINDING_ORDER, Knowledge, load_knowledge
from rls_screen.errors import InputError
from rls_screen.patient_data import from_bundle, group_resources
from rls_screen.ruleset import load_ruleset
from rls_screen.screening import assess
from rls_screen.synth import orders

pytestmark = pytest.mark.unit
AS_OF = date(2026, 6, 1)
URN_UUID = re.compile(r"urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


@pytest.fixture(scope="module")
def records() -> list[synth.PatientRecord]:
    return list(synth.iter_patient_records(1500, 3, AS_OF))


@pytest.fixture(scope="module")
def knowledge() -> Knowledge:
    return load_knowledge()


def _of(record: synth.PatientRecord, kind: str) -> list[dict[str, Any]]:
    return [r for r in record.resources if r["resourceType"] == kind]


def _days_ago(text: str) -> int:
    return (AS_OF - datetime.fromisoformat(text).date()).days


# --- codes -----------------------------------------------------------------------------------------


def test_every_drug_code_is_in_the_value_set_it_cites() -> None:
    terminology = load_terminology()
    cited = [drug for _, drugs in orders.AGGRAVATING for drug in drugs] + list(orders.RLS_TREATMENT)
    for drug in cited:
        assert drug.value_set is not None
        assert terminology.contains(value_set_url(drug.value_set), [(RXNORM, drug.code)]), drug
        assert {c.get("display") for c in _concepts(drug.value_set) if c["code"] == drug.code} == {drug.display}
    assert sum(weight for weight, _ in orders.AGGRAVATING) == 100


def test_non_aggravating_drugs_are_in_no_value_set_of_ours() -> None:
    terminology = load_terminology()
    for drug in orders.NON_AGGRAVATING:
        assert drug.value_set is None
        assert not [url for url in terminology.value_sets if terminology.contains(url, [(RXNORM, drug.code)])], drug


def test_dialysis_codes_and_window_come_from_the_terminology_and_rule_set() -> None:
    terminology = load_terminology()
    for code, display in orders.DIALYSIS_PROCEDURES:
        assert terminology.contains(value_set_url("dialysis-procedure"), [(synth.SNOMED, code)])
        assert {c.get("display") for c in _concepts("dialysis-procedure") if c["code"] == code} == {display}
    assert load_ruleset().kidney.dialysis.procedure_within_days == orders.DIALYSIS_WINDOW_DAYS == 90


def _concepts(value_set: str) -> list[dict[str, Any]]:
    root = Path(__file__).parents[2] / "terminology" / f"ValueSet-{value_set}.json"
    data = json.loads(root.read_text(encoding="utf-8"))
    return [concept for include in data["compose"]["include"] for concept in include.get("concept", [])]


# --- the resources ---------------------------------------------------------------------------------


def test_medication_requests_have_the_r4_shape_and_expected_statuses(records: list[synth.PatientRecord]) -> None:
    terminology = load_terminology()
    aggravating = value_set_url("aggravating-medications")
    statuses: Counter[tuple[str, bool]] = Counter()
    for record in records:
        for request in _of(record, "MedicationRequest"):
            MedicationRequest.model_validate(request)
            assert request["intent"] == "order"
            assert request["subject"] == {"reference": f"Patient/{record.patient_id}"}
            assert datetime.fromisoformat(request["authoredOn"]).tzinfo is not None
            (coding,) = request["medicationCodeableConcept"]["coding"]
            assert coding["system"] == "http://www.nlm.nih.gov/research/umls/rxnorm"
            assert coding["code"]
            assert coding["display"] == request["medicationCodeableConcept"]["text"]
            fires = terminology.contains(aggravating, [(RXNORM, coding["code"])])
            statuses[request["status"], fires] += 1
            expected = f"MedicationRequest/{request['id']}" in record.manifest.aggravating_medications
            assert expected is (fires and request["status"] == "active"), request["id"]
    assert set(statuses) == {("active", True), ("active", False), ("stopped", True), ("completed", True)}
    assert min(statuses.values()) >= 20


def test_rls_treatment_only_for_patients_with_rls(records: list[synth.PatientRecord]) -> None:
    terminology = load_terminology()
    rls_sets = [value_set_url(name) for name in ("rls-dopaminergic-ingredients", "rls-alpha2delta-ingredients")]
    rls_sets += [value_set_url(name) for name in ("rls-dopaminergic-clinical-drugs", "rls-alpha2delta-clinical-drugs")]
    treated = 0
    for record in records:
        codes = [r["medicationCodeableConcept"]["coding"][0]["code"] for r in _of(record, "MedicationRequest")]
        on_treatment = any(terminology.contains(url, [(RXNORM, code)]) for url in rls_sets for code in codes)
        assert on_treatment is ("rls-treatment" in record.manifest.quirks)
        assert not on_treatment or record.manifest.rls
        treated += on_treatment
    assert treated > 300


def test_dialysis_procedures_only_in_kidney_failure_inside_or_well_outside_the_window(
    records: list[synth.PatientRecord],
) -> None:
    seen: Counter[str] = Counter()
    for record in records:
        procedures = _of(record, "Procedure")
        if record.manifest.scenario != "kidney-failure":
            assert procedures == []
            continue
        for procedure in procedures:
            Procedure.model_validate(procedure)
            assert procedure["status"] == "completed"
            assert procedure["subject"] == {"reference": f"Patient/{record.patient_id}"}
            days = _days_ago(procedure["performedDateTime"])
            counted = f"Procedure/{procedure['id']}" in record.manifest.dialysis_basis
            assert (2 <= days <= 90) if counted else (400 <= days <= 700), (procedure["id"], days)
            seen["recent" if counted else "old"] += 1
        old_only = procedures and not any(ref.startswith("Procedure/") for ref in record.manifest.dialysis_basis)
        seen["old-only"] += bool(old_only)
        seen["condition"] += "dialysis-condition" in record.manifest.quirks
    assert seen["recent"] >= 10
    assert seen["old"] >= 3
    assert seen["old-only"] >= 1
    assert seen["condition"] >= 5


def test_the_engine_does_what_the_manifest_says(records: list[synth.PatientRecord], knowledge: Knowledge) -> None:
    """Findings, aggravating-medication advisories and the dialysis basis, patient by patient."""
    checked: Counter[str] = Counter()
    for record in records:
        assessment = assess(group_resources(record.patient, record.resources), knowledge=knowledge, as_of=AS_OF)
        manifest = record.manifest
        found = {f.code for f in assessment.findings if f.code in FINDING_ORDER}
        assert found == set(manifest.expected_findings), manifest.patient_id
        fired = sorted(
            ref
            for advisory in assessment.advisories
            if advisory.code == "aggravating-medication"
            for ref in advisory.extra_basis
        )
        assert fired == list(manifest.aggravating_medications), manifest.patient_id
        failure = next((f for f in assessment.findings if f.code == "kidney-failure"), None)
        assert sorted(failure.extra_basis if failure else ()) == list(manifest.dialysis_basis), manifest.patient_id
        checked["aggravating"] += bool(fired)
        checked["dialysis"] += bool(manifest.dialysis_basis)
        checked["stopped"] += "aggravating-medication-stopped" in manifest.quirks
    assert checked["aggravating"] > 150
    assert checked["dialysis"] > 15
    assert checked["stopped"] > 60


def test_orders_draw_from_their_own_stream() -> None:
    """Same patient, two streams: drawing orders leaves the lab stream's values where they were."""
    record = synth.generate_patient(42, seed=1, as_of=AS_OF)
    again = orders.draw_orders(1, 42, record.patient_id, AS_OF, _tz(record), scenario="kidney-failure", rls=True)
    assert [r for r in record.resources if r["resourceType"] in ("MedicationRequest", "Procedure")] == list(
        again.resources
    )
    assert orders.orders_stream(1, 42).random() != orders.orders_stream(2, 42).random()


def _tz(record: synth.PatientRecord) -> Any:
    first = next(r for r in record.resources if r["resourceType"] == "Observation")
    return datetime.fromisoformat(first.get("effectiveDateTime") or first["effectivePeriod"]["end"]).tzinfo


# --- urn:uuid Bundles ------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["POST", "PUT"])
def test_urn_uuid_transaction_bundles(records: list[synth.PatientRecord], method: synth.RequestMethod) -> None:
    sample = records[:60]
    before = json.dumps([r.resources for r in sample])
    bundles = list(synth.urn_uuid_bundles(sample, method=method))
    assert json.dumps([r.resources for r in sample]) == before, "the records are not changed"
    assert len(bundles) == len(sample) + 1
    urls: list[str] = []
    for record, bundle in zip(sample, bundles, strict=False):
        Bundle.model_validate(bundle)
        assert bundle["type"] == "transaction"
        patient_entry, *others = bundle["entry"]
        assert patient_entry["resource"] == record.patient
        assert [e["resource"]["id"] for e in others] == [r["id"] for r in record.resources]
        for entry in bundle["entry"]:
            assert URN_UUID.fullmatch(entry["fullUrl"]), entry["fullUrl"]
            kind, rid = entry["resource"]["resourceType"], entry["resource"]["id"]
            assert entry["request"] == {"method": method, "url": kind if method == "POST" else f"{kind}/{rid}"}
            urls.append(entry["fullUrl"])
        assert {e["resource"]["subject"]["reference"] for e in others} == {patient_entry["fullUrl"]}
    assert len(set(urls)) == len(urls)
    group = bundles[-1]["entry"][0]["resource"]
    members = [m["entity"]["reference"] for m in group["member"]]
    if method == "PUT":
        assert members == [f"Patient/{r.patient_id}" for r in sample]
    else:
        mrns = [r.patient["identifier"][0]["value"] for r in sample]
        assert members == [f"Patient?identifier={synth.MRN_SYSTEM}|{mrn}" for mrn in mrns]


def test_urn_uuids_are_deterministic_from_seed_and_id() -> None:
    first = synth.urn_uuid_bundle(synth.generate_patient(5, seed=1, as_of=AS_OF))
    again = synth.urn_uuid_bundle(synth.generate_patient(5, seed=1, as_of=AS_OF))
    other_seed = synth.urn_uuid_bundle(synth.generate_patient(5, seed=2, as_of=AS_OF))
    assert json.dumps(first) == json.dumps(again)
    assert first["entry"][0]["fullUrl"] != other_seed["entry"][0]["fullUrl"]
    expected = synth.resource_uuid(1, "Patient", "syn-p0005")
    assert first["entry"][0]["fullUrl"] == f"urn:uuid:{expected}"


def test_collection_bundles_evaluate_offline_like_the_records(
    records: list[synth.PatientRecord], knowledge: Knowledge
) -> None:
    sample = [r for r in records if r.manifest.aggravating_medications or r.manifest.dialysis_basis][:40]
    bundles = list(synth.urn_uuid_bundles(sample, bundle_type="collection"))
    assert len(bundles) == len(sample), "no Group Bundle for offline use"
    for record, bundle in zip(sample, bundles, strict=True):
        assert bundle["type"] == "collection"
        assert all("request" not in entry for entry in bundle["entry"])
        offline = assess(from_bundle(json.loads(json.dumps(bundle))), knowledge=knowledge, as_of=AS_OF)
        direct = assess(group_resources(record.patient, record.resources), knowledge=knowledge, as_of=AS_OF)
        assert offline == direct, record.patient_id


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"bundle_type": "batch"}, "Bundle type must be one of transaction, collection"),
        ({"method": "PATCH"}, "request method must be one of POST, PUT"),
    ],
)
def test_bad_bundle_options_raise_input_error(arguments: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError, match=message):
        list(synth.urn_uuid_bundles([synth.generate_patient(1, seed=1, as_of=AS_OF)], **arguments))


# --- CLI -------------------------------------------------------------------------------------------


def test_cli_writes_urn_uuid_bundles_per_patient(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code = main(["synth", "-n", "4", "--as-of", "2026-06-01", "--bundles", str(tmp_path / "b"), "--urn-uuid"])
    assert code == 0
    names = sorted(p.name for p in (tmp_path / "b").iterdir())
    assert names == ["syn-p0001.json", "syn-p0002.json", "syn-p0003.json", "syn-p0004.json", "syn-panel.json"]
    bundle = json.loads((tmp_path / "b" / "syn-p0002.json").read_text())
    assert bundle == synth.urn_uuid_bundle(synth.generate_patient(2, seed=1, as_of=AS_OF))
    assert "5 transaction files, urn:uuid, 1 patient each, Group last" in capsys.readouterr().out

    collection = ["--bundles", str(tmp_path / "c"), "--urn-uuid", "--bundle-type", "collection"]
    code = main(["synth", "-n", "2", "--as-of", "2026-06-01", *collection])
    assert code == 0
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["syn-p0001.json", "syn-p0002.json"]
    assert json.loads((tmp_path / "c" / "syn-p0001.json").read_text())["type"] == "collection"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--urn-uuid", "--patients-per-bundle", "5"], "leave out --patients-per-bundle"),
        (["--bundle-method", "PUT"], "--bundle-method needs --urn-uuid"),
        (["--bundle-type", "collection"], "--bundle-type needs --urn-uuid"),
        (["--urn-uuid", "--bundle-type", "collection", "--load"], "collection is for offline use"),
        (["--urn-uuid", "--bundle-type", "collection", "--bundle-method", "PUT"], "not to collection"),
    ],
)
def test_cli_refuses_bundle_flags_that_do_not_go_together(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, extra: list[str], message: str
) -> None:
    assert main(["synth", "-n", "2", "--bundles", str(tmp_path), *extra]) == 2
    assert message in capsys.readouterr().err
