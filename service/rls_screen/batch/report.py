"""The batch report: a summary, a per-patient CSV, and one self-contained HTML worklist.

Built from the job store alone, so a resumed job reports on every patient, whichever run screened
them. The page (``worklist_page``) lists the patients with findings, most important first, with their
key values and dates, what was written back, a link per patient when the site configured one, and
what changed since the previous run of the same panel (``worklist``), with the trend of the panel's
counts across runs and the panel's counts as charts (``charts``). It opens offline and can be
attached to an e-mail. It names patients by id only.
"""

from __future__ import annotations

import csv
import html
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rls_screen.batch.charts import bar_chart, chart_notes, ferritin_items, short_labels, trend_chart
from rls_screen.batch.jobs import Job, JobProblem, JobStore, PanelRun, PatientRow
from rls_screen.batch.worklist import PatientEntry, Worklist, build_worklist, entries_from_rows, entry_of
from rls_screen.batch.worklist_page import check_link_template, page_data, render_page
from rls_screen.engine import FINDING_ORDER
from rls_screen.knowledge import Knowledge
from rls_screen.priority import ROLE_ORDER
from rls_screen.ruleset import RuleSet
from rls_screen.wording import CHANGE_NAMES, ROLE_NAMES, unit_text

EGFR_CATEGORIES = ("G1", "G2", "G3a", "G3b", "G4", "G5")
IRON_BANDS = ("oral-or-iv", "iv-only", "oral-only", "not-indicated", "indeterminate")
PROBLEMS_SHOWN = 200
CSV_VALUES = ("ferritin", "tsat", "hemoglobin", "egfr", "magnesium", "potassium", "calcium-total", "calcium-ionized")


@dataclass
class BatchSummary:
    job: Job
    counts: dict[str, int]
    findings: Counter[str] = field(default_factory=Counter)
    gfr_categories: Counter[str] = field(default_factory=Counter)
    iron_bands: Counter[str] = field(default_factory=Counter)
    written: int = 0
    ferritin: list[float] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    rule_sets: set[str] = field(default_factory=set)
    """The rule sets the job's results name (one, unless the module was upgraded during a resumed job)."""
    problems: list[JobProblem] = field(default_factory=list)
    """Problems of the job as a whole (skipped input, export errors that name no patient)."""
    worklist: Worklist | None = None
    previous: Job | None = None
    """The previous run of the same panel, None for a first run."""
    runs: list[PanelRun] = field(default_factory=list)
    """The panel's runs up to this one, oldest first (the trend)."""

    def text(self) -> str:
        c = self.counts
        lines = [
            f"Job {self.job.id}: {c['done']} screened, {c['failed']} failed, {c['pending']} pending "
            f"(as of {self.job.as_of.isoformat()}{', dry run' if self.job.dry_run else ''}).",
            f"Patients with new or changed write-back: {self.written}.",
            "Findings: "
            + (", ".join(f"{code} {self.findings[code]}" for code in FINDING_ORDER if self.findings[code]) or "none"),
            "GFR category: "
            + ", ".join(
                f"{g} {self.gfr_categories[g]}" for g in (*EGFR_CATEGORIES, "not determined") if self.gfr_categories[g]
            ),
            "Iron band: " + ", ".join(f"{b} {self.iron_bands[b]}" for b in IRON_BANDS if self.iron_bands[b]),
        ]
        if self.worklist is not None:
            lines.append(f"Worklist: {self.worklist.counts['withFindings']} patient(s) with findings.")
            lines.append(changes_text(self))
        if self.failures:
            reasons = Counter(reason.split(":")[0] for _, reason in self.failures)
            lines.append("Failed: " + ", ".join(f"{n} {reason}" for reason, n in reasons.most_common()))
        if self.problems:
            errors = sum(1 for problem in self.problems if problem.severity == "error")
            lines.append(
                f"Problems: {errors} error(s), {len(self.problems) - errors} warning(s) (listed in the report)."
            )
        return "\n".join(lines)


def changes_text(summary: BatchSummary) -> str:
    """'Since the previous run of this panel (job-x, as of 2026-11-01): 3 new, 1 changed, 2 resolved findings.'"""
    changes = summary.worklist.counts["changes"] if summary.worklist is not None else None
    if summary.previous is None or changes is None:
        return "First run of this panel: no earlier run to compare with."
    counts = ", ".join(f"{changes[kind]} {CHANGE_NAMES[kind]}" for kind in ("new", "changed", "resolved"))
    return (
        f"Since the previous run of this panel ({summary.previous.id}, as of {summary.previous.as_of.isoformat()}): "
        f"{counts} findings."
    )


