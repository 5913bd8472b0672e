"""Helpers of the resilience tests: panels on a FHIR server, the CLI in a real process, and what the
server holds per patient after a batch (to prove each write happened exactly once).

Server-side checks talk to the FHIR server directly (never through the fault proxy) and bypass any
search cache (``Cache-Control: no-cache``).
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import requests

from rls_screen.assessment import assess
from rls_screen.fhir_client import Allowlist, FhirClient
from rls_screen.knowledge import load_knowledge
from rls_screen.patient_data import group_resources
from rls_screen.synth import Panel, chunked_transaction_bundles, generate_panel
from rls_screen.writeback import FLAG_ID_SYSTEM

AS_OF = date(2026, 11, 25)


def make_panel(prefix: str, n: int, seed: int) -> Panel:
    return generate_panel(n, seed=seed, as_of=AS_OF, id_prefix=prefix)


def load_panel(base_url: str, panel: Panel) -> None:
    """PUT the panel (Patients, their resources, the Group) straight into the server."""
    # A generous read timeout: the shared test server can be slow under other sessions' load.
    client = FhirClient(base_url, allowlist=Allowlist((base_url,)), read_timeout_s=120)
    try:
        for bundle in chunked_transaction_bundles(panel, patients_per_bundle=25):
            client.transaction(bundle)
    finally:
        client.close()


def expected_findings(panel: Panel) -> dict[str, set[str]]:
    """What the engine finds for each patient, evaluated offline from the generated resources."""
    knowledge = load_knowledge()
    return {
        record.patient_id: set(
            assess(group_resources(record.patient, record.resources), knowledge=knowledge, as_of=AS_OF).finding_codes
        )
        for record in panel.patients
    }


# --- the CLI in its own process ---------------------------------------------------------------------


def cli_env(state_dir: Path, fhir_base_url: str, **extra: str) -> dict[str, str]:
    """The environment of a CLI process: its own state dir, FHIR_BASE_URL (allowlisted), no stray secrets."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RLS_SCREEN_")}
    return {**env, "FHIR_BASE_URL": fhir_base_url, "RLS_SCREEN_STATE_DIR": str(state_dir), **extra}


