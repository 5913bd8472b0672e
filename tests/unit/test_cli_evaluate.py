"""`rls-screen evaluate`: offline evaluation of one Bundle, clear errors for unreadable input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rls_screen.cli import main


def bundle(*resources: dict[str, Any], kind: str = "collection") -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": [{"resource": r} for r in resources]}


PATIENT = {"resourceType": "Patient", "id": "p1", "gender": "male", "birthDate": "1960-05-05"}


def obs(oid: str, quantity: dict[str, Any] | None = None, code: str | None = "2276-4", **extra: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2026-11-01",
        **extra,
    }
    if code:
        resource["code"] = {"coding": [{"system": "http://loinc.org", "code": code}]}
    if quantity is not None:
        resource["valueQuantity"] = quantity
    return resource


def run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | dict[str, Any], *extra: str
) -> tuple[int, str, str]:
    path = tmp_path / "in.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    code = main(["evaluate", str(path), "--as-of", "2026-11-25", *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_json_output_has_the_documented_shape(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ferritin = obs(
        "f1", {"value": 5, "comparator": "<", "unit": "ug/L", "system": "http://unitsofmeasure.org", "code": "ug/L"}
    )
    code, out, err = run(tmp_path, capsys, bundle(PATIENT, ferritin, kind="searchset"), "--format", "json")
    assert code == 0
    assert err == ""
    result = json.loads(out)
    assert result["patient"] == "Patient/p1"
    assert result["asOf"] == "2026-11-25"
    assert result["ruleSetVersion"] == "2026.3"
    deficiency = next(f for f in result["findings"] if f["code"] == "iron-deficiency")
    assert deficiency["ruleId"] == "IRON-DEFICIENCY"
    assert deficiency["basis"] == ["Observation/f1"]
    assert result["ironBand"] == "oral-or-iv"
    assert result["gfrCategory"] is None
    assert {"advisories", "notEvaluable", "findings"} <= set(result)


def test_text_output_is_a_clinician_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hb = obs("h1", {"value": 10.5, "unit": "g/dL", "system": "http://unitsofmeasure.org", "code": "g/dL"}, code="718-7")
    code, out, _ = run(tmp_path, capsys, bundle(PATIENT, hb))
    assert code == 0
    assert "Anaemia (moderate): Hb 10.5 g/dL (= 105 g/L) on 2026-11-01" in out
    assert "threshold Hb (male, non-pregnant) < 130 g/L" in out
    assert "WHO 2024" in out
    assert (
        "No usable result in the 365 days before 2026-11-25: eGFR, ferritin, TSAT, magnesium, potassium, "
        "total calcium" in out
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ({"resourceType": "Patient", "id": "p1"}, "expected a FHIR Bundle, found Patient"),
        (bundle({"resourceType": "Observation", "id": "o"}), "the Bundle holds no Patient"),
        (bundle(PATIENT, {**PATIENT, "id": "p2"}), "holds 2 Patients"),
        ({"resourceType": "Bundle", "type": "document", "entry": []}, "Bundle.type 'document'"),
        ("[1, 2]", "expected a FHIR Bundle, found list"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ('{"resourceType": "Bundle", "entry": ' + '{"a": ' * 100_000 + "1" + "}" * 100_001, "nested too deeply"),
    ],
)
def test_unreadable_input_gives_one_clear_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: Any, message: str
) -> None:
    code, out, err = run(tmp_path, capsys, content)
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert message in err


def test_a_missing_file_is_a_clear_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["evaluate", str(tmp_path / "nope.json")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_a_bad_as_of_date_is_rejected(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["evaluate", str(tmp_path / "x.json"), "--as-of", "25/11/2026"])
    assert exited.value.code == 2
    assert "not a date in the form YYYY-MM-DD" in capsys.readouterr().err


UCUM = "http://unitsofmeasure.org"


@pytest.mark.parametrize(
    ("observation", "reason", "detail"),
    [
        (obs("x3", None), "no-value", "no numeric value"),
        (obs("x4", None, valueString="low"), "no-value", "value is text"),
        (
            obs("x5", {"value": 20, "unit": "furlongs", "system": UCUM, "code": "[fur_us]"}),
            "unit-not-understood",
            "[fur_us]",
        ),
        (obs("x6", {"value": 20, "unit": "nanograms per ml"}), "unit-not-understood", "nanograms per ml"),
        (obs("x7", {"value": "20", "unit": "ug/L", "system": UCUM, "code": "ug/L"}), "no-value", "not a number"),
        (obs("x8", None, dataAbsentReason={"coding": [{"code": "error"}]}), "no-value", "data absent reason: error"),
    ],
)
def test_bad_observations_are_reported_not_used_and_nothing_crashes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], observation: dict[str, Any], reason: str, detail: str
) -> None:
    code, out, _ = run(tmp_path, capsys, bundle(PATIENT, observation), "--format", "json")
    assert code == 0
    result = json.loads(out)
    entry = next(n for n in result["notEvaluable"] if n.get("observation") == f"Observation/{observation['id']}")
    assert entry["reason"] == reason
    assert detail in entry["detail"]
    assert all(observation["id"] not in json.dumps(f["basis"]) for f in result["findings"])


@pytest.mark.parametrize(
    "observation",
    [
        obs("x1", {"value": 20, "unit": "ug/L", "system": UCUM, "code": "ug/L"}, code=None),
        obs("x2", {"value": 20, "unit": "ug/L", "system": UCUM, "code": "ug/L"}, code="1234-5"),
    ],
)
def test_observations_outside_the_data_contract_are_not_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], observation: dict[str, Any]
) -> None:
    """D2: a code the module does not screen is outside the contract, as a server search would leave it."""
    code, out, _ = run(tmp_path, capsys, bundle(PATIENT, observation), "--format", "json")
    assert code == 0
    result = json.loads(out)
    assert f"Observation/{observation['id']}" not in out
    assert "missing-iron-studies" in {f["code"] for f in result["findings"]}
