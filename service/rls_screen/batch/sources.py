"""Where a batch gets its patients: a Group, an id file, a Condition search, or NDJSON files.

NDJSON (from a Bulk $export or already on disk) is indexed into an SQLite file on disk by patient,
so memory stays flat however large the panel is; each patient's resources are then read back one
patient at a time.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rls_screen.codesets import Terminology, value_set_url
from rls_screen.errors import FhirNotFoundError, FhirOperationError, InputError
from rls_screen.fhir_client import FhirClient
from rls_screen.patient_data import PatientData, group_resources

FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
NDJSON_TYPES = ("Patient", "Observation", "Condition", "Procedure", "MedicationRequest")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PanelIds:
    ids: tuple[str, ...]
    problems: tuple[str, ...] = ()
    """Input lines or members that were skipped, and why (no PHI beyond the id itself)."""


def _patient_id(reference: str) -> str | None:
    """'Patient/abc' or 'abc' -> 'abc'; anything else -> None."""
    value = reference.strip()
    if "/" in value:
        kind, _, rest = value.rpartition("/")
        if not kind.endswith("Patient"):
            return None
        value = rest
    return value if FHIR_ID.match(value) else None


def from_group(client: FhirClient, group: str) -> PanelIds:
    group_id = group.removeprefix("Group/")
    try:
        resource = client.read("Group", group_id)
    except FhirNotFoundError as error:
        raise InputError(f"Group/{group_id} was not found on the FHIR server") from error
    ids: list[str] = []
    problems: list[str] = []
    for n, member in enumerate(resource.get("member", []), start=1):
        reference = str((member.get("entity") or {}).get("reference", ""))
        patient_id = _patient_id(reference)
        if patient_id is None:
            problems.append(f"member {n}: not a Patient reference")
        elif member.get("inactive") is True:
            problems.append(f"member {n}: inactive, skipped")
        else:
            ids.append(patient_id)
    if not ids:
        raise InputError(f"Group/{group_id} has no active Patient members")
    return PanelIds(tuple(dict.fromkeys(ids)), tuple(problems))


def from_file(path: Path) -> PanelIds:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise InputError(f"cannot read {path}: {error.strerror}") from error
    except UnicodeDecodeError as error:
        raise InputError(f"{path} is not UTF-8 text") from error
    ids: list[str] = []
    problems: list[str] = []
    for number, line in enumerate(lines, start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        patient_id = _patient_id(text)
        if patient_id is None:
            problems.append(f"line {number}: not a FHIR patient id, skipped")
        else:
            ids.append(patient_id)
    if not ids:
        raise InputError(f"{path} holds no patient ids" + (f" ({len(problems)} malformed lines)" if problems else ""))
    return PanelIds(tuple(dict.fromkeys(ids)), tuple(problems))


def from_condition_search(client: FhirClient, terminology: Terminology) -> PanelIds:
    """Every patient with an active RLS Condition (SNOMED 32914008 / ICD-10-CM G25.81)."""
    codes = ",".join(f"{s}|{c}" for s, c in sorted(terminology.value_sets[value_set_url("rls-condition")]))
    ids: list[str] = []
    for condition in client.search("Condition", {"code": codes, "clinical-status": "active", "_count": "500"}):
        patient_id = _patient_id(str((condition.get("subject") or {}).get("reference", "")))
        if patient_id:
            ids.append(patient_id)
    if not ids:
        raise InputError("no patient has an active RLS Condition on the FHIR server")
    return PanelIds(tuple(dict.fromkeys(ids)))


class NdjsonIndex:
    """NDJSON resources indexed by patient in an SQLite file, for one-patient-at-a-time reading."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS resource (patient_id TEXT NOT NULL, type TEXT NOT NULL, body TEXT NOT NULL)"
        )
        self.problems: list[str] = []

    def close(self) -> None:
        self._db.close()

    def load(self, directory: Path) -> int:
        """Index every *.ndjson file of the resource types we use; returns resources indexed."""
        if not directory.is_dir():
            raise InputError(f"{directory} is not a directory")
        files = sorted(p for p in directory.glob("*.ndjson") if p.name.split(".")[0].split("-")[0] in NDJSON_TYPES)
        if not any(p.name.startswith("Patient") for p in files):
            raise InputError(f"{directory} has no Patient*.ndjson file")
        indexed = 0
        for path in files:
            batch: list[tuple[str, str, str]] = []
            with path.open(encoding="utf-8") as stream:
                for number, line in enumerate(stream, start=1):
                    if not line.strip():
                        continue
                    row = self._row(line, f"{path.name}:{number}")
                    if row is not None:
                        batch.append(row)
                    if len(batch) >= 5000:
                        self._db.executemany("INSERT INTO resource VALUES (?, ?, ?)", batch)
                        indexed += len(batch)
                        batch.clear()
            self._db.executemany("INSERT INTO resource VALUES (?, ?, ?)", batch)
            indexed += len(batch)
        self._db.execute("CREATE INDEX IF NOT EXISTS by_patient ON resource (patient_id, type)")
        self._db.commit()
        return indexed

    def _row(self, line: str, where: str) -> tuple[str, str, str] | None:
        try:
            resource = json.loads(line)
        except json.JSONDecodeError:
            self.problems.append(f"{where}: not JSON, skipped")
            return None
        if not isinstance(resource, dict):
            self.problems.append(f"{where}: not a resource, skipped")
            return None
        kind = resource.get("resourceType")
        if kind == "Patient":
            patient_id = resource.get("id")
        else:
            subject = resource.get("subject") or resource.get("patient") or {}
            patient_id = _patient_id(str(subject.get("reference", ""))) if isinstance(subject, dict) else None
        if not isinstance(patient_id, str) or not patient_id:
            self.problems.append(f"{where}: {kind} without a patient, skipped")
            return None
        return patient_id, str(kind), line

    def patient_ids(self) -> Iterator[str]:
        for (patient_id,) in self._db.execute("SELECT patient_id FROM resource WHERE type = 'Patient' ORDER BY rowid"):
            yield patient_id

    def patient_data(self, patient_id: str) -> PatientData:
        patient: dict[str, Any] | None = None
        others: list[dict[str, Any]] = []
        for kind, body in self._db.execute(
            "SELECT type, body FROM resource WHERE patient_id = ? ORDER BY rowid", (patient_id,)
        ):
            resource = json.loads(body)
            if kind == "Patient":
                patient = resource
            else:
                others.append(resource)
        if patient is None:
            raise InputError(f"Patient/{patient_id} is not in the NDJSON files")
        return group_resources(patient, others)


