"""Where a batch gets its patients: a Group, an id file, a Condition search, or NDJSON files.

NDJSON (from a Bulk $export or already on disk) is indexed by patient (``ndjson_index.NdjsonIndex``,
re-exported here) and read back one patient at a time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from rls_screen.batch.ndjson_index import NDJSON_TYPES as NDJSON_TYPES
from rls_screen.batch.ndjson_index import NdjsonIndex as NdjsonIndex
from rls_screen.batch.ndjson_index import patient_id_from_text
from rls_screen.codesets import Terminology, value_set_url
from rls_screen.errors import FhirNotFoundError, InputError
from rls_screen.fhir_client import FhirClient
from rls_screen.references import patient_id_of

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PanelIds:
    ids: tuple[str, ...]
    problems: tuple[str, ...] = ()
    """Input lines or members that were skipped, and why (no PHI beyond the id itself)."""


def from_group(client: FhirClient, group: str) -> PanelIds:
    group_id = group.removeprefix("Group/")
    try:
        resource = client.read("Group", group_id)
    except FhirNotFoundError as error:
        raise InputError(f"Group/{group_id} was not found on the FHIR server") from error
    ids: list[str] = []
    problems: list[str] = []
    members = resource.get("member", [])
    for n, member in enumerate(members if isinstance(members, list) else [], start=1):
        entity = member.get("entity") if isinstance(member, dict) else None
        patient_id = patient_id_of(entity.get("reference") if isinstance(entity, dict) else None, client.base_url)
        if patient_id is None or not isinstance(member, dict):
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
        patient_id = patient_id_from_text(text)
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
        subject = condition.get("subject")
        patient_id = patient_id_of(subject.get("reference") if isinstance(subject, dict) else None, client.base_url)
        if patient_id:
            ids.append(patient_id)
    if not ids:
        raise InputError("no patient has an active RLS Condition on the FHIR server")
    return PanelIds(tuple(dict.fromkeys(ids)))
