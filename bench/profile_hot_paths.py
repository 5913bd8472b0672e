"""Profiles of the hot paths with pyinstrument: where the time of one patient goes.

    python bench/profile_hot_paths.py [--patients 3000] [--out DIR]

- engine: ``evaluate`` over a typical synthetic panel (200 patients, 10 rounds);
- ndjson-index: indexing the cached 10k-patient NDJSON panel (one chunk scan, in-process);
- ndjson-patient: what a worker process does on the NDJSON path (read a chunk of patients' lines back, parse,
  evaluate, summarise, serialise the result), over the first ``--patients`` patients of the cached 10k panel.
Each profile is printed (text tree) and, with ``--out``, written to ``DIR/<name>.txt``.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from pathlib import Path

from pyinstrument import Profiler

from panels import AS_OF, ndjson_panel
from rls_screen.batch import ndjson_index, sources
from rls_screen.batch.runner import OFFLINE_CHUNK, _offline_batch
from rls_screen.engine import evaluate
from rls_screen.knowledge import load_knowledge
from rls_screen.patient_data import group_resources
from rls_screen.synth import generate_panel


def profile(name: str, work: Callable[[], object], out: Path | None) -> None:
    profiler = Profiler(interval=0.0005)
    profiler.start()
    work()
    profiler.stop()
    text = profiler.output_text(unicode=False, color=False, show_all=False)
    print(f"==== {name}\n{text}")
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{name}.txt").write_text(text, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--patients", type=int, default=3000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    knowledge = load_knowledge()

    panel = generate_panel(200, seed=1, as_of=AS_OF, id_prefix="prof")
    data = [group_resources(r.patient, r.resources) for r in panel.patients]

    def engine() -> None:
        for _ in range(10):
            for d in data:
                evaluate(d.facts(), d.observations, as_of=AS_OF, knowledge=knowledge, conditions=d.conditions)

    profile("engine", engine, args.out)

    directory = ndjson_panel(10_000)
    tasks = list(ndjson_index._chunks(0, directory / "Observation.ndjson", ndjson_index._CHUNK_BYTES))[:4]
    profile("ndjson-index", lambda: [ndjson_index._scan_chunk(task) for task in tasks], args.out)

    with tempfile.TemporaryDirectory() as tmp:
        index = sources.NdjsonIndex(Path(tmp) / "index.sqlite")
        index.load(directory)
        ids = list(dict.fromkeys(index.patient_ids()))[: args.patients]
        chunks = [ids[i : i + OFFLINE_CHUNK] for i in range(0, len(ids), OFFLINE_CHUNK)]
        profile(
            "ndjson-patient",
            lambda: [_offline_batch(index.patient_data, index.loader_for, knowledge, AS_OF, c) for c in chunks],
            args.out,
        )
        index.close()


if __name__ == "__main__":
    main()
