"""What a Bulk export server says, read into typed values: manifest fields, error-file outcomes,
X-Progress and Retry-After (pure; the HTTP side is tests/net/test_bulk_export.py)."""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from rls_screen.batch.bulk_manifest import (
    ExportFile,
    ExportProblem,
    named_patients,
    outcome_problems,
    parse_manifest,
    progress_text,
    read_error_file,
)
from rls_screen.errors import FhirResponseError
from rls_screen.fhir_client import retry_after_seconds

pytestmark = pytest.mark.unit

BASE = "https://fhir.example/r4"
GOOD: dict[str, Any] = {
    "transactionTime": "2026-12-01T20:14:41.740+00:00",
    "request": f"{BASE}/Group/g/$export",
    "requiresAccessToken": True,
    "output": [{"type": "Patient", "url": f"{BASE}/Binary/a"}, {"type": "Observation", "url": f"{BASE}/Binary/b"}],
    "error": [{"type": "OperationOutcome", "url": f"{BASE}/Binary/e"}],
}


def test_a_manifest_as_hapi_sends_it() -> None:
    manifest = parse_manifest(GOOD)
    assert manifest.transaction_time == datetime(2026, 12, 1, 20, 14, 41, 740000, tzinfo=UTC)
    assert manifest.requires_access_token is True
    assert manifest.output == (ExportFile("Patient", f"{BASE}/Binary/a"), ExportFile("Observation", f"{BASE}/Binary/b"))
    assert manifest.error == (ExportFile("OperationOutcome", f"{BASE}/Binary/e"),)
    assert parse_manifest({**GOOD, "transactionTime": "2026-12-01T20:14:41Z", "error": []}).error == ()
    assert parse_manifest({k: v for k, v in GOOD.items() if k != "error"}).error == ()  # absent = nothing failed


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"transactionTime": None}, "no 'transactionTime'"),
        ({"transactionTime": 20261201}, "no 'transactionTime'"),
        ({"transactionTime": "yesterday"}, "not a FHIR instant"),
        ({"transactionTime": "2026-12-01T20:14:41"}, "no time zone"),
        ({"requiresAccessToken": None}, "'requiresAccessToken' is not a boolean"),
        ({"requiresAccessToken": "true"}, "'requiresAccessToken' is not a boolean"),
        ({"requiresAccessToken": 1}, "'requiresAccessToken' is not a boolean"),
        ({"output": None}, "'output' is not a list"),
        ({"output": {"type": "Patient"}}, "'output' is not a list"),
        ({"output": ["Patient"]}, "output item 1 is not an object"),
        ({"output": [{"url": f"{BASE}/Binary/a"}]}, "output item 1 has no resource type"),
        ({"output": [{"type": "../../etc/passwd", "url": f"{BASE}/x"}]}, "output item 1 has no resource type"),
        ({"output": [{"type": "Patient/x", "url": f"{BASE}/x"}]}, "output item 1 has no resource type"),
        ({"output": [{"type": "Patient"}]}, "output item 1 has no absolute http"),
        ({"output": [{"type": "Patient", "url": "Binary/a"}]}, "output item 1 has no absolute http"),
        ({"output": [{"type": "Patient", "url": "file:///etc/passwd"}]}, "output item 1 has no absolute http"),
        ({"error": "none"}, "'error' is not a list"),
        ({"error": [{"type": "OperationOutcome", "url": 7}]}, "error item 1 has no absolute http"),
    ],
)
def test_a_malformed_manifest_is_a_typed_error_naming_the_field(change: dict[str, Any], message: str) -> None:
    body = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    with pytest.raises(FhirResponseError, match=message):
        parse_manifest(body)


