"""The panel worklist: one row per patient with findings, most important first, with what changed.

Pure: it reads the per-patient results a batch job stored (``runner.patient_summary``) for this run
and for the previous run of the same panel, and returns rows and counts; the page (``worklist_page``)
and the CSV show them. Order is ``rls_screen.priority`` (role from CodeSystem rls-finding, then
severity), so a finding a new rule set adds slots in as data. Words come from ``wording``.

A finding is *new* when the patient did not have it in the previous run (or was not in it), *resolved*
when the patient was screened in both runs and no longer has it, *changed* when its severity or one of
its values differs (a newer result with the same value is not a change).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from rls_screen.batch.jobs import PatientRow
from rls_screen.codesets import CodeConcept
from rls_screen.model import Assessment
from rls_screen.priority import ROLE_ORDER, finding_priority, role_of
from rls_screen.wording import severity_name, value_phrase, value_text

CHANGE_KINDS = ("new", "changed", "resolved")
WRITTEN_KINDS = ("created", "updated", "unchanged", "dry-run")


def finding_details(assessment: Assessment) -> dict[str, list[list[str]]]:
    """What the worklist shows and compares for each finding: its values as
    [analyte, value as shown, date, the value phrase with its date] (stored with the patient's result)."""
    return {
        f.code: [[v.analyte, value_text(v), v.effective.isoformat(), value_phrase(v)] for v in f.values]
        for f in assessment.findings
    }


@dataclass(frozen=True)
class PanelFinding:
    code: str
    severity: str | None
    values: tuple[tuple[str, ...], ...] = ()
    """(analyte, value as shown, date, phrase) per value; empty for results stored before values were."""

    def compared(self) -> tuple[str | None, frozenset[tuple[str, str]]]:
        return self.severity, frozenset((v[0], v[1]) for v in self.values)

    def text(self) -> str:
        """The values with their dates ('ferritin 8 µg/L on 2026-10-09'), or the severity alone."""
        return "; ".join(v[3] for v in self.values) or (severity_name(self.severity) if self.severity else "")


@dataclass(frozen=True)
class PatientEntry:
    """One screened patient of one run."""

    patient_id: str
    findings: tuple[PanelFinding, ...]
    written: str
    """One of ``WRITTEN_KINDS``."""
    changes: tuple[str, ...]
    """What the write-back created or changed (or would have, in a dry run)."""


def written_kind(changes: Iterable[str], *, dry_run: bool) -> str:
    changes = tuple(changes)
    if dry_run:
        return "dry-run"
    if not changes:
        return "unchanged"
    # writeback.plan_writeback names each change: "Flag x (new, active)", "Flag x (updated, active)",
    # "Flag x (inactive)", "ServiceRequest iron studies (revoked)", "RiskAssessment (n finding(s))"
    if any(word in change for change in changes for word in ("updated", "inactive", "revoked")):
        return "updated"
    return "created"


def entry_of(row: PatientRow, *, dry_run: bool) -> PatientEntry | None:
    """A screened patient's worklist entry (``JobStore.rows``); None for a patient not screened."""
    if row.status != "done" or row.result is None:
        return None
    result = row.result
    details: Mapping[str, Any] = result.get("details") or {}
    findings = tuple(
        PanelFinding(code, severity, tuple(tuple(v) for v in details.get(code, ())))
        for code, severity in (result.get("findings") or {}).items()
    )
    changes = tuple(result.get("changes") or ())
    return PatientEntry(row.patient_id, findings, written_kind(changes, dry_run=dry_run), changes)


def entries_from_rows(rows: Iterable[PatientRow], *, dry_run: bool) -> dict[str, PatientEntry]:
    """The screened patients of a job (``JobStore.rows``), by id."""
    return {entry.patient_id: entry for row in rows if (entry := entry_of(row, dry_run=dry_run)) is not None}


@dataclass(frozen=True)
class FindingChange:
    code: str
    kind: str
    """One of ``CHANGE_KINDS``."""
    before: str = ""
    after: str = ""


def compare(current: PatientEntry, previous: PatientEntry | None) -> tuple[FindingChange, ...]:
    """How the patient's findings differ from the previous run (all new when they were not in it)."""
    before = {f.code: f for f in previous.findings} if previous is not None else {}
    now = {f.code: f for f in current.findings}
    changes: list[FindingChange] = []
    for code, finding in now.items():
        old = before.get(code)
        if old is None:
            changes.append(FindingChange(code, "new", after=finding.text()))
        elif (
            (old.compared() != finding.compared())
            if old.values and finding.values
            else old.severity != finding.severity
        ):
            # a result stored without values (before they were kept) is compared on severity alone
            changes.append(FindingChange(code, "changed", old.text(), finding.text()))
    changes.extend(
        FindingChange(code, "resolved", before=old.text()) for code, old in before.items() if code not in now
    )
    return tuple(changes)


@dataclass(frozen=True)
class WorklistRow:
    entry: PatientEntry
    ranked: tuple[PanelFinding, ...]
    """The patient's current findings, most important first."""
    changes: tuple[FindingChange, ...]


@dataclass(frozen=True)
class Worklist:
    rows: tuple[WorklistRow, ...]
    """Patients with a finding now, or one resolved since the previous run; most important first."""
    counts: dict[str, Any]
    """The panel's counts for this run (the trend across runs reads them back)."""
    has_previous: bool


def _row_key(row: WorklistRow, concepts: Mapping[str, CodeConcept]) -> tuple[Any, ...]:
    """Patients by their most important finding, then by how many findings, then the next ones; then id.
    Patients with only resolved findings come last."""
    ranks = [finding_priority(f, concepts) for f in row.ranked]
    if not ranks:
        return (1, (), 0, (), row.entry.patient_id)
    return (0, ranks[0], -len(ranks), ranks[1:], row.entry.patient_id)


def build_worklist(
    current: Mapping[str, PatientEntry],
    previous: Mapping[str, PatientEntry] | None,
    concepts: Mapping[str, CodeConcept],
) -> Worklist:
    rows: list[WorklistRow] = []
    for patient_id, entry in current.items():
        old = previous.get(patient_id) if previous is not None else None
        changes = compare(entry, old) if previous is not None else ()
        if not entry.findings and not changes:
            continue
        ranked = tuple(sorted(entry.findings, key=lambda f: finding_priority(f, concepts)))
        rows.append(WorklistRow(entry, ranked, changes))
    rows.sort(key=lambda row: _row_key(row, concepts))
    return Worklist(tuple(rows), panel_counts(current, rows, concepts, previous is not None), previous is not None)


def panel_counts(
    current: Mapping[str, PatientEntry],
    rows: Iterable[WorklistRow],
    concepts: Mapping[str, CodeConcept],
    has_previous: bool,
) -> dict[str, Any]:
    """Patients screened, with a finding, per role of their most important finding; findings new,
    changed and resolved since the previous run (None for a first run)."""
    roles: Counter[str] = Counter()
    changes: Counter[str] = Counter()
    with_findings = 0
    for row in rows:
        if row.ranked:
            with_findings += 1
            roles[role_of(row.ranked[0].code, concepts) or "other"] += 1
        changes.update(change.kind for change in row.changes)
    return {
        "screened": len(current),
        "withFindings": with_findings,
        "byRole": {role: roles[role] for role in (*ROLE_ORDER, "other") if roles[role]},
        "changes": {kind: changes[kind] for kind in CHANGE_KINDS} if has_previous else None,
    }
