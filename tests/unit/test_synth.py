"""The synthetic panel generator (rls_screen.synth) and its CLI (``rls-screen synth``).

Checks determinism (in process and across hash seeds), patient independence from panel size, id and
reference integrity, that the promised mess is present, the scenario mix, that the deciding result of
each analyte is the one the manifest says (read back independently, with the spec's unit factors),
structural FHIR validity (fhir.resources R4B), the NDJSON and transaction Bundle outputs, and that the
CLI refuses nonsense with one clear line.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import subprocess
import sys
from collections import Counter
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import ucumvert
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.condition import Condition
from fhir.resources.R4B.group import Group
from fhir.resources.R4B.medicationrequest import MedicationRequest
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.procedure import Procedure
from tests.support.check_digits import loinc_check_digit_ok, snomed_check_digit_ok

from rls_screen import synth
from rls_screen.cli import main
from rls_screen.codesets import load_terminology, value_set_url
from rls_screen.engine.mimics import MIMIC_FINDINGS
from rls_screen.errors import InputError

AS_OF = date(2026, 3, 15)
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
USABLE = ("final", "amended", "corrected")
MODELS: dict[str, Any] = {
    "Patient": Patient,
    "Condition": Condition,
    "Observation": Observation,
    "Group": Group,
    "Bundle": Bundle,
    "MedicationRequest": MedicationRequest,
    "Procedure": Procedure,
}


@pytest.fixture(scope="module")
def panel() -> synth.Panel:
    return synth.generate_panel(200, seed=1, as_of=AS_OF)


def _dump(panel: synth.Panel) -> bytes:
    return orjson.dumps(
        {
            "patients": [[r.patient, *r.resources] for r in panel.patients],
            "group": panel.group,
            "manifest": [m.to_json() for m in panel.manifest],
        }
    )


def _observations(panel: synth.Panel) -> list[dict[str, Any]]:
    return [r for record in panel.patients for r in record.resources if r["resourceType"] == "Observation"]


def _loinc(observation: dict[str, Any]) -> str:
    return next(c["code"] for c in observation["code"]["coding"] if c["system"] == LOINC)


def _effective(observation: dict[str, Any]) -> datetime:
    text = observation.get("effectiveDateTime") or observation["effectivePeriod"]["end"]
    return datetime.fromisoformat(text)


# --- determinism and independence ----------------------------------------------------------------


@pytest.mark.unit
def test_same_arguments_give_identical_bytes(panel: synth.Panel) -> None:
    again = synth.generate_panel(200, seed=1, as_of=AS_OF)
    assert _dump(again) == _dump(panel)


@pytest.mark.unit
@pytest.mark.parametrize(
    "changed",
    [{"seed": 2}, {"as_of": AS_OF + timedelta(days=1)}, {"id_prefix": "other"}],
    ids=["seed", "as-of", "id-prefix"],
)
def test_different_arguments_give_different_panels(panel: synth.Panel, changed: dict[str, Any]) -> None:
    arguments: dict[str, Any] = {"seed": 1, "as_of": AS_OF, "id_prefix": "syn", **changed}
    assert _dump(synth.generate_panel(200, **arguments)) != _dump(panel)


@pytest.mark.unit
def test_output_does_not_depend_on_the_hash_seed(tmp_path: Path) -> None:
    script = (
        "import hashlib, sys; from datetime import date; from pathlib import Path; from rls_screen import synth;"
        "out = Path(sys.argv[1]); synth.write_ndjson(synth.iter_patient_records(25, 3, date(2026, 3, 15)), out);"
        "print(hashlib.sha256(b''.join(p.read_bytes() for p in sorted(out.iterdir()))).hexdigest())"
    )
    digests = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        result = subprocess.run(
            [sys.executable, "-c", script, str(tmp_path / hash_seed)],
            capture_output=True,
            text=True,
            env=env,
            check=True,
            timeout=120,
        )
        digests.add(result.stdout.strip())
    synth.write_ndjson(synth.iter_patient_records(25, 3, AS_OF), tmp_path / "here")
    here = hashlib.sha256(b"".join(p.read_bytes() for p in sorted((tmp_path / "here").iterdir()))).hexdigest()
    assert digests == {here}


@pytest.mark.unit
@pytest.mark.parametrize("index", [1, 2, 17, 60])
def test_patient_is_the_same_alone_and_in_a_bigger_panel(panel: synth.Panel, index: int) -> None:
    alone = synth.generate_patient(index, seed=1, as_of=AS_OF)
    assert alone == panel.patients[index - 1]
    small = synth.generate_panel(index, seed=1, as_of=AS_OF)
    assert small.patients[-1] == panel.patients[index - 1]


@pytest.mark.unit
def test_streamed_records_equal_the_panel(panel: synth.Panel) -> None:
    assert tuple(synth.iter_patient_records(200, 1, AS_OF)) == panel.patients


# --- ids and references --------------------------------------------------------------------------


@pytest.mark.unit
def test_ids_are_unique_valid_and_not_all_digits(panel: synth.Panel) -> None:
    ids = [(r["resourceType"], r["id"]) for record in panel.patients for r in record.all_resources()]
    ids.append(("Group", panel.group["id"]))
    assert len(ids) == len(set(ids))
    assert len({rid for _, rid in ids}) == len(ids), "ids are unique even across resource types"
    for _, rid in ids:
        assert FHIR_ID.fullmatch(rid), rid
        assert not rid.isdigit(), rid
    assert panel.patients[0].patient["id"] == "syn-p0001"
    observations = [r for r in panel.patients[0].resources if r["resourceType"] == "Observation"]
    assert observations[-1]["id"].startswith("syn-p0001-obs-")


@pytest.mark.unit
def test_every_reference_points_at_an_existing_patient(panel: synth.Panel) -> None:
    patients = {f"Patient/{record.patient['id']}" for record in panel.patients}
    for record in panel.patients:
        for resource in record.resources:
            assert resource["subject"]["reference"] == f"Patient/{record.patient['id']}"
    members = [member["entity"]["reference"] for member in panel.group["member"]]
    assert members == [f"Patient/{record.patient['id']}" for record in panel.patients]
    assert set(members) == patients
    group = panel.group
    assert (group["id"], group["type"], group["actual"], group["quantity"]) == ("syn-panel", "person", True, 200)


@pytest.mark.unit
def test_patients_are_synthetic_and_plausible(panel: synth.Panel) -> None:
    ages = []
    for record in panel.patients:
        patient = record.patient
        number = patient["id"].removeprefix("syn-p")
        assert patient["name"][0]["text"] == f"Test Patient {number}"
        assert patient["identifier"][0]["system"] == "https://rls-screen.org/fhir/synthetic-mrn"
        assert patient["meta"]["tag"][0]["code"] == "HTEST"
        birth = date.fromisoformat(patient["birthDate"])
        age = AS_OF.year - birth.year - ((AS_OF.month, AS_OF.day) < (birth.month, birth.day))
        assert age == record.manifest.age
        ages.append(age)
    assert min(ages) >= 8
    assert max(ages) <= 90
    assert any(age < 18 for age in ages), "a few children"
    genders = Counter(record.patient["gender"] for record in panel.patients)
    assert genders["female"] > genders["male"] > 0.25 * len(panel.patients)
    assert genders["female"] + genders["male"] >= 0.95 * len(panel.patients)


@pytest.mark.unit
def test_rls_condition_for_most_patients(panel: synth.Panel) -> None:
    with_rls = 0
    for record in panel.patients:
        rls = [c for c in record.resources if c["resourceType"] == "Condition" and c["id"].endswith("-rls")]
        assert bool(rls) == record.manifest.rls
        for condition in rls:
            with_rls += 1
            codes = {(c["system"], c["code"]) for c in condition["code"]["coding"]}
            assert codes == {
                ("http://snomed.info/sct", "32914008"),
                ("http://hl7.org/fhir/sid/icd-10-cm", "G25.81"),
            }
            assert condition["clinicalStatus"]["coding"][0]["code"] == "active"
            assert condition["verificationStatus"]["coding"][0]["code"] == "confirmed"
            assert date.fromisoformat(condition["onsetDateTime"]) < AS_OF
    assert 0.78 <= with_rls / len(panel.patients) <= 0.92


# --- codes the rules recognise -------------------------------------------------------------------

# The Condition id suffix synth gives each kind -> the ValueSet the reader searches and the engine matches.
CONDITION_VALUE_SETS = {"rls": "rls-condition", "dialysis": "dialysis"}
UIBC = value_set_url("uibc")


@pytest.mark.unit
def test_every_rule_relevant_code_synth_writes_is_in_its_value_set() -> None:
    """Each coding on its own: a server, an export or a site may keep only one of them (SNOMED or ICD-10-CM).

    A synthetic dialysis patient whose SNOMED CT code is missing from the dialysis ValueSet is still
    caught by its ICD-10-CM code, which is how 105502003 went unnoticed; checking codings one by one
    catches such a gap.
    """
    terminology = load_terminology()
    panel = synth.generate_panel(400, seed=1, as_of=AS_OF)  # holds several dialysis Conditions
    seen: Counter[str] = Counter()
    missing: set[tuple[str, str, str]] = set()
    for record in panel.patients:
        for resource in record.resources:
            if resource["resourceType"] == "Condition":
                kind = resource["id"].rsplit("-", 1)[1]
                assert kind in CONDITION_VALUE_SETS, f"new Condition kind {kind!r}: map it to its ValueSet here"
                value_set = CONDITION_VALUE_SETS[kind]
                for coding in resource["code"]["coding"]:
                    seen[f"condition {kind}"] += 1
                    if not terminology.contains(value_set_url(value_set), [(coding["system"], coding["code"])]):
                        missing.add((value_set, coding["system"], coding["code"]))
            elif resource["resourceType"] == "Observation":
                for coding in resource["code"]["coding"]:
                    if coding["system"] == synth.LOCAL_LAB_SYSTEM:
                        continue  # a site's local code, always sent next to its LOINC code (docs/synthetic-panel.md)
                    seen["observation code"] += 1
                    codings = [(coding["system"], coding["code"])]
                    # UIBC is written on purpose, and recognised to be refused as TIBC (ValueSet uibc).
                    if terminology.analyte_of(codings) is None and not terminology.contains(UIBC, codings):
                        missing.add(("an analyte-* ValueSet", coding["system"], coding["code"]))
                answer = resource.get("valueCodeableConcept")
                if answer is not None:
                    [coding] = answer["coding"]
                    pregnant = terminology.contains(
                        value_set_url("pregnancy-status-pregnant"), [(coding["system"], coding["code"])]
                    )
                    seen[f"pregnancy status {coding['display']}"] += 1
                    assert pregnant == (coding["display"] == "Pregnant"), coding
    assert missing == set()
    assert set(seen) == {
        "condition rls",
        "condition dialysis",
        "observation code",
        "pregnancy status Pregnant",
        "pregnancy status Not pregnant",
    }


# --- the mess ------------------------------------------------------------------------------------


@pytest.mark.unit
def test_the_mess_is_present(panel: synth.Panel) -> None:
    observations = _observations(panel)
    statuses = Counter(o["status"] for o in observations)
    assert statuses["entered-in-error"] >= 3
    assert statuses["preliminary"] >= 3
    assert statuses["amended"] + statuses["corrected"] >= 1
    comparators = Counter(
        (_loinc(o), o["valueQuantity"]["comparator"])
        for o in observations
        if "comparator" in o.get("valueQuantity", {})
    )
    assert comparators[("2276-4", "<")] >= 1, "ferritin '<5'"
    assert comparators[("98979-8", ">")] >= 1, "eGFR '>60' / '>90'"
    assert {
        o["valueQuantity"]["value"]
        for o in observations
        if _loinc(o) == "98979-8" and "comparator" in o.get("valueQuantity", {})
    } == {60, 90}
    stale = [o for o in observations if (AS_OF - _effective(o).date()).days > 365]
    assert len(stale) > 0.2 * len(observations)
    assert all((AS_OF - _effective(o).date()).days <= 730 for o in observations)
    assert any("dataAbsentReason" in o and "valueQuantity" not in o for o in observations)
    assert any("effectivePeriod" in o for o in observations)
    assert any(o.get("valueQuantity") == {"value": 3, "unit": "units"} for o in observations), "unit not understood"
    text_only = {
        o["valueQuantity"]["unit"] for o in observations if o.get("valueQuantity", {}).keys() == {"value", "unit"}
    }
    assert {"mcg/L", "mEq/L", "mL/min/1.73m2"} & text_only
    assert any(o.get("referenceRange") for o in observations)
    assert any(o.get("interpretation") for o in observations)


@pytest.mark.unit
def test_unit_and_code_variants_are_present(panel: synth.Panel) -> None:
    seen = {(_loinc(o), o["valueQuantity"].get("code")) for o in _observations(panel) if "valueQuantity" in o}
    expected = {
        ("2276-4", "ng/mL"),
        ("2276-4", "ug/L"),
        ("14723-1", "pmol/L"),
        ("2502-3", "%"),
        ("2498-4", "ug/dL"),
        ("14798-3", "umol/L"),
        ("2500-7", "ug/dL"),
        ("14800-7", "umol/L"),
        ("1988-5", "mg/L"),
        ("1988-5", "mg/dL"),
        ("718-7", "g/dL"),
        ("718-7", "g/L"),
        ("59260-0", "mmol/L"),
        ("2160-0", "mg/dL"),
        ("14682-9", "umol/L"),
        ("98979-8", "mL/min/{1.73_m2}"),
        ("48642-3", "mL/min/{1.73_m2}"),
        ("19123-9", "mmol/L"),
        ("19123-9", "mg/dL"),
        ("2823-3", "mmol/L"),
        ("2823-3", "meq/L"),
        ("17861-6", "mg/dL"),
        ("2000-8", "mmol/L"),
        ("1994-3", "mmol/L"),
        ("1751-7", "g/dL"),
        ("1751-7", "g/L"),
        ("49051-6", "wk"),
    }
    assert expected <= seen, sorted(expected - seen)


@pytest.mark.unit
def test_every_ucum_code_parses() -> None:
    parser = ucumvert.get_ucum_parser()
    for units in synth.codes.UNITS.values():
        for code in units:
            ucumvert.parse_ucum(code, parser)
    ucumvert.parse_ucum("wk", parser)


@pytest.mark.unit
def test_codes_carry_valid_check_digits(panel: synth.Panel) -> None:
    loinc: set[str] = set(synth.LOINC_DISPLAY)
    snomed: set[str] = set()
    for record in panel.patients:
        for resource in record.resources:
            for concept in (resource.get("code", {"coding": []}), resource.get("valueCodeableConcept", {"coding": []})):
                for coding in concept["coding"]:
                    if coding["system"] == LOINC:
                        loinc.add(coding["code"])
                    elif coding["system"] == "http://snomed.info/sct":
                        snomed.add(coding["code"])
    assert {"2276-4", "82810-3", "49051-6"} <= loinc
    assert {"32914008", "77386006"} <= snomed
    assert [code for code in sorted(loinc) if not loinc_check_digit_ok(code)] == []
    assert [code for code in sorted(snomed) if not snomed_check_digit_ok(code)] == []


@pytest.mark.unit
def test_missing_iron_studies_and_pregnancy(panel: synth.Panel) -> None:
    no_ferritin = no_tsat = 0
    for record in panel.patients:
        codes = {_loinc(o) for o in record.resources if o["resourceType"] == "Observation"}
        no_ferritin += not codes & {"2276-4", "14723-1"}
        no_tsat += "2502-3" not in codes and not {"2500-7", "14800-7"} & codes
    assert no_ferritin >= 2
    assert no_tsat >= 5
    pregnant = [m for m in panel.manifest if m.trimester is not None]
    assert {m.trimester for m in pregnant} == {1, 2, 3}
    for entry in pregnant:
        record = panel.patients[entry.index - 1]
        assert record.patient["gender"] == "female"
        by_code = {_loinc(o): o for o in record.resources if o["resourceType"] == "Observation"}
        status = by_code["82810-3"]["valueCodeableConcept"]["coding"][0]
        assert (status["system"], status["code"]) == ("http://snomed.info/sct", "77386006")
        weeks = by_code["49051-6"]["valueQuantity"]
        assert (weeks["system"], weeks["code"]) == (UCUM, "wk")
        assert entry.trimester == (1 if weeks["value"] < 14 else 2 if weeks["value"] < 28 else 3)


# --- the mix and the manifest --------------------------------------------------------------------


@pytest.mark.unit
@pytest.mark.parametrize("n", [200, 1000])
def test_scenario_proportions(n: int) -> None:
    counts = Counter(scenario for scenario in (synth.scenario_for(1, i) for i in range(1, n + 1)))
    weights = dict(synth.SCENARIO_WEIGHTS)
    assert set(counts) <= set(weights)
    for scenario, weight in weights.items():
        assert abs(counts[scenario] / n - weight / 1000) <= 0.01, scenario
    grouped = {
        "iron deficiency": ("iron-deficiency", "iron-deficiency-inflammation"),
        "iron insufficient": ("iron-insufficient", "iron-insufficient-tsat"),
        "CKD G3-G4": ("ckd-g3a", "ckd-g3b", "ckd-g4"),
        "pregnant": ("pregnant-t1", "pregnant-t2", "pregnant-t3"),
    }
    targets = {"iron deficiency": 0.20, "iron insufficient": 0.25, "CKD G3-G4": 0.08, "pregnant": 0.05}
    for name, members in grouped.items():
        assert abs(sum(counts[m] for m in members) / n - targets[name]) <= 0.015, name
    assert abs(counts["normal"] / n - 0.10) <= 0.01
    assert abs(counts["anemia"] / n - 0.10) <= 0.01
    assert abs(counts["kidney-failure"] / n - 0.02) <= 0.01


@pytest.mark.unit
def test_panel_manifest_matches_scenario_for(panel: synth.Panel) -> None:
    assert [m.scenario for m in panel.manifest] == [synth.scenario_for(1, i) for i in range(1, 201)]
    assert panel.scenario_counts() == dict(sorted(Counter(m.scenario for m in panel.manifest).items()))


REQUIRED_FINDINGS = {
    "normal": set(),
    "iron-deficiency": {"iron-deficiency"},
    "iron-deficiency-inflammation": {"iron-deficiency"},
    "iron-insufficient": {"iron-insufficient-for-rls"},
    "iron-insufficient-tsat": {"iron-insufficient-for-rls"},
    "anemia": {"anemia"},
    "ckd-g3a": {"reduced-kidney-function"},
    "ckd-g3b": {"reduced-kidney-function"},
    "ckd-g4": {"reduced-kidney-function"},
    "kidney-failure": {"kidney-failure"},
    "hypomagnesemia": {"hypomagnesemia"},
    "hypokalemia": {"hypokalemia"},
    "hyperkalemia": {"hyperkalemia"},
    "hypocalcemia": {"hypocalcemia"},
    "hypocalcemia-ionized": {"hypocalcemia"},
    "multi-cause": {"iron-deficiency", "anemia", "reduced-kidney-function"},
}


@pytest.mark.unit
def test_expected_findings_follow_the_scenario() -> None:
    for record in synth.iter_patient_records(400, 5, AS_OF):
        entry = record.manifest
        found = set(entry.expected_findings)
        assert REQUIRED_FINDINGS.get(entry.scenario, set()) <= found, (entry.patient_id, entry.scenario)
        if entry.scenario == "normal":
            assert found - set(MIMIC_FINDINGS) == set(), entry  # a section-11 mimic may be drawn on top
        if entry.mimic is None:
            assert not found & set(MIMIC_FINDINGS), entry
        if entry.scenario in ("low-total-calcium-low-albumin", "hypocalcemia-ionized"):
            assert ("hypocalcemia" in found) is (entry.scenario == "hypocalcemia-ionized")
        if entry.scenario in ("iron-iv-band", "iron-overload-risk"):
            assert not found & {"iron-deficiency", "iron-insufficient-for-rls"}


# Spec section 7 factors into canonical units, applied to what the resources say (not to targets).
TO_CANONICAL = {
    "ferritin": {"ng/mL": 1.0, "ug/L": 1.0, "pmol/L": 1 / 2.247, "mcg/L": 1.0},
    "hb": {"g/dL": 1.0, "g/L": 0.1, "mmol/L": 1.6114},
    "k": {"mmol/L": 1.0, "meq/L": 1.0, "mEq/L": 1.0},
    "mg": {"mmol/L": 1.0, "mg/dL": 1 / 2.4305},
    "ca": {"mg/dL": 1.0, "mmol/L": 4.008},
}
ANALYTE_CODES = {
    "ferritin": {"2276-4", "14723-1"},
    "hb": {"718-7", "59260-0"},
    "k": {"2823-3"},
    "mg": {"19123-9"},
    "ca": {"17861-6", "2000-8"},
}
TOLERANCE = {"ferritin": 0.6, "hb": 0.09, "k": 0.051, "mg": 0.03, "ca": 0.06}


def _deciding(resources: tuple[dict[str, Any], ...], codes: set[str]) -> dict[str, Any] | None:
    """Latest usable result (S1-S4), read independently of the engine."""
    usable = [
        o
        for o in resources
        if o["resourceType"] == "Observation"
        and _loinc(o) in codes
        and o["status"] in USABLE
        and "value" in o.get("valueQuantity", {})
        and (o["valueQuantity"].get("code") or o["valueQuantity"]["unit"]) != "units"
        and (AS_OF - _effective(o).date()).days <= 365
    ]
    return max(usable, key=_effective, default=None)


@pytest.mark.unit
def test_deciding_values_are_what_the_manifest_says() -> None:
    checked = Counter()
    for record in synth.iter_patient_records(300, 11, AS_OF):
        targets = dict(record.manifest.targets)
        for analyte, codes in ANALYTE_CODES.items():
            observation = _deciding(record.resources, codes)
            if observation is None:
                assert analyte not in targets, (record.patient_id, analyte)
                continue
            quantity = observation["valueQuantity"]
            unit = quantity.get("code") or quantity["unit"]
            value = quantity["value"] * TO_CANONICAL[analyte][unit]
            if quantity.get("comparator") == "<":
                assert targets[analyte] < value
            else:
                assert math.isclose(value, targets[analyte], abs_tol=TOLERANCE[analyte]), (
                    record.patient_id,
                    analyte,
                    value,
                    targets[analyte],
                )
            checked[analyte] += 1
    assert min(checked.values()) > 220


# --- FHIR validity -------------------------------------------------------------------------------


@pytest.mark.unit
def test_resources_are_structurally_valid_fhir(panel: synth.Panel) -> None:
    kinds: Counter[str] = Counter()
    for record in panel.patients[:40]:
        for resource in record.all_resources():
            MODELS[resource["resourceType"]].model_validate(resource)
            kinds[resource["resourceType"]] += 1
    Group.model_validate(panel.group)
    Bundle.model_validate(next(synth.transaction_bundles(panel)))
    assert kinds["Patient"] == 40
    assert kinds["Condition"] > 20
    assert kinds["Observation"] > 500


@pytest.mark.unit
def test_effective_times_carry_a_timezone(panel: synth.Panel) -> None:
    for observation in _observations(panel):
        assert _effective(observation).tzinfo is not None
        if "issued" in observation:
            assert datetime.fromisoformat(observation["issued"]) > _effective(observation)


# --- NDJSON and Bundles --------------------------------------------------------------------------


@pytest.mark.unit
def test_ndjson_one_resource_per_line(panel: synth.Panel, tmp_path: Path) -> None:
    paths = synth.write_ndjson(panel, tmp_path / "out")
    assert sorted(paths) == ["Condition", "Group", "MedicationRequest", "Observation", "Patient", "Procedure"]
    counts = {}
    for kind, path in paths.items():
        assert path.name == f"{kind}.ndjson"
        lines = path.read_bytes().splitlines()
        for line in lines:
            resource = json.loads(line)
            assert resource["resourceType"] == kind
            assert b"\n" not in line
            assert orjson.dumps(resource) == line
        counts[kind] = len(lines)
    assert counts == panel.resource_counts()
    assert json.loads(paths["Group"].read_bytes()) == panel.group
    assert not list((tmp_path / "out").glob("*.part"))


@pytest.mark.unit
def test_ndjson_streamed_equals_ndjson_from_panel(panel: synth.Panel, tmp_path: Path) -> None:
    from_panel = synth.write_ndjson(panel, tmp_path / "a", manifest=True)
    streamed = synth.write_ndjson(synth.iter_patient_records(200, 1, AS_OF), tmp_path / "b", manifest=True)
    assert {k: p.read_bytes() for k, p in from_panel.items()} == {k: p.read_bytes() for k, p in streamed.items()}
    manifest = [json.loads(line) for line in streamed["manifest"].read_bytes().splitlines()]
    assert [m["scenario"] for m in manifest] == [m.scenario for m in panel.manifest]


@pytest.mark.unit
def test_ndjson_of_nothing_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no patients"):
        synth.write_ndjson([], tmp_path)
    assert list(tmp_path.iterdir()) == []


def _check_transaction(bundle: dict[str, Any]) -> None:
    assert bundle["resourceType"] == "Bundle"
    assert bundle["type"] == "transaction"
    assert bundle["entry"]
    for entry in bundle["entry"]:
        resource = entry["resource"]
        assert entry["request"] == {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"}


@pytest.mark.unit
def test_transaction_bundle_per_patient(panel: synth.Panel) -> None:
    bundles = list(synth.transaction_bundles(panel))
    assert len(bundles) == 201
    for bundle, record in zip(bundles, panel.patients, strict=False):
        _check_transaction(bundle)
        assert [e["resource"] for e in bundle["entry"]] == [record.patient, *record.resources]
    _check_transaction(bundles[-1])
    assert [e["resource"] for e in bundles[-1]["entry"]] == [panel.group]


@pytest.mark.unit
@pytest.mark.parametrize("size", [1, 7, 20, 500])
def test_chunked_transaction_bundles(panel: synth.Panel, size: int) -> None:
    bundles = list(synth.chunked_transaction_bundles(panel, patients_per_bundle=size))
    assert len(bundles) == math.ceil(200 / size) + 1
    seen_patients: list[str] = []
    for bundle in bundles[:-1]:
        _check_transaction(bundle)
        in_bundle: set[str] = set()
        for entry in bundle["entry"]:
            resource = entry["resource"]
            if resource["resourceType"] == "Patient":
                in_bundle.add(resource["id"])
                seen_patients.append(resource["id"])
            else:
                assert resource["subject"]["reference"].removeprefix("Patient/") in in_bundle
        assert len(in_bundle) <= size
    assert seen_patients == [record.patient["id"] for record in panel.patients]
    assert bundles[-1]["entry"][0]["resource"] == panel.group
    assert len(bundles[-1]["entry"]) == 1
    if size == 7:
        streamed = list(synth.chunked_transaction_bundles(synth.iter_patient_records(200, 1, AS_OF), size))
        assert orjson.dumps(streamed) == orjson.dumps(bundles)


@pytest.mark.unit
def test_chunk_size_is_checked(panel: synth.Panel) -> None:
    with pytest.raises(InputError, match="patients per bundle"):
        synth.chunked_transaction_bundles(panel, patients_per_bundle=0)


# --- argument checks -----------------------------------------------------------------------------


@pytest.mark.unit
@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"n": 0}, "number of patients"),
        ({"n": 1_000_001}, "number of patients"),
        ({"n": True}, "number of patients"),
        ({"n": 2.0}, "number of patients"),
        ({"id_prefix": ""}, "id prefix"),
        ({"id_prefix": "9syn"}, "id prefix"),
        ({"id_prefix": "syn_x"}, "id prefix"),
        ({"id_prefix": "a" * 32}, "id prefix"),
        ({"id_prefix": "syn\n"}, "id prefix"),
        ({"as_of": datetime(2026, 1, 1)}, "as_of"),
        ({"as_of": "2026-01-01"}, "as_of"),
        ({"seed": "1"}, "seed"),
    ],
)
def test_bad_arguments_raise_input_error(arguments: dict[str, Any], message: str) -> None:
    call: dict[str, Any] = {"n": 3, "seed": 1, "as_of": AS_OF, "id_prefix": "syn", **arguments}
    with pytest.raises(InputError, match=message):
        synth.generate_panel(call.pop("n"), **call)
    with pytest.raises(InputError, match=message):
        synth.iter_patient_records(arguments.get("n", 3), call["seed"], call["as_of"], call["id_prefix"])


@pytest.mark.unit
@pytest.mark.parametrize("as_of", [date(2028, 2, 29), date(1950, 1, 1), date(2026, 12, 31)])
def test_awkward_dates_work(as_of: date) -> None:
    panel = synth.generate_panel(60, seed=4, as_of=as_of, id_prefix="A-1")
    for record in panel.patients:
        assert date.fromisoformat(record.patient["birthDate"]) < as_of
        for observation in record.resources:
            if observation["resourceType"] == "Observation":
                assert _effective(observation).date() < as_of


# --- CLI -----------------------------------------------------------------------------------------


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.unit
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-n", "0"], "number of patients must be an integer from 1 to 1,000,000, got 0"),
        (["-n", "-5"], "number of patients"),
        (["-n", "abc"], "argument -n/--patients: not an integer: 'abc'"),
        (["-n", "2000000"], "number of patients"),
        (["--seed", "x"], "argument --seed: not an integer"),
        (["--as-of", "2026-02-30"], "argument --as-of: not a date (YYYY-MM-DD): '2026-02-30'"),
        (["--as-of", "yesterday"], "argument --as-of"),
        (["--id-prefix", "1abc"], "id prefix must start with a letter"),
        (["--id-prefix", "has space"], "id prefix"),
        (["--patients-per-bundle", "0", "--bundles", "x"], "--patients-per-bundle"),
    ],
)
def test_cli_refuses_nonsense(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = _run(["synth", *argv, "--ndjson", str(tmp_path / "nd")], capsys)
    assert code == 2
    assert message in err
    assert out == ""
    assert not (tmp_path / "nd").exists()
    assert "Traceback" not in err


@pytest.mark.unit
def test_cli_writes_ndjson_and_bundles(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    argv = ["synth", "-n", "45", "--seed", "3", "--as-of", "2026-03-15", "--id-prefix", "cli"]
    argv += ["--ndjson", str(tmp_path / "nd"), "--bundles", str(tmp_path / "b"), "--patients-per-bundle", "20"]
    code, out, err = _run(argv, capsys)
    assert code == 0, err
    panel = synth.generate_panel(45, seed=3, as_of=AS_OF, id_prefix="cli")
    assert (tmp_path / "nd" / "Patient.ndjson").read_bytes().count(b"\n") == 45
    assert (tmp_path / "nd" / "manifest.jsonl").exists()
    files = sorted((tmp_path / "b").iterdir())
    assert [f.name for f in files] == [f"bundle-{i:06d}.json" for i in range(1, 5)]
    assert json.loads(files[-1].read_bytes())["entry"][0]["resource"] == panel.group
    assert "synth: 45 patients (seed 3, as of 2026-03-15, id prefix 'cli')" in out
    counts = panel.resource_counts()
    assert f"Observation {counts['Observation']}" in out
    assert "Patient 45" in out
    assert "Group 1" in out
    assert "scenarios: " in out
    assert "elapsed: " in out


@pytest.mark.unit
def test_cli_load_refuses_a_server_not_on_the_allowlist(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(["synth", "-n", "2", "--load", "--fhir-url", "https://elsewhere.invalid/fhir"], capsys)
    assert code == 4
    assert "not on the allowlist" in err
