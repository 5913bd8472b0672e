"""Synthetic NDJSON panels for the benchmarks, generated once and cached outside the repository.

    python bench/panels.py 10000 100000      # generate (or reuse) the cached panels, print their paths

A panel of N patients (seed 2, as of 2026-11-25, id prefix ``nd``) lives in
``$RLS_BENCH_CACHE/ndjson-N`` (default ``/tmp/rls-screen-bench``); a ``.complete`` marker is written
last, so a generation that was interrupted is redone rather than reused. 100,000 patients are about
2.6 GB of NDJSON and take a few minutes to generate.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from datetime import date
from pathlib import Path

from rls_screen.synth import iter_patient_records, write_ndjson

AS_OF = date(2026, 11, 25)
SEED = 2
PREFIX = "nd"


def cache_root() -> Path:
    return Path(os.environ.get("RLS_BENCH_CACHE", "/tmp/rls-screen-bench"))


def ndjson_panel(n: int, *, quiet: bool = False) -> Path:
    """The directory of the cached N-patient panel, generated first when missing."""
    directory = cache_root() / f"ndjson-{n}"
    marker = directory / ".complete"
    if marker.exists():
        return directory
    if directory.exists():
        shutil.rmtree(directory)
    started = time.perf_counter()
    if not quiet:
        print(f"generating {n:,} synthetic patients into {directory} ...", file=sys.stderr, flush=True)
    write_ndjson(iter_patient_records(n, SEED, AS_OF, PREFIX), directory)
    marker.write_text(f"{n} patients, seed {SEED}, as of {AS_OF}\n", encoding="utf-8")
    if not quiet:
        print(f"  done in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    return directory


def panel_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.glob("*.ndjson"))


if __name__ == "__main__":
    for argument in sys.argv[1:]:
        path = ndjson_panel(int(argument))
        print(path, f"{panel_bytes(path) / 1e9:.2f} GB")
