"""One timed run of ``rls-screen batch --ndjson DIR --dry-run`` (the offline Bulk/NDJSON path), in its own process.

    python bench/ndjson_child.py NDJSON_DIR WORK_DIR AS_OF

Prints one JSON line: patients, wall seconds (whole command, and the indexing step alone), CPU seconds
of this process and of its worker processes, and peak RSS of this process and of the largest worker.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

from rls_screen.batch import sources


def main() -> int:
    directory, work, as_of = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    os.environ["RLS_SCREEN_STATE_DIR"] = str(work / "state")
    phases: dict[str, float] = {}
    load = sources.NdjsonIndex.load

    def timed_load(self: sources.NdjsonIndex, path: Path) -> int:
        started = time.perf_counter()
        try:
            return load(self, path)
        finally:
            phases["index_s"] = time.perf_counter() - started

    sources.NdjsonIndex.load = timed_load  # type: ignore[method-assign]
    from rls_screen.cli import main as cli

    started = time.perf_counter()
    code = cli(
        [
            "batch",
            "--ndjson",
            str(directory),
            "--dry-run",
            "--as-of",
            as_of,
            "--job-db",
            str(work / "jobs.sqlite"),
            "--report-dir",
            str(work / "reports"),
        ]
    )
    wall = time.perf_counter() - started
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    import sqlite3

    with sqlite3.connect(work / "jobs.sqlite") as db:
        patients = db.execute("SELECT COUNT(*) FROM patient WHERE status = 'done'").fetchone()[0]
    result: dict[str, Any] = {
        "exit": code,
        "patients": patients,
        "wall_s": wall,
        "index_s": phases.get("index_s", 0.0),
        "cpu_s": own.ru_utime + own.ru_stime,
        "worker_cpu_s": children.ru_utime + children.ru_stime,
        "rss_mb": own.ru_maxrss / 1024,
        "worker_rss_mb": children.ru_maxrss / 1024,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