def bulk_export(
    client: FhirClient,
    group: str,
    out_dir: Path,
    *,
    types: tuple[str, ...] = ("Patient", "Observation", "Condition"),
    max_wait_s: float = 900.0,
    sleep: Any = time.sleep,
) -> Path:
    """FHIR Bulk Data $export of a Group: kick off, poll (honouring Retry-After), download NDJSON."""
    group_id = group.removeprefix("Group/")
    kickoff = client.request(
        "GET",
        f"Group/{group_id}/$export",
        params={"_type": ",".join(types)},
        headers={"Prefer": "respond-async", "Accept": "application/fhir+json"},
    )
    status_url = kickoff.headers.get("Content-Location")
    if kickoff.status_code != 202 or not status_url:
        raise FhirOperationError(f"bulk export kick-off answered HTTP {kickoff.status_code} without a status URL")
    waited = 0.0
    delay = 2.0
    while True:
        response = client.request("GET", status_url, headers={"Accept": "application/json"})
        if response.status_code == 200:
            manifest = response.json()
            break
        retry_after = response.headers.get("Retry-After")
        pause = float(retry_after) if retry_after and retry_after.isdigit() else delay
        pause = min(pause, 30.0)
        if waited + pause > max_wait_s:
            raise FhirOperationError(f"bulk export not complete after {int(waited)} s")
        log.info(
            "bulk export in progress (%s); next poll in %.0f s",
            response.headers.get("X-Progress", "?"),
            pause,
        )
        sleep(pause)
        waited += pause
        delay = min(delay * 1.5, 15.0)
    out_dir.mkdir(parents=True, exist_ok=True)
    counters: dict[str, int] = {}
    for item in manifest.get("output", []):
        kind = str(item.get("type"))
        counters[kind] = counters.get(kind, 0) + 1
        client.download(str(item["url"]), out_dir / f"{kind}-{counters[kind]}.ndjson")
    if manifest.get("error"):
        log.warning("bulk export reported %d error file(s)", len(manifest["error"]))
    return out_dir
