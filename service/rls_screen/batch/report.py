"""The batch report: counts, a per-patient CSV, and one self-contained HTML page with charts.

Built from the job store alone, so a resumed job reports on every patient, whichever run screened
them. The HTML has no scripts or external assets (inline SVG), so it opens anywhere and can be
attached to an e-mail. It names patients by id only.
"""

from __future__ import annotations

import csv
import html
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rls_screen.batch.jobs import Job, JobProblem, JobStore
from rls_screen.engine import FINDING_ORDER
from rls_screen.quantities import format_number
from rls_screen.ruleset import RuleSet
from rls_screen.wording import unit_text

FERRITIN_BINS = ((0, 15), (15, 30), (30, 50), (50, 75), (75, 100), (100, 150), (150, 300), (300, None))
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
        if self.failures:
            reasons = Counter(reason.split(":")[0] for _, reason in self.failures)
            lines.append("Failed: " + ", ".join(f"{n} {reason}" for reason, n in reasons.most_common()))
        if self.problems:
            errors = sum(1 for problem in self.problems if problem.severity == "error")
            lines.append(
                f"Problems: {errors} error(s), {len(self.problems) - errors} warning(s) (listed in the report)."
            )
        return "\n".join(lines)


def summarise(store: JobStore, job: Job) -> BatchSummary:
    summary = BatchSummary(job, store.counts(job.id), problems=store.problems(job.id))
    for row in store.rows(job.id):
        if row.status == "failed":
            summary.failures.append((row.patient_id, row.reason or ""))
        if row.status != "done" or row.result is None:
            continue
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
    return summary