def _outcome(*issues: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": list(issues), **extra}


@pytest.mark.parametrize(
    ("outcome", "ids"),
    [
        (_outcome({"severity": "error", "code": "processing", "diagnostics": "cannot export Patient/p-1."}), ["p-1"]),
        (_outcome({"severity": "error", "code": "processing", "expression": ["Patient/p2"]}), ["p2"]),
        (_outcome({"severity": "error", "code": "processing", "location": [f"{BASE}/Patient/p3/_history/2"]}), ["p3"]),
        (_outcome({"severity": "error", "code": "x", "details": {"text": "Patient/a and Patient/b"}}), ["a", "b"]),
        (
            _outcome(
                {"severity": "error", "code": "processing"},
                extension=[{"url": "https://x.example/patient", "valueReference": {"reference": "Patient/p4"}}],
            ),
            ["p4"],
        ),
        (_outcome({"severity": "error", "code": "x", "diagnostics": "OtherPatient/p5 is not a patient reference"}), []),
        (_outcome({"severity": "error", "code": "processing", "diagnostics": "Observation/o1 failed"}), []),
    ],
)
def test_the_patients_an_outcome_names(outcome: dict[str, Any], ids: list[str]) -> None:
    assert named_patients(outcome) == ids


def test_outcome_problems_per_issue_and_patient_and_unreadable_lines(tmp_path: Path) -> None:
    outcome = _outcome(
        {"severity": "error", "code": "processing", "diagnostics": "Observation for Patient/p1 could not be read"},
        {"severity": "warning", "code": "informational", "diagnostics": "  several\n spaces  "},
    )
    assert outcome_problems(outcome, "f line 1") == [
        ExportProblem("error", "processing: Observation for Patient/p1 could not be read", "p1"),
        ExportProblem("warning", "informational: several spaces", "p1"),
    ]
    assert outcome_problems(_outcome({"severity": "bogus", "code": "too-costly"}), "f") == [
        ExportProblem("error", "too-costly")
    ]
    path = tmp_path / "error-1.ndjson"
    path.write_bytes(
        b'{"resourceType": "Patient", "id": "x"}\n\n{not json\n\xff\n{"resourceType": "OperationOutcome"}\n'
    )
    texts = [(problem.severity, problem.text) for problem in read_error_file(path, "export error file 1")]
    assert texts == [
        ("error", "export error file 1 line 1: not an OperationOutcome; the export may be incomplete"),
        ("error", "export error file 1 line 3: not JSON; the export may be incomplete"),
        ("error", "export error file 1 line 4: not JSON; the export may be incomplete"),
        ("error", "export error file 1 line 5: an OperationOutcome without issues; the export may be incomplete"),
    ]


@pytest.mark.parametrize(
    ("header", "logged"),
    [
        ("45% complete, working on Patient/secret-id (Jane Doe)", "45%"),
        ("Build in progress - Status set to QUEUED at 2026-12-01T20:14:39.037+00:00", "queued"),
        ("Build in progress - Status set to IN_PROGRESS at 2026-12-01T20:14:41.740+00:00", "in progress"),
        ("exporting Jane Doe's records", "in progress"),
        (None, "in progress"),
    ],
)
def test_x_progress_is_logged_as_a_percentage_or_a_status_word(header: str | None, logged: str) -> None:
    assert progress_text(header) == logged


def test_retry_after_in_both_rfc_9110_forms() -> None:
    now = datetime(2026, 12, 1, 20, 0, 0, tzinfo=UTC).timestamp()
    assert retry_after_seconds("120", now=now) == 120.0
    assert retry_after_seconds("Tue, 01 Dec 2026 20:00:45 GMT", now=now) == 45.0
    assert retry_after_seconds(email.utils.formatdate(now + 7, usegmt=True), now=now) == 7.0
    assert retry_after_seconds("Tue, 01 Dec 2026 19:00:00 GMT", now=now) == 0.0  # in the past: now
    assert retry_after_seconds("Tue, 01 Dec 2026 20:00:10 -0000", now=now) == 10.0
    assert retry_after_seconds("soon", now=now) is None
    assert retry_after_seconds("nan", now=now) is None
    assert retry_after_seconds(None, now=now) is None
