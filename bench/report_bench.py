"""The batch worklist page at panel scale: file size, report time, and time to first render in Chromium.

    python bench/report_bench.py [--patients 10000,100000] [--base 1000] [--loads 5]

For each size N, two runs of one panel go into a fresh job store through the real batch runner
(offline, tests/support/worklist_panels.py): ``--base`` synthetic patients are screened, and their
stored results are repeated under other ids up to N (the report reads the store, so this is the same
report code path as a real job of N patients; screening 100,000 patients through the engine would
only add minutes). In the second run every fourth base patient has other data, so the page has new,
changed and resolved findings. ``batch.report.write_report`` then writes both runs' reports; the
second is timed and measured, and opened ``--loads`` times in the system Chromium (Playwright,
``/usr/bin/chromium``, a new context each time):

- first rows in the DOM: the page's own ``performance.mark('worklist-first-render')`` (from navigation start);
- first row visible: ``performance.now()`` once Playwright sees the first table row visible;
- a filter change and a sort on the whole panel, timed inside the page.

Figures go to docs/benchmarks.md by hand, with this command and the machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.worklist_panels import panel_records, screen_run  # noqa: E402

from rls_screen.batch.jobs import Job, JobStore  # noqa: E402
from rls_screen.batch.report import write_report  # noqa: E402
from rls_screen.knowledge import Knowledge, load_knowledge  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
LINK = "https://ehr.example.org/chart/{patient_id}"


def repeat_rows(db_path: Path, job: Job, base: int, patients: int) -> None:
    """Copy the job's ``base`` patients under new ids (``<id>-r<k>``) until it has ``patients``."""
    db = sqlite3.connect(db_path)
    with db:
        for k in range(1, -(-patients // base)):
            db.execute(
                "INSERT INTO patient SELECT job_id, position + ?, patient_id || '-r' || ?, status, attempts, reason, "
                "result, written FROM patient WHERE job_id = ? AND position < ? AND position + ? < ?",
                (k * base, k, job.id, base, k * base, patients),
            )
    db.close()


def build(directory: Path, knowledge: Knowledge, patients: int, base: int) -> tuple[Path, float, float, int]:
    """Two runs of an N-patient panel; the second report's HTML path, wall and CPU seconds, worklist rows."""
    store = JobStore(directory / "jobs.sqlite")
    first = screen_run(store, knowledge, panel_records(base))
    repeat_rows(store.path, first, base, patients)
    write_report(store, first, directory / "first", knowledge, LINK)
    second = screen_run(store, knowledge, panel_records(base, changed=range(1, base + 1, 4)))
    repeat_rows(store.path, second, base, patients)
    started, cpu = time.perf_counter(), time.process_time()
    summary, html_path, _ = write_report(store, second, directory / "second", knowledge, LINK)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    store.close()
    return html_path, elapsed, cpu, len(summary.worklist.rows) if summary.worklist else 0


def load_times(path: Path, loads: int) -> dict[str, list[float]]:
    from playwright.sync_api import sync_playwright

    figures: dict[str, list[float]] = {"mark": [], "visible": [], "filter": [], "sort": []}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        for _ in range(loads):
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            page = context.new_page()
            page.goto(path.as_uri(), wait_until="commit")
            page.wait_for_selector("#worklist tbody tr td", state="visible", timeout=120_000)
            figures["visible"].append(page.evaluate("() => performance.now()"))
            figures["mark"].append(
                page.evaluate("() => performance.getEntriesByName('worklist-first-render')[0].startTime")
            )
            figures["filter"].append(
                page.evaluate(
                    "() => { const t = performance.now(); const s = document.getElementById('f-change');"
                    " s.value = 'new'; s.dispatchEvent(new Event('change')); return performance.now() - t; }"
                )
            )
            figures["sort"].append(
                page.evaluate(
                    "() => { const t = performance.now();"
                    " document.querySelector('#worklist th[data-key=patient] button').click();"
                    " return performance.now() - t; }"
                )
            )
            context.close()
        browser.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", default="10000,100000")
    parser.add_argument("--base", type=int, default=1000)
    parser.add_argument("--loads", type=int, default=5)
    args = parser.parse_args()
    knowledge = load_knowledge()
    print(
        f"machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}"
    )
    print(
        "| patients | worklist rows | HTML size | report time | first rows in DOM | first row visible "
        "| filter (new) | sort (patient) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for n in (int(part) for part in args.patients.split(",")):
        with tempfile.TemporaryDirectory(prefix="rls-report-bench-") as tmp:
            html_path, report_s, report_cpu, rows = build(Path(tmp), knowledge, n, args.base)
            raw = html_path.read_bytes()
            figures = load_times(html_path, args.loads)
            med = {key: statistics.median(values) for key, values in figures.items()}
            print(
                f"| {n:,} | {rows:,} | {len(raw) / 1e6:.1f} MB "
                f"| {report_s:.1f} s ({report_cpu:.1f} s CPU) | {med['mark']:.0f} ms | {med['visible']:.0f} ms "
                f"| {med['filter']:.0f} ms | {med['sort']:.0f} ms |",
                flush=True,
            )


if __name__ == "__main__":
    main()