def write_csv(store: JobStore, job: Job, path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as sink:
        writer = csv.writer(sink)
        writer.writerow(
            ["patient", "status", "reason", "findings", "gfr_category", "iron_band", *CSV_VALUES, "written"]
        )
        for row in store.rows(job.id):
            result: dict[str, Any] = row.result or {}
            findings = result.get("findings", {})
            values = result.get("values", {})
            writer.writerow(
                [
                    row.patient_id,
                    row.status,
                    row.reason or "",
                    ";".join(f"{code}({sev})" if sev else code for code, sev in findings.items()),
                    result.get("gfrCategory") or "",
                    result.get("ironBand", ""),
                    *[values.get(name, "") for name in CSV_VALUES],
                    "yes" if row.written else "no",
                ]
            )


def _bar_chart(title: str, items: list[tuple[str, int]], note: str = "") -> str:
    """A horizontal bar chart as inline SVG."""
    width, bar_height, label_width = 640, 22, 220
    top = 30
    height = top + bar_height * max(len(items), 1) + 30
    biggest = max((n for _, n in items), default=0) or 1
    parts = [
        f'<svg role="img" aria-label="{html.escape(title)}" width="{width}" height="{height}" '
        f'xmlns="http://www.w3.org/2000/svg" font-family="sans-serif" font-size="13">',
        f'<text x="0" y="18" font-weight="bold">{html.escape(title)}</text>',
    ]
    for n, (label, count) in enumerate(items):
        y = top + n * bar_height
        length = int((width - label_width - 60) * count / biggest)
        parts.append(f'<text x="0" y="{y + 15}">{html.escape(label)}</text>')
        parts.append(f'<rect x="{label_width}" y="{y + 3}" width="{length}" height="{bar_height - 6}" fill="#4a78a8"/>')
        parts.append(f'<text x="{label_width + length + 6}" y="{y + 15}">{count}</text>')
    if note:
        parts.append(f'<text x="0" y="{height - 8}" fill="#555">{html.escape(note)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _ferritin_items(values: list[float], unit: str) -> list[tuple[str, int]]:
    items = []
    for low, high in FERRITIN_BINS:
        label = f"{low}-{high} {unit}" if high is not None else f">= {low} {unit}"
        items.append((label, sum(1 for v in values if v >= low and (high is None or v < high))))
    return items


def _short(rules: RuleSet, keys: tuple[str, ...]) -> str:
    return "; ".join(dict.fromkeys(rules.citations[key].short for key in keys))


def _chart_notes(rules: RuleSet) -> tuple[str, str]:
    """The thresholds the ferritin and GFR charts mark, in the words and numbers of the rule set."""
    iron, kidney = rules.iron, rules.kidney
    deficiency, band = iron.deficiency, iron.band
    ferritin = (
        f"Thresholds: < {format_number(deficiency.ferritin_below)} iron deficiency "
        f"({_short(rules, deficiency.citations)}); <= {format_number(band.oral_or_iv_ferritin_at_most)} and "
        f"{format_number(band.oral_or_iv_ferritin_at_most)}-{format_number(band.iv_only_ferritin_at_most)} "
        f"iron therapy bands ({_short(rules, band.citations[:1])})"
    )
    below = {c.category: c.below for c in kidney.gfr_categories}
    reduced, failure = kidney.reduced_function.categories, kidney.failure.categories
    g5 = ", ".join(f"{c} (< {format_number(limit)})" if (limit := below.get(c)) is not None else c for c in failure)
    gfr = (
        f"{reduced[0]}-{reduced[-1]} reduced kidney function; {g5} kidney failure "
        f"({_short(rules, kidney.failure.citations)})"
    )
    return ferritin, gfr


def write_html(summary: BatchSummary, path: Path, csv_name: str, rules: RuleSet) -> None:
    job = summary.job
    findings = [(code, summary.findings[code]) for code in FINDING_ORDER]
    ferritin_unit = unit_text(rules.iron.ferritin_unit)
    ferritin_note, gfr_note = _chart_notes(rules)
    charts = [
        _bar_chart("Patients per finding", findings),
        _bar_chart(
            f"Latest ferritin ({ferritin_unit})", _ferritin_items(summary.ferritin, ferritin_unit), ferritin_note
        ),
        _bar_chart(
            "GFR category of the selected eGFR",
            [(g, summary.gfr_categories[g]) for g in (*EGFR_CATEGORIES, "not determined")],
            gfr_note,
        ),
        _bar_chart(
            f"Iron therapy band ({_short(rules, rules.iron.band.citations[:1])})",
            [(b, summary.iron_bands[b]) for b in IRON_BANDS],
        ),
    ]
    failures = "".join(
        f"<tr><td>{html.escape(pid)}</td><td>{html.escape(reason)}</td></tr>" for pid, reason in summary.failures[:200]
    )
    problems = "".join(
        f"<tr><td>{p.severity}</td><td>{html.escape(p.text)}</td></tr>" for p in summary.problems[:PROBLEMS_SHOWN]
    )
    if len(summary.problems) > PROBLEMS_SHOWN:
        problems += f"<tr><td></td><td>... and {len(summary.problems) - PROBLEMS_SHOWN} more</td></tr>"
    counts = summary.counts
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>RLS secondary-cause screen: {html.escape(job.id)}</title>
<style>body{{font-family:sans-serif;max-width:760px;margin:2em auto;color:#222}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:left}}
figure{{margin:1.5em 0}}</style></head><body>
<h1>RLS secondary-cause screen</h1>
<p>Job <code>{html.escape(job.id)}</code>, as of {job.as_of.isoformat()}, source {html.escape(job.source)}
{"(dry run: nothing written)" if job.dry_run else ""}.<br>
{counts["done"]} patients screened, {counts["failed"]} failed, {counts["pending"]} pending;
{summary.written} with new or changed flags written back.</p>
<p>Iron deficiency, kidney failure and pregnancy are established secondary causes or aggravators of RLS.
Magnesium, potassium and calcium abnormalities are not established causes; they can mimic or aggravate
leg symptoms. Per-patient results: <a href="{html.escape(csv_name)}">{html.escape(csv_name)}</a>.</p>
{"".join(f"<figure>{chart}</figure>" for chart in charts)}
{"<h2>Problems</h2><table><tr><th>Severity</th><th>Problem</th></tr>" + problems + "</table>" if problems else ""}
{"<h2>Not screened</h2><table><tr><th>Patient</th><th>Reason</th></tr>" + failures + "</table>" if failures else ""}
<p style="color:#555">Results from rule set {html.escape(", ".join(sorted(summary.rule_sets)) or "not recorded")};
chart thresholds from rule set {html.escape(f"{rules.id} {rules.version}")}. Generated by rls-screen.</p>
</body></html>
"""
    path.write_text(page, encoding="utf-8")


def write_report(store: JobStore, job: Job, directory: Path, rules: RuleSet) -> tuple[BatchSummary, Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    summary = summarise(store, job)
    csv_path = directory / f"{job.id}.csv"
    html_path = directory / f"{job.id}.html"
    write_csv(store, job, csv_path)
    write_html(summary, html_path, csv_path.name, rules)
    return summary, html_path, csv_path