def add_to_summary(summary: BatchSummary, row: PatientRow) -> None:
    """Count one patient's row (``JobStore.rows``) into the summary."""
    if row.status == "failed":
        summary.failures.append((row.patient_id, row.reason or ""))
    if row.status != "done" or row.result is None:
        return
    result = row.result
    if isinstance(result.get("ruleSet"), str):
        summary.rule_sets.add(result["ruleSet"])
    summary.findings.update(result.get("findings", {}).keys())
    summary.gfr_categories[result.get("gfrCategory") or "not determined"] += 1
    summary.iron_bands[result.get("ironBand", "indeterminate")] += 1
    summary.written += int(row.written)
    ferritin = result.get("values", {}).get("ferritin")
    if isinstance(ferritin, int | float):
        summary.ferritin.append(float(ferritin))


def add_worklist(
    store: JobStore, summary: BatchSummary, knowledge: Knowledge, current: dict[str, PatientEntry] | None = None
) -> None:
    """The worklist against the previous run of the same panel; records this run for the next one."""
    job = summary.job
    previous = store.previous_run(job)
    if current is None:
        current = entries_from_rows(store.rows(job.id), dry_run=job.dry_run)
    before = entries_from_rows(store.rows(previous.id), dry_run=previous.dry_run) if previous else None
    summary.worklist = build_worklist(current, before, knowledge.terminology.concepts)
    summary.previous = previous
    store.record_panel_run(job, summary.worklist.counts)
    summary.runs = store.panel_runs(job)


CSV_HEADER = ("patient", "status", "reason", "findings", "gfr_category", "iron_band", *CSV_VALUES, "written")


def csv_row(row: PatientRow) -> list[Any]:
    """One patient's line of the per-patient CSV."""
    result: dict[str, Any] = row.result or {}
    findings = result.get("findings", {})
    values = result.get("values", {})
    return [
        row.patient_id,
        row.status,
        row.reason or "",
        ";".join(f"{code}({sev})" if sev else code for code, sev in findings.items()),
        result.get("gfrCategory") or "",
        result.get("ironBand", ""),
        *[values.get(name, "") for name in CSV_VALUES],
        "yes" if row.written else "no",
    ]


def _trend(runs: list[PanelRun]) -> str:
    """The trend chart and its table; empty for a first run."""
    if len(runs) < 2:
        return "<p>One run so far: the trend starts with the next run of this panel.</p>"
    roles = [role for role in (*ROLE_ORDER, "other") if any(run.counts.get("byRole", {}).get(role) for run in runs)]
    series = [("with findings", [int(run.counts.get("withFindings", 0)) for run in runs])]
    series += [
        (ROLE_NAMES.get(role, role), [int(run.counts.get("byRole", {}).get(role, 0)) for run in runs]) for role in roles
    ]
    labels = [f"{run.job.as_of.isoformat()} #{n}" for n, run in enumerate(runs, start=1)]
    chart = trend_chart("Patients with findings across runs of this panel (by most important finding)", labels, series)
    head = "".join(f'<th scope="col">{html.escape(name)}</th>' for name, _ in series)
    head += "".join(f'<th scope="col">{CHANGE_NAMES[kind]}</th>' for kind in ("new", "changed", "resolved"))
    body = ""
    for n, run in enumerate(runs):
        changes = run.counts.get("changes") or {}
        cells = "".join(f"<td>{values[n]}</td>" for _, values in series)
        cells += "".join(f"<td>{changes.get(kind, '')}</td>" for kind in ("new", "changed", "resolved"))
        body += f'<tr><th scope="row">{html.escape(run.job.id)}, as of {labels[n]}</th>{cells}</tr>'
    table = (
        '<details><summary>The trend as a table</summary><table class="counts"><tr><th scope="col">Run</th>'
        f"{head}</tr>{body}</table></details>"
    )
    return f"<figure>{chart}</figure>{table}"


