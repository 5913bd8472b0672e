"""``rls-screen batch --bulk`` against a scripted Bulk server: what the export's error files say
reaches the job, its report and its exit code (per patient where an outcome names one, else as a
problem of the job), and problems of other panels reach the report too."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from tests.support.bulk_server import BulkServer, ndjson, patient
from tests.support.scripted_server import base_url, scripted_server

from rls_screen.batch.jobs import JobStore
from rls_screen.cli import main
from rls_screen.settings import get_settings

AS_OF = date(2026, 11, 25)


def _outcome(severity: str, code: str, **issue: Any) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [{"severity": severity, "code": code, **issue}]}


@pytest.fixture
def bulk_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    errors = {
        "error-1": ndjson(
            _outcome("error", "processing", diagnostics="Observation of Patient/p2 could not be read"),
            _outcome("error", "too-costly", expression=["Patient/p3"]),  # p3 is not in the Patient file
            _outcome("fatal", "exception", diagnostics="shard 4 lost"),
            _outcome("warning", "informational", diagnostics="Patient/p1 has a resource of an unknown profile"),
        )
    }
    script = BulkServer(files={"Patient-a": ndjson(patient("p1"), patient("p2"))}, errors=errors)
    with scripted_server(script) as server:
        script.base = base_url(server)
        monkeypatch.setenv("FHIR_BASE_URL", script.base)
        monkeypatch.setenv("RLS_SCREEN_STATE_DIR", str(tmp_path / "state"))
        get_settings.cache_clear()
        yield script.base
    get_settings.cache_clear()


def _batch(tmp_path: Path, *args: str) -> int:
    return main(
        [
            "batch",
            *args,
            "--as-of",
            AS_OF.isoformat(),
            "--job-db",
            str(tmp_path / "jobs.sqlite"),
            "--report-dir",
            str(tmp_path / "reports"),
        ]
    )


def test_export_errors_fail_the_patients_they_name_and_reach_the_report(
    bulk_server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _batch(tmp_path, "--bulk", "Group/g", "--dry-run") == 1
    out = capsys.readouterr().out
    assert "1 screened, 2 failed" in out
    assert "error: bulk export: exception: shard 4 lost" in out
    assert "Problems: 1 error(s), 1 warning(s)" in out

    store = JobStore(tmp_path / "jobs.sqlite")
    (job_id,) = store.job_ids()
    rows = {row.patient_id: row for row in store.rows(job_id)}
    store.close()
    assert rows["p1"].status == "done"
    assert (rows["p2"].status, rows["p2"].reason) == (
        "failed",
        "bulk export: processing: Observation of Patient/p2 could not be read",
    )
    assert (rows["p3"].status, rows["p3"].reason) == ("failed", "bulk export: too-costly")

    report = (tmp_path / "reports" / f"{job_id}.html").read_text()
    assert "<h2>Problems</h2>" in report
    assert "<td>error</td><td>bulk export: exception: shard 4 lost</td>" in report
    assert "bulk export, Patient/p1: informational: Patient/p1 has a resource of an unknown profile" in report
    csv_rows = (tmp_path / "reports" / f"{job_id}.csv").read_text()
    assert "p2,failed,bulk export: processing" in csv_rows

    # the problems are the job's: a resumed job still reports them and still ends with exit code 1
    assert _batch(tmp_path, "--resume", job_id) == 1
    assert "Problems: 1 error(s), 1 warning(s)" in capsys.readouterr().out


def test_skipped_ndjson_lines_reach_the_report_as_warnings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RLS_SCREEN_STATE_DIR", str(tmp_path / "state"))
    get_settings.cache_clear()
    directory = tmp_path / "ndjson"
    directory.mkdir()
    (directory / "Patient.ndjson").write_bytes(ndjson(patient("n1")) + b"{not json\n")
    try:
        assert _batch(tmp_path, "--ndjson", str(directory), "--dry-run") == 0  # warnings only
    finally:
        get_settings.cache_clear()
    assert "warning: Patient.ndjson:2: not JSON, skipped" in capsys.readouterr().out
    report = next((tmp_path / "reports").glob("*.html")).read_text()
    assert "<td>warning</td><td>Patient.ndjson:2: not JSON, skipped</td>" in report
