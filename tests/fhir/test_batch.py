"""`rls-screen batch` against the real HAPI server: screening, resume after SIGKILL, idempotence,
the Bulk $export path, and bad input."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from tests.support.fhir_data import count, observation, patient, put_all, search

from rls_screen.assessment import assess
from rls_screen.batch.jobs import JobStore
from rls_screen.cli import main
from rls_screen.fhir_client import Allowlist, FhirClient
from rls_screen.knowledge import load_knowledge
from rls_screen.patient_data import group_resources
from rls_screen.synth import Panel, chunked_transaction_bundles, generate_panel

AS_OF = date(2026, 11, 25)
REPO = Path(__file__).resolve().parents[2]


def load_panel(base_url: str, prefix: str, n: int, seed: int = 7) -> Panel:
    panel = generate_panel(n, seed=seed, as_of=AS_OF, id_prefix=prefix)
    client = FhirClient(base_url, allowlist=Allowlist((base_url,)))
    for bundle in chunked_transaction_bundles(panel, patients_per_bundle=25):
        client.transaction(bundle)
    return panel


def expected_findings(panel: Panel) -> dict[str, set[str]]:
    knowledge = load_knowledge()
    expected = {}
    for record in panel.patients:
        data = group_resources(record.patient, record.resources)
        expected[record.patient["id"]] = set(assess(data, knowledge=knowledge, as_of=AS_OF).finding_codes)
    return expected


def active_flags(base_url: str, patient_id: str) -> set[str]:
    return {
        f["identifier"][0]["value"].rsplit(".", 1)[-1]
        for f in search(base_url, "Flag", subject=f"Patient/{patient_id}")
        if f["status"] == "active"
    }


def batch(tmp_path: Path, base_url: str, *args: str) -> int:
    return main(
        [
            "batch",
            "--fhir-url",
            base_url,
            "--as-of",
            AS_OF.isoformat(),
            "--job-db",
            str(tmp_path / "jobs.sqlite"),
            "--report-dir",
            str(tmp_path / "reports"),
            *args,
        ]
    )


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from rls_screen.settings import get_settings

    monkeypatch.setenv("RLS_SCREEN_STATE_DIR", str(tmp_path / "state"))
    get_settings.cache_clear()
    yield tmp_path / "state"
    get_settings.cache_clear()


def test_the_panel_is_screened_and_every_expected_flag_exists(
    fhir_base_url: str, unique_prefix: str, tmp_path: Path, state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    panel = load_panel(fhir_base_url, unique_prefix, 24)
    assert batch(tmp_path, fhir_base_url, "--group", f"Group/{unique_prefix}-panel") == 0
    out = capsys.readouterr().out
    assert "24 screened, 0 failed" in out
    assert "Patients with new or changed write-back: 24." in out  # a first screen writes every patient
    for patient_id, codes in expected_findings(panel).items():
        assert active_flags(fhir_base_url, patient_id) == codes, patient_id
    report = next((tmp_path / "reports").glob("*.html")).read_text()
    assert "<svg" in report
    assert "Patients per finding" in report
    assert "Test Patient" not in report
    rows = (next((tmp_path / "reports").glob("*.csv"))).read_text().splitlines()
    assert len(rows) == 25
    assert rows[0].startswith("patient,status")
    assert all(row.endswith(",yes") for row in rows[1:])  # the CSV's written column

    # Running the whole batch again on unchanged data writes nothing new.
    before = count(fhir_base_url, "RiskAssessment"), count(fhir_base_url, "Flag"), count(fhir_base_url, "Provenance")
    assert batch(tmp_path, fhir_base_url, "--group", f"Group/{unique_prefix}-panel") == 0
    assert "Patients with new or changed write-back: 0." in capsys.readouterr().out
    after = count(fhir_base_url, "RiskAssessment"), count(fhir_base_url, "Flag"), count(fhir_base_url, "Provenance")
    assert after == before


def test_a_job_killed_midway_resumes_with_each_patient_screened_once(
    fhir_base_url: str, unique_prefix: str, tmp_path: Path
) -> None:
    panel = load_panel(fhir_base_url, unique_prefix, 30, seed=11)
    db = tmp_path / "jobs.sqlite"
    env = {**os.environ, "RLS_SCREEN_STATE_DIR": str(tmp_path / "state"), "FHIR_BASE_URL": fhir_base_url}
    command = [
        sys.executable,
        "-m",
        "rls_screen.cli",
        "batch",
        "--group",
        f"Group/{unique_prefix}-panel",
        "--as-of",
        AS_OF.isoformat(),
        "--job-db",
        str(db),
        "--concurrency",
        "1",
        "--group-size",  # groups of 5: the job store fills in steps of 5, so the kill lands midway
        "5",
    ]
    log = (tmp_path / "killed.log").open("wb")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    done = 0
    while time.monotonic() < deadline and done < 8:
        time.sleep(0.2)
        if db.exists():
            with sqlite3.connect(db) as probe:
                try:
                    done = probe.execute("SELECT COUNT(*) FROM patient WHERE status = 'done'").fetchone()[0]
                except sqlite3.OperationalError:
                    done = 0
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    log.close()
    assert 8 <= done < 30, "the job should have been killed midway"
    store = JobStore(db)
    (job_id,) = store.job_ids()
    assert store.counts(job_id)["pending"] > 0
    store.close()

    resumed = subprocess.run(
        [sys.executable, "-m", "rls_screen.cli", "batch", "--resume", job_id, "--job-db", str(db)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    store = JobStore(db)
    rows = list(store.rows(job_id))
    assert len(rows) == 30
    assert all(row.status == "done" for row in rows)
    store.close()
    expected = expected_findings(panel)
    for record in panel.patients:
        patient_id = record.patient["id"]
        flags = search(fhir_base_url, "Flag", subject=f"Patient/{patient_id}")
        codes = [f["identifier"][0]["value"] for f in flags]
        assert len(codes) == len(set(codes)), f"duplicate Flag for {patient_id}"
        assert count(fhir_base_url, "RiskAssessment", subject=f"Patient/{patient_id}") == 1
        assert active_flags(fhir_base_url, patient_id) == expected[patient_id]


@pytest.mark.slow
def test_bulk_export_and_search_paths_give_the_same_findings(
    fhir_base_url: str, unique_prefix: str, tmp_path: Path, state_dir: Path
) -> None:
    load_panel(fhir_base_url, unique_prefix, 12, seed=5)
    assert batch(tmp_path, fhir_base_url, "--group", f"Group/{unique_prefix}-panel", "--dry-run") == 0
    assert batch(tmp_path, fhir_base_url, "--bulk", f"Group/{unique_prefix}-panel", "--dry-run") == 0
    store = JobStore(tmp_path / "jobs.sqlite")
    jobs = store.job_ids()
    by_job = [{r.patient_id: r.result["findings"] for r in store.rows(job)} for job in jobs]
    store.close()
    assert len(by_job[0]) == 12
    assert by_job[0] == by_job[1]


def test_bad_panels_get_clear_messages(
    fhir_base_url: str, unique_prefix: str, tmp_path: Path, state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    put_all(
        fhir_base_url, [{"resourceType": "Group", "id": f"{unique_prefix}-empty", "type": "person", "actual": True}]
    )
    assert batch(tmp_path, fhir_base_url, "--group", f"Group/{unique_prefix}-empty") == 2
    assert "has no active Patient members" in capsys.readouterr().err
    assert batch(tmp_path, fhir_base_url, "--group", f"Group/{unique_prefix}-missing") == 2
    assert "was not found" in capsys.readouterr().err


def test_an_id_file_with_blank_and_malformed_lines_and_a_garbage_patient(
    fhir_base_url: str, unique_prefix: str, tmp_path: Path, state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good, garbage = f"{unique_prefix}-good", f"{unique_prefix}-garbage"
    put_all(
        fhir_base_url,
        [
            patient(good),
            observation(good, 1, "2276-4", 8, "ug/L", "2026-10-01"),
            patient(garbage),
            {
                **observation(garbage, 1, "2276-4", 8, "ug/L", "2026-10-01"),
                "valueQuantity": {"value": 8, "unit": "bananas"},
            },
            {**observation(garbage, 2, "718-7", 1, "g/dL", "2026-10-01"), "status": "entered-in-error"},
        ],
    )
    ids = tmp_path / "ids.txt"
    ids.write_text(f"{good}\n\n   \nnot a valid id!\nPatient/{garbage}\n{unique_prefix}-nobody\n# comment\n")
    assert batch(tmp_path, fhir_base_url, "--patients", str(ids)) == 1
    out = capsys.readouterr().out
    assert "line 4: not a FHIR patient id, skipped" in out
    assert "2 screened, 1 failed" in out
    assert active_flags(fhir_base_url, good) >= {"iron-deficiency"}
    assert active_flags(fhir_base_url, garbage) == {"missing-iron-studies"}
    csv_rows = next((tmp_path / "reports").glob("*.csv")).read_text()
    assert "patient not found on the FHIR server" in csv_rows


def test_ndjson_path_streams_files_offline(tmp_path: Path, unique_prefix: str, state_dir: Path) -> None:
    from rls_screen.synth import write_ndjson

    panel = generate_panel(15, seed=3, as_of=AS_OF, id_prefix=unique_prefix)
    write_ndjson(panel, tmp_path / "ndjson")
    assert (
        main(
            [
                "batch",
                "--ndjson",
                str(tmp_path / "ndjson"),
                "--dry-run",
                "--as-of",
                AS_OF.isoformat(),
                "--job-db",
                str(tmp_path / "jobs.sqlite"),
                "--report-dir",
                str(tmp_path / "r"),
            ]
        )
        == 0
    )
    store = JobStore(tmp_path / "jobs.sqlite")
    (job,) = store.job_ids()
    results: dict[str, Any] = {r.patient_id: set(r.result["findings"]) for r in store.rows(job)}
    store.close()
    assert results == expected_findings(panel)
    assert json.dumps(results, default=sorted)


def test_ndjson_path_in_worker_processes_gives_the_same_findings(
    tmp_path: Path, unique_prefix: str, state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Large exports are indexed and screened in worker processes; force that path on a small panel."""
    from rls_screen.batch import ndjson_index, runner
    from rls_screen.synth import write_ndjson

    monkeypatch.setattr(runner, "OFFLINE_CHUNK", 4)
    monkeypatch.setattr(ndjson_index, "_PARALLEL_FROM_BYTES", 0)
    panel = generate_panel(18, seed=8, as_of=AS_OF, id_prefix=unique_prefix)
    write_ndjson(panel, tmp_path / "ndjson")
    code = main(
        [
            "batch",
            "--ndjson",
            str(tmp_path / "ndjson"),
            "--dry-run",
            "--as-of",
            AS_OF.isoformat(),
            "--concurrency",
            "2",
            "--job-db",
            str(tmp_path / "jobs.sqlite"),
            "--report-dir",
            str(tmp_path / "r"),
        ]
    )
    assert code == 0
    store = JobStore(tmp_path / "jobs.sqlite")
    (job,) = store.job_ids()
    results = {r.patient_id: set(r.result["findings"]) for r in store.rows(job) if r.result is not None}
    store.close()
    assert results == expected_findings(panel)