def _charts(summary: BatchSummary, rules: RuleSet) -> str:
    ferritin_unit = unit_text(rules.iron.ferritin_unit)
    ferritin_note, gfr_note = chart_notes(rules)
    charts = [
        bar_chart("Patients per finding", [(code, summary.findings[code]) for code in FINDING_ORDER]),
        bar_chart(f"Latest ferritin ({ferritin_unit})", ferritin_items(summary.ferritin, ferritin_unit), ferritin_note),
        bar_chart(
            "GFR category of the selected eGFR",
            [(g, summary.gfr_categories[g]) for g in (*EGFR_CATEGORIES, "not determined")],
            gfr_note,
        ),
        bar_chart(
            f"Iron therapy band ({short_labels(rules, rules.iron.band.citations[:1])})",
            [(b, summary.iron_bands[b]) for b in IRON_BANDS],
        ),
    ]
    return "".join(f"<figure>{chart}</figure>" for chart in charts)


def _tables(summary: BatchSummary) -> str:
    failures = "".join(
        f"<tr><td>{html.escape(pid)}</td><td>{html.escape(reason)}</td></tr>" for pid, reason in summary.failures[:200]
    )
    problems = "".join(
        f"<tr><td>{p.severity}</td><td>{html.escape(p.text)}</td></tr>" for p in summary.problems[:PROBLEMS_SHOWN]
    )
    if len(summary.problems) > PROBLEMS_SHOWN:
        problems += f"<tr><td></td><td>... and {len(summary.problems) - PROBLEMS_SHOWN} more</td></tr>"
    out = ""
    if problems:
        out += (
            '<h2>Problems</h2><table class="counts"><tr><th scope="col">Severity</th><th scope="col">Problem</th></tr>'
        )
        out += problems + "</table>"
    if failures:
        out += '<h2>Not screened</h2><table class="counts"><tr><th scope="col">Patient</th>'
        out += f'<th scope="col">Reason</th></tr>{failures}</table>'
    return out


def write_html(
    summary: BatchSummary,
    path: Path,
    csv_name: str,
    rules: RuleSet,
    knowledge: Knowledge | None = None,
    link_template: str | None = None,
) -> None:
    job, counts = summary.job, summary.counts
    worklist = summary.worklist or Worklist((), {"withFindings": 0, "changes": None}, False)
    previous = summary.previous
    concepts = knowledge.terminology.concepts if knowledge is not None else {}
    data = page_data(
        worklist,
        concepts,
        check_link_template(link_template),
        {"job": previous.id, "asOf": previous.as_of.isoformat()} if previous is not None else None,
    )
    heading = (
        f"<p>Job <code>{html.escape(job.id)}</code>, as of {job.as_of.isoformat()}, source "
        f"{html.escape(job.source)}{' (dry run: nothing written)' if job.dry_run else ''}.<br>"
        f"{counts['done']} patients screened, {counts['failed']} failed, {counts['pending']} pending; "
        f"{worklist.counts['withFindings']} with findings; {summary.written} with new or changed write-back.</p>"
        f'<p>Per-patient results of every patient: <a href="{html.escape(csv_name)}">{html.escape(csv_name)}</a>.</p>'
    )
    footer = (
        f"Results from rule set {html.escape(', '.join(sorted(summary.rule_sets)) or 'not recorded')}; "
        f"chart thresholds from rule set {html.escape(f'{rules.id} {rules.version}')}. Generated by rls-screen."
    )
    page = render_page(
        title=f"RLS secondary-cause screen: {job.id}",
        sections={
            "heading": heading,
            "changes": html.escape(changes_text(summary)),
            "trend": _trend(summary.runs),
            "charts": _charts(summary, rules),
            "tables": _tables(summary),
            "footer": footer,
        },
        data=data,
    )
    path.write_text(page, encoding="utf-8")


def write_report(
    store: JobStore, job: Job, directory: Path, knowledge: Knowledge, link_template: str | None = None
) -> tuple[BatchSummary, Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    csv_path = directory / f"{job.id}.csv"
    html_path = directory / f"{job.id}.html"
    summary = BatchSummary(job, store.counts(job.id), problems=store.problems(job.id))
    current: dict[str, PatientEntry] = {}
    with csv_path.open("w", newline="", encoding="utf-8") as sink:
        writer = csv.writer(sink)
        writer.writerow(CSV_HEADER)
        # One pass over the stored rows (paged by the store) feeds the summary, the CSV and the worklist:
        # only the worklist's small entries are kept, never every patient's full result (memory flat with size).
        for row in store.rows(job.id):
            add_to_summary(summary, row)
            writer.writerow(csv_row(row))
            if (entry := entry_of(row, dry_run=job.dry_run)) is not None:
                current[row.patient_id] = entry
    add_worklist(store, summary, knowledge, current)
    write_html(summary, html_path, csv_path.name, knowledge.ruleset, knowledge, link_template)
    return summary, html_path, csv_path
