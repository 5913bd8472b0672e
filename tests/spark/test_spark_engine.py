"""``batch --engine spark`` in Spark local mode gives every patient what the single-machine NDJSON path gives.

One synthetic export with the odd cases of real ones (a BOM, CR and CRLF line ends, blank lines, lines that
are not JSON or not UTF-8, NaN, a 30-digit number, a lone surrogate, a resource naming no patient, a resource
of another server's patient (not linked), a unit nobody understands, a patient repeated, resources of an id
without a Patient line, a second Observation file, files the contract does not read) is screened by both
engines through the CLI, as a user runs them. Files are cut into many small Spark blocks, so a patient's lines
and a file's line numbers come from several tasks. The job stores (per-patient rows and the skipped lines),
the CSV and the HTML must be the same; the Parquet must hold what the job store holds.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from rls_screen.synth import generate_panel, write_ndjson

pytestmark = [pytest.mark.spark, pytest.mark.slow, pytest.mark.timeout(240)]
REPO = Path(__file__).resolve().parents[2]
AS_OF = date(2026, 11, 25)
PREFIX = "spk"


def java17_home() -> str:
    """Java 17's home as the repo finds it for the FHIR server (deploy/fhir-server/java-env.sh)."""
    script = 'source deploy/fhir-server/java-env.sh && fhir_find_java >/dev/null && printf %s "$FHIR_JAVA_HOME_USED"'
    found = subprocess.run(["bash", "-c", script], cwd=REPO, capture_output=True, text=True, check=False)
    if found.returncode != 0 or not found.stdout:
        pytest.fail(f"no Java 17 for Spark: {found.stderr.strip()}")
    return found.stdout


def _odd_export(directory: Path) -> dict[str, str]:
    """The panel with the odd lines; returns which patient carries which odd case."""
    write_ndjson(generate_panel(40, seed=11, as_of=AS_OF, id_prefix=PREFIX), directory)
    patients = (directory / "Patient.ndjson").read_bytes().splitlines()
    ids = [json.loads(line)["id"] for line in patients]
    observations = (directory / "Observation.ndjson").read_bytes().splitlines()
    template = json.loads(observations[0])
    unlinked = dict(
        template, id=f"{PREFIX}-unlinked", subject={"reference": f"http://other.example/fhir/Patient/{ids[3]}"}
    )
    unknown_unit = dict(template, id=f"{PREFIX}-unit", subject={"reference": f"Patient/{ids[5]}"})
    unknown_unit["valueQuantity"] = {"value": 3, "unit": "units"}
    orphan = dict(template, id=f"{PREFIX}-orphan", subject={"reference": "Patient/nobody-here"})
    odd = [
        b"\xef\xbb\xbf" + observations[0],
        b"",
        b"   ",
        b"{not json",
        b"[1]",
        b'{"resourceType": "Observation", "status": "\xff\xfe final"}',
        b'{"resourceType": "Condition", "id": "no-subject"}',
        json.dumps(unlinked).encode(),
        json.dumps(unknown_unit).encode(),
        json.dumps(orphan).encode(),
        b'{"resourceType": "Observation", "x": ' + b'{"a": ' * 5000 + b"1" + b"}" * 5000 + b"}",
    ]
    for n, line in enumerate(observations[1:]):
        if n % 9 == 1:
            line = line.replace(b'"value":', b'"value":NaN,"x":', 1)
        elif n % 9 == 2:
            line = line.replace(b'"value":', b'"value":123456789012345678901234567890,"x":', 1)
        elif n % 9 == 3:
            line = line.replace(b'"status":"final"', b'"status":"final\\ud800"', 1)
        odd.append(line)
    odd.append(b"{not json either")  # in the second file, after blocks of other lines
    half = len(odd) // 2
    for name, lines in (("Observation.ndjson", odd[:half]), ("Observation-2.ndjson", odd[half:])):
        text = b"".join(
            line + (b"\r\n" if n % 5 == 1 else b"\r" if n % 7 == 3 else b"\n") for n, line in enumerate(lines)
        )
        (directory / name).write_bytes(text)
    repeated = json.loads(patients[7])
    repeated["gender"] = "female" if repeated.get("gender") == "male" else "male"
    (directory / "Patient.ndjson").write_bytes(b"\n".join([*patients, json.dumps(repeated).encode()]) + b"\n")
    (directory / "Notes.ndjson").write_bytes(
        b'{"resourceType": "Observation", "subject": {"reference": "Patient/x"}}\n'
    )
    return {"unlinked": ids[3], "unknown unit": ids[5], "repeated": ids[7]}


