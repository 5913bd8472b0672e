"""Indexing and reading back by patient: the module's index against DuckDB grouping the lines, same files.

    python bench/ndjson_grouping.py [--size 10000] [--side index|duckdb]   # one side per process

The part of the NDJSON path an embedded engine could take over (issue 18: "filter and group with DuckDB
first"): find every line's patient, group the lines by patient, and hand each patient's lines to Python
as the parsed resources the engine reads. ``index``: ``NdjsonIndex.load`` (worker processes, as the
command runs it) then every patient read back in chunks (``loader_for``). ``duckdb``: every line read as
text by DuckDB, its patient taken with ``json_extract_string``, the lines grouped by patient
(``list(line)``) and fetched in batches, each line parsed with ``orjson``. Neither side screens anyone.
Prints one JSON line: wall and CPU seconds (this process and its children) and peak RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import orjson

from panels import ndjson_panel


def index_side(directory: Path) -> int:
    from rls_screen.batch.ndjson_index import NdjsonIndex

    with tempfile.TemporaryDirectory() as tmp:
        index = NdjsonIndex(Path(tmp) / "index.sqlite")
        index.load(directory)
        ids = list(dict.fromkeys(index.patient_ids()))
        resources = 0
        for first in range(0, len(ids), 200):
            load = index.loader_for(ids[first : first + 200])
            for patient_id in ids[first : first + 200]:
                data = load(patient_id)
                kept = (data.observations, data.conditions, data.procedures, data.medications, data.unlinked)
                resources += 1 + sum(len(some) for some in kept)
        index.close()
    return resources


def duckdb_side(directory: Path) -> int:
    import duckdb

    files = [str(path) for path in sorted(directory.glob("*.ndjson")) if not path.name.startswith("Group")]
    # one VARCHAR column per line: no delimiter, quote or escape character occurs in the synthetic files
    lines = f"read_csv({files!r}, columns={{'line': 'VARCHAR'}}, delim='\\x1e', quote='', escape='', header=false)"
    query = f"""
        SELECT coalesce(
                   CASE WHEN json_extract_string(line, '$.resourceType') = 'Patient'
                        THEN json_extract_string(line, '$.id') END,
                   regexp_extract(json_extract_string(line, '$.subject.reference'), 'Patient/(.*)', 1)
               ) AS patient,
               list(line) AS lines
        FROM {lines}
        GROUP BY patient
    """
    resources = 0
    result = duckdb.connect().execute(query)
    while batch := result.fetchmany(1000):
        for _patient, patient_lines in batch:
            parsed = [orjson.loads(line) for line in patient_lines]
            resources += len(parsed)
    return resources


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size", type=int, default=10_000)
    parser.add_argument("--side", choices=("index", "duckdb"), required=True)
    args = parser.parse_args()
    directory = ndjson_panel(args.size, quiet=True)
    started = time.perf_counter()
    resources = index_side(directory) if args.side == "index" else duckdb_side(directory)
    wall = time.perf_counter() - started
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
    rss = max(own.ru_maxrss, children.ru_maxrss) / 1024
    print(json.dumps({"side": args.side, "resources": resources, "wall_s": wall, "cpu_s": cpu, "rss_mb": rss}))


if __name__ == "__main__":
    main()
