"""Bulk/NDJSON path vs a plain DuckDB query over the same files, side by side in one run.

    python bench/ndjson_bench.py [--sizes 10000,100000] [--rounds 3]

For each panel size (generated once and cached, see ``panels.py``): the module's offline path,
``rls-screen batch --ndjson DIR --dry-run`` (index, then every patient decided by the pure engine,
job store, report), and the DuckDB reference query (``duckdb_reference.py``), each in a fresh process,
interleaved (module, DuckDB, module, DuckDB, ...) so both see the same machine load; medians reported.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from panels import AS_OF, ndjson_panel, panel_bytes

BENCH = Path(__file__).resolve().parent


def _child(script: str, *args: str, source: Path | None = None) -> dict[str, Any]:
    env = None
    if source is not None:  # another checkout's service/ first on the path (the editable install maps the rest)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(source / "service"), str(BENCH)]))}
    result = subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=3600,
        env=env,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{script} failed: {result.stderr[-2000:]}")
    parsed: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return parsed


def run_module(directory: Path, source: Path | None = None) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="rls-ndjson-bench-"))
    try:
        return _child("ndjson_child.py", str(directory), str(work), AS_OF.isoformat(), source=source)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_duckdb(directory: Path) -> dict[str, Any]:
    return _child("duckdb_reference.py", str(directory), AS_OF.isoformat())


def measure(sizes: list[int], rounds: int, before: Path | None = None) -> list[dict[str, Any]]:
    rows = []
    for n in sizes:
        directory = ndjson_panel(n)
        module, duck, old = [], [], []
        for _ in range(rounds):
            module.append(run_module(directory))
            duck.append(run_duckdb(directory))
            if before is not None:
                old.append(run_module(directory, before))
        patients = module[0]["patients"]
        if patients != n or duck[0]["patients"] != n:
            raise RuntimeError(f"expected {n} patients, module {patients}, DuckDB {duck[0]['patients']}")

        def med(runs: list[dict[str, Any]], key: str) -> float:
            return statistics.median(float(r[key]) for r in runs)

        module_cpu = [float(r["cpu_s"]) + float(r["worker_cpu_s"]) for r in module]
        rows.append(
            {
                "patients": n,
                "gigabytes": panel_bytes(directory) / 1e9,
                "rounds": rounds,
                "module_wall_s": med(module, "wall_s"),
                "module_index_s": med(module, "index_s"),
                "module_cpu_s": statistics.median(module_cpu),
                "module_rss_mb": max(float(r["rss_mb"]) for r in module),
                "module_worker_rss_mb": max(float(r["worker_rss_mb"]) for r in module),
                "duckdb_wall_s": med(duck, "wall_s"),
                "duckdb_cpu_s": med(duck, "cpu_s"),
                "duckdb_rss_mb": max(float(r["rss_mb"]) for r in duck),
                "module_walls": [round(float(r["wall_s"]), 2) for r in module],
                "duckdb_walls": [round(float(r["wall_s"]), 2) for r in duck],
            }
        )
        if old:
            rows[-1]["before"] = {
                "wall_s": med(old, "wall_s"),
                "index_s": med(old, "index_s"),
                "cpu_s": statistics.median(float(r["cpu_s"]) + float(r["worker_cpu_s"]) for r in old),
                "rss_mb": max(float(r["rss_mb"]) for r in old),
                "worker_rss_mb": max(float(r["worker_rss_mb"]) for r in old),
                "walls": [round(float(r["wall_s"]), 2) for r in old],
            }
    return rows


def report(rows: list[dict[str, Any]], command: str) -> list[str]:
    lines = [
        "## Bulk/NDJSON path vs DuckDB (offline: `rls-screen batch --ndjson DIR --dry-run`)",
        "",
        "Synthetic panels (~26 Observations per patient, seed 2). Module: the whole command (index the files,",
        "every patient decided by the pure engine in worker processes, job store, report). DuckDB: one SQL query",
        "over the same files, latest final ferritin/Hb/eGFR/K/Mg/Ca per patient against the same thresholds",
        "(simplified rules, `bench/duckdb_reference.py`). Same machine, interleaved runs, medians.",
        "",
        "| patients (NDJSON) | module wall (index) | module CPU | patients/s (wall, 2 cores) "
        "| patients/s per core | module peak RSS: main / largest worker | DuckDB wall | DuckDB CPU "
        "| DuckDB peak RSS | ratio module/DuckDB (wall) | ratio (CPU) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        n = r["patients"]
        lines.append(
            f"| {n:,} ({r['gigabytes']:.2f} GB) | {r['module_wall_s']:.1f} s ({r['module_index_s']:.1f} s) "
            f"| {r['module_cpu_s']:.1f} s | {n / r['module_wall_s']:,.0f} | {n / r['module_cpu_s']:,.0f} "
            f"| {r['module_rss_mb']:.0f} MB / {r['module_worker_rss_mb']:.0f} MB "
            f"| {r['duckdb_wall_s']:.1f} s | {r['duckdb_cpu_s']:.1f} s | {r['duckdb_rss_mb']:.0f} MB "
            f"| {r['module_wall_s'] / r['duckdb_wall_s']:.1f} | {r['module_cpu_s'] / r['duckdb_cpu_s']:.1f} |"
        )
    if any("before" in r for r in rows):
        lines += [
            "",
            "| patients | code | wall (index) | CPU | peak RSS: main / largest worker | ratio to DuckDB (wall / CPU) |",
            "|---|---|---|---|---|---|",
        ]
        for r in rows:
            b = r.get("before")
            if b is None:
                continue
            lines += [
                f"| {r['patients']:,} | before | {b['wall_s']:.1f} s ({b['index_s']:.1f} s) | {b['cpu_s']:.1f} s "
                f"| {b['rss_mb']:.0f} MB / {b['worker_rss_mb']:.0f} MB "
                f"| {b['wall_s'] / r['duckdb_wall_s']:.1f} / {b['cpu_s'] / r['duckdb_cpu_s']:.1f} |",
                f"| {r['patients']:,} | after | {r['module_wall_s']:.1f} s ({r['module_index_s']:.1f} s) "
                f"| {r['module_cpu_s']:.1f} s | {r['module_rss_mb']:.0f} MB / {r['module_worker_rss_mb']:.0f} MB "
                f"| {r['module_wall_s'] / r['duckdb_wall_s']:.1f} / {r['module_cpu_s'] / r['duckdb_cpu_s']:.1f} |",
            ]
        lines.append(
            "Before: individual wall times (s): "
            + "; ".join(f"{r['patients']:,}: {r['before']['walls']}" for r in rows if "before" in r)
        )
    lines += [
        "",
        "Individual wall times (s): "
        + "; ".join(f"{r['patients']:,}: module {r['module_walls']}, DuckDB {r['duckdb_walls']}" for r in rows),
        "",
        "Target: module within 2x of DuckDB's time; peak memory flat from the smaller to the larger panel.",
        f"Command: `{command}`",
        "",
    ]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated panel sizes")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--before",
        type=Path,
        metavar="CHECKOUT",
        help="also time the module from another checkout (e.g. `git worktree add /tmp/before HEAD~1`), interleaved",
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = measure(sizes, args.rounds, args.before)
    print("\n".join(report(rows, f"python bench/ndjson_bench.py --sizes {args.sizes} --rounds {args.rounds}")))
    print(json.dumps(rows), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