def run_cli(args: Sequence[str], env: Mapping[str, str], timeout_s: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rls_screen.cli", *args],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def batch_args(source: str | Path, job_db: Path, report_dir: Path, *extra: str) -> list[str]:
    """``batch`` over a Group ("Group/ID") or a file of patient ids (a Path)."""
    return [
        "batch",
        *(["--patients", str(source)] if isinstance(source, Path) else ["--group", source]),
        "--as-of",
        AS_OF.isoformat(),
        "--job-db",
        str(job_db),
        "--report-dir",
        str(report_dir),
        *extra,
    ]


@dataclass(frozen=True)
class JobRow:
    patient_id: str
    status: str
    attempts: int
    reason: str | None
    written: bool


def job_rows(job_db: Path, job_id: str | None = None) -> dict[str, JobRow]:
    """The patient rows of a job (the only job when ``job_id`` is None), read without the product's code."""
    with sqlite3.connect(job_db) as db:
        if job_id is None:
            (job_id,) = db.execute("SELECT id FROM job ORDER BY rowid DESC LIMIT 1").fetchone()
        rows = db.execute(
            "SELECT patient_id, status, attempts, reason, written FROM patient WHERE job_id = ?", (job_id,)
        ).fetchall()
    return {row[0]: JobRow(row[0], row[1], int(row[2]), row[3], bool(row[4])) for row in rows}


def done_count(job_db: Path) -> int:
    """Patients the running batch has finished, read from its job store (0 before it exists)."""
    if not job_db.exists():
        return 0
    try:
        with sqlite3.connect(job_db, timeout=1) as db:
            return int(db.execute("SELECT COUNT(*) FROM patient WHERE status = 'done'").fetchone()[0])
    except sqlite3.OperationalError:  # the batch has not created its tables yet
        return 0


def job_ids(job_db: Path) -> list[str]:
    with sqlite3.connect(job_db) as db:
        return [row[0] for row in db.execute("SELECT id FROM job ORDER BY rowid")]


# --- what the server holds ----------------------------------------------------------------------------


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def search_all(base_url: str, resource_type: str, params: Mapping[str, str]) -> list[dict[str, Any]]:
    """Every match, following next links (direct to the server, no cache)."""
    found: list[dict[str, Any]] = []
    url: str | None = f"{base_url}/{resource_type}"
    query: Mapping[str, str] | None = {**params, "_count": "500"}
    while url is not None:
        response = requests.get(url, params=query, headers={"Cache-Control": "no-cache"}, timeout=120)
        response.raise_for_status()
        bundle = response.json()
        found.extend(e["resource"] for e in bundle.get("entry", []) if e.get("search", {}).get("mode") != "outcome")
        url = next((link["url"] for link in bundle.get("link", []) if link["relation"] == "next"), None)
        query = None
    return found


@dataclass(frozen=True)
class FlagState:
    identifier: str
    code: str
    status: str
    version: str


@dataclass(frozen=True)
class ServerState:
    """Per patient: RiskAssessment ids, Flags (identifier, status, version), Provenance ids."""

    risk_assessments: Mapping[str, tuple[str, ...]]
    flags: Mapping[str, tuple[FlagState, ...]]
    provenances: Mapping[str, tuple[str, ...]]
    service_requests: Mapping[str, tuple[str, ...]]

    def active_flags(self, patient_id: str) -> set[str]:
        return {f.code for f in self.flags.get(patient_id, ()) if f.status == "active"}


def server_state(base_url: str, patient_ids: Iterable[str]) -> ServerState:
    ids = sorted(set(patient_ids))
    risk: dict[str, list[str]] = defaultdict(list)
    flags: dict[str, list[FlagState]] = defaultdict(list)
    requests_: dict[str, list[str]] = defaultdict(list)
    owner: dict[str, str] = {}  # "RiskAssessment/x" -> patient id
    for chunk in _chunks(ids, 20):
        subjects = ",".join(f"Patient/{pid}" for pid in chunk)
        for resource in search_all(base_url, "RiskAssessment", {"subject": subjects}):
            pid = resource["subject"]["reference"].removeprefix("Patient/")
            risk[pid].append(resource["id"])
            owner[f"RiskAssessment/{resource['id']}"] = pid
        for resource in search_all(base_url, "Flag", {"subject": subjects}):
            pid = resource["subject"]["reference"].removeprefix("Patient/")
            identifier = next(i["value"] for i in resource.get("identifier", []) if i.get("system") == FLAG_ID_SYSTEM)
            flags[pid].append(
                FlagState(identifier, identifier.rsplit(".", 1)[-1], resource["status"], resource["meta"]["versionId"])
            )
            owner[f"Flag/{resource['id']}"] = pid
        for resource in search_all(base_url, "ServiceRequest", {"subject": subjects}):
            pid = resource["subject"]["reference"].removeprefix("Patient/")
            requests_[pid].append(f"{resource['id']}@{resource['meta']['versionId']}")
            owner[f"ServiceRequest/{resource['id']}"] = pid
    provenance: dict[str, set[str]] = defaultdict(set)
    for chunk in _chunks(sorted(owner), 30):
        for resource in search_all(base_url, "Provenance", {"target": ",".join(chunk)}):
            for target in resource.get("target", []):
                reference = target["reference"].split("/_history/", 1)[0]
                if reference in owner:
                    provenance[owner[reference]].add(resource["id"])
    return ServerState(
        {pid: tuple(sorted(risk[pid])) for pid in ids},
        {pid: tuple(sorted(flags[pid], key=lambda f: f.identifier)) for pid in ids},
        {pid: tuple(sorted(provenance[pid])) for pid in ids},
        {pid: tuple(sorted(requests_[pid])) for pid in ids},
    )


def assert_written_exactly_once(state: ServerState, expected: Mapping[str, set[str]]) -> None:
    """One RiskAssessment, one Provenance, unique Flag identifiers and the expected active Flags per patient."""
    problems = []
    for pid, codes in sorted(expected.items()):
        identifiers = [f.identifier for f in state.flags[pid]]
        if len(state.risk_assessments[pid]) != 1:
            problems.append(f"{pid}: {len(state.risk_assessments[pid])} RiskAssessments")
        if len(identifiers) != len(set(identifiers)):
            problems.append(f"{pid}: duplicate Flags {sorted(identifiers)}")
        if state.active_flags(pid) != codes:
            problems.append(f"{pid}: active Flags {sorted(state.active_flags(pid))}, expected {sorted(codes)}")
        if len(state.provenances[pid]) != 1:
            problems.append(f"{pid}: {len(state.provenances[pid])} Provenances")
        if len(state.service_requests[pid]) > 1:
            problems.append(f"{pid}: {len(state.service_requests[pid])} ServiceRequests")
    assert not problems, "\n".join(problems)
