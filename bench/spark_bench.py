"""Spark local mode vs the single-machine NDJSON path, side by side in one run (docs/spark.md, docs/benchmarks.md).

    python bench/spark_bench.py [--sizes 10000,30000] [--rounds 1] [--master local[2]]

For each panel size (generated once and cached, see ``panels.py``), interleaved (local, Spark, local, ...)
so both see the same machine load, each the whole command in a fresh process:
``rls-screen batch --ndjson DIR --dry-run`` (index, worker processes, job store, report) and the same with
``--engine spark --spark-master local[2]`` (JVM start, line stage, shuffle by patient, screen stage,
Parquet, job store, report). After each pair the two job stores are compared patient by patient: a
benchmark of an engine that gave other results would measure nothing. Medians and the ratio Spark/local.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from panels import AS_OF, ndjson_panel, panel_bytes

REPO = Path(__file__).resolve().parents[1]


def java17_home() -> str:
    script = 'source deploy/fhir-server/java-env.sh && fhir_find_java >/dev/null && printf %s "$FHIR_JAVA_HOME_USED"'
    return subprocess.run(["bash", "-c", script], cwd=REPO, capture_output=True, text=True, check=True).stdout


def _results_digest(job_db: Path) -> tuple[int, str]:
    """(patients done, a digest of every patient's id, status, reason and result in job order)."""
    digest = hashlib.sha256()
    with sqlite3.connect(job_db) as db:
        rows = db.execute("SELECT patient_id, status, reason, result FROM patient ORDER BY position").fetchall()
    for row in rows:
        digest.update(json.dumps(row).encode())
    return sum(1 for row in rows if row[1] == "done"), digest.hexdigest()


def run_once(directory: Path, engine: list[str]) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="rls-spark-bench-"))
    env = {**os.environ, "RLS_SCREEN_STATE_DIR": str(work), "JAVA_HOME": java17_home()}
    env["PYSPARK_SUBMIT_ARGS"] = "--conf spark.ui.enabled=false --driver-memory 1g pyspark-shell"
    command = [sys.executable, "-m", "rls_screen", "batch", "--ndjson", str(directory), "--dry-run"]
    command += ["--as-of", AS_OF.isoformat(), *engine]
    try:
        started = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False, timeout=7200)
        wall = time.perf_counter() - started
        if done.returncode not in (0, 1):
            raise RuntimeError(f"{' '.join(engine) or 'local'} failed: {done.stderr[-2000:]}")
        patients, digest = _results_digest(work / "jobs.sqlite")
        return {"wall_s": wall, "patients": patients, "digest": digest}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,30000")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--master", default="local[2]")
    args = parser.parse_args()
    spark = ["--engine", "spark", "--spark-master", args.master]
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        directory = ndjson_panel(size)
        local_walls, spark_walls = [], []
        for _ in range(args.rounds):
            local = run_once(directory, [])
            other = run_once(directory, spark)
            if (local["patients"], local["digest"]) != (other["patients"], other["digest"]):
                raise SystemExit(f"{size}: Spark's results differ from the single-machine path's")
            local_walls.append(local["wall_s"])
            spark_walls.append(other["wall_s"])
            print(
                f"{size}: local {local['wall_s']:.1f} s, spark {other['wall_s']:.1f} s, {local['patients']} screened",
                file=sys.stderr,
                flush=True,
            )
        row = {
            "patients": size,
            "gb": panel_bytes(directory) / 1e9,
            "local_s": statistics.median(local_walls),
            "spark_s": statistics.median(spark_walls),
            "screened": local["patients"],
            "local_walls": local_walls,
            "spark_walls": spark_walls,
        }
        rows.append(row)
    header = f"| patients (NDJSON) | single machine wall | Spark {args.master} wall | Spark/single | same results |"
    print(header)
    print("|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['patients']:,} ({row['gb']:.2f} GB) | {row['local_s']:.1f} s | {row['spark_s']:.1f} s "
            f"| {row['spark_s'] / row['local_s']:.2f} | yes |"
        )
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