def _batch(tmp_path: Path, name: str, export: Path, *engine: str) -> dict[str, Any]:
    state = tmp_path / name
    env = {
        **os.environ,
        "JAVA_HOME": java17_home(),
        "RLS_SCREEN_STATE_DIR": str(state),
        "PYSPARK_PYTHON": sys.executable,
        # many small blocks: a patient's lines and a file's line numbers come from several tasks
        "PYSPARK_SUBMIT_ARGS": "--conf spark.sql.files.maxPartitionBytes=65536 --conf spark.ui.enabled=false "
        "pyspark-shell",
    }
    command = [sys.executable, "-m", "rls_screen", "batch", "--ndjson", str(export), "--dry-run"]
    command += ["--as-of", AS_OF.isoformat(), *engine]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=220, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    with sqlite3.connect(state / "jobs.sqlite") as db:
        (job_id,) = db.execute("SELECT id FROM job").fetchone()
        rows = db.execute(
            "SELECT patient_id, status, attempts, reason, result, written FROM patient ORDER BY position"
        ).fetchall()
        problems = db.execute("SELECT severity, text FROM job_problem ORDER BY position").fetchall()
    reports = state / "reports"
    return {
        "job": job_id,
        "rows": rows,
        "problems": problems,
        "csv": (reports / f"{job_id}.csv").read_text(encoding="utf-8").replace(job_id, "JOB"),
        "html": (reports / f"{job_id}.html").read_text(encoding="utf-8").replace(job_id, "JOB"),
        "state": state,
        "stdout": done.stdout,
    }


def test_spark_engine_screens_every_patient_as_the_single_machine_path_does(tmp_path: Path) -> None:
    export = tmp_path / "export"
    cases = _odd_export(export)
    local = _batch(tmp_path, "local", export)
    spark = _batch(tmp_path, "spark", export, "--engine", "spark", "--spark-master", "local[2]")

    assert spark["rows"] == local["rows"]
    assert spark["problems"] == local["problems"]
    assert spark["csv"] == local["csv"]
    assert spark["html"] == local["html"]

    # the odd cases are there, so the comparison above compared them
    results = {row[0]: json.loads(row[4]) for row in local["rows"] if row[4]}
    assert len(local["rows"]) == 40
    assert "nobody-here" not in results
    assert results[cases["unlinked"]]["notEvaluable"] >= 1
    assert results[cases["unknown unit"]]["notEvaluable"] >= 1
    texts = [text for _, text in local["problems"]]
    assert any(text.startswith("Observation.ndjson:1: not JSON") for text in texts)  # the BOM line
    assert any("not UTF-8" in text for text in texts)
    assert any("nested too deeply" in text for text in texts)
    assert any(text.startswith("Observation-2.ndjson:") for text in texts)
    assert any("Condition without a patient" in text for text in texts)

    # the Parquet holds what the job store holds
    import pyarrow.parquet as pq

    (parquet,) = (spark["state"] / "jobs" / spark["job"]).glob("spark/patients.parquet")
    table = pq.read_table(parquet).sort_by("position").to_pylist()
    assert [(r["patient_id"], r["status"], r["reason"], r["result"]) for r in table] == [
        (row[0], row[1], row[3], row[4]) for row in local["rows"]
    ]
