"""Where one patient's time goes on the offline NDJSON path, phase by phase, in one process.

    python bench/ndjson_phases.py [--patients 3000] [--rounds 3] [--profile] [--gc freeze|default|off]

Over the first ``--patients`` patients of the cached 10k panel (``panels.py``): indexing the whole panel
(in-process, one chunk at a time), reading each patient back (``loader_for``), ``assess``, and the summary
and result JSON, as CPU time (``process_time``) per patient, best of ``--rounds``. ``--profile`` prints a
cProfile of ``assess`` as well (sorted by cumulative time; the timings then include the profiler).
``--gc``: the collector as the offline workers run it (``freeze``: what was loaded first is out of its
reach), untouched, or off.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import tempfile
import time
from pathlib import Path

from panels import AS_OF, ndjson_panel
from rls_screen.assessment import assess
from rls_screen.batch import sources
from rls_screen.batch.jobs import result_text
from rls_screen.batch.runner import patient_summary
from rls_screen.knowledge import load_knowledge
from rls_screen.screening import ScreenResult


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--patients", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--gc", choices=("default", "freeze", "off"), default="freeze")
    args = parser.parse_args()
    knowledge = load_knowledge()
    if args.gc == "off":
        gc.disable()
    elif args.gc == "freeze":  # as the offline workers do (batch/runner.py)
        gc.freeze()
    directory = ndjson_panel(10_000)
    with tempfile.TemporaryDirectory() as tmp:
        index = sources.NdjsonIndex(Path(tmp) / "index.sqlite", workers=1)
        started = time.process_time()
        index.load(directory)
        index_s = time.process_time() - started
        ids = list(dict.fromkeys(index.patient_ids()))
        print(f"index (whole panel, one process): {index_s / len(ids) * 1e3:.3f} ms per patient")
        ids = ids[: args.patients]
        best: dict[str, float] = {}
        profiler = cProfile.Profile() if args.profile else None
        for _ in range(args.rounds):
            spent = {"read back": 0.0, "assess": 0.0, "summary": 0.0}
            for first in range(0, len(ids), 200):  # as a worker does: a chunk looked up at once, one patient at a time
                chunk = ids[first : first + 200]
                started = time.process_time()
                load = index.loader_for(chunk)
                spent["read back"] += time.process_time() - started
                for patient_id in chunk:
                    started = time.process_time()
                    data = load(patient_id)
                    read = time.process_time()
                    if profiler is not None:
                        profiler.enable()
                    assessment = assess(data, knowledge=knowledge, as_of=AS_OF)
                    if profiler is not None:
                        profiler.disable()
                    judged = time.process_time()
                    result_text(patient_summary(assessment, ScreenResult(assessment, None, False, None)))
                    spent["read back"] += read - started
                    spent["assess"] += judged - read
                    spent["summary"] += time.process_time() - judged
            for name, value in spent.items():
                best[name] = min(best.get(name, value), value)
        if profiler is not None:
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(35)
        for name, value in best.items():
            print(f"{name}: {value / len(ids) * 1e3:.3f} ms per patient")
        index.close()


if __name__ == "__main__":
    main()
