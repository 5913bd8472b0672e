"""What the job store costs a batch per patient: register, take the patients, record them (no screening).

    python bench/jobstore_bench.py [--patients 50000] [--rounds 2] [--postgres URL] [--before DIR]

Each round, interleaved: this release on SQLite (claims of 200, as the offline path takes them, and their
outcomes recorded under the claim), this release on PostgreSQL (``--postgres``, a schema of its own), and,
with ``--before DIR`` (the release before: ``git archive <commit> service | tar -x -C DIR``), that release
on SQLite (``pending()`` once, outcomes in chunks of 200), each in a fresh process. Prints seconds
and patients per second for each, and the ratio to the release before.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import date
from pathlib import Path

CHUNK = 200
AS_OF = date(2026, 11, 25)


def child(kind: str, where: str, patients: int) -> dict[str, float]:
    from rls_screen.batch.jobs import JobStore

    target: object = Path(where)
    if kind == "postgresql":
        from rls_screen.state import parse_state_url

        target = parse_state_url(where)
    store = JobStore(target)  # type: ignore[arg-type]
    job = store.create_job(created="bench", source="bench", as_of=AS_OF, dry_run=True, fhir_base_url="http://b")
    started = time.perf_counter()
    store.add_patients(job.id, (f"p{n:07}" for n in range(patients)))
    registered = time.perf_counter()
    result = '{"findings":{},"written":false}'
    if kind == "before":
        ids = store.pending(job.id)
        for i in range(0, len(ids), CHUNK):
            store.mark_many(job.id, [(p, result, False) for p in ids[i : i + CHUNK]])
    else:
        now = time.time()
        while chunk := store.claim(job.id, "bench", CHUNK, now=now, lease_s=60, round_started=now):
            store.mark_many(job.id, [(p, result, False) for p in chunk], runner="bench", now=now)
    finished = time.perf_counter()
    assert store.counts(job.id)["done"] == patients
    store.close()
    return {"register_s": registered - started, "take_and_record_s": finished - registered}


def run(kind: str, where: str, patients: int, before: Path | None) -> dict[str, float]:
    env = dict(os.environ)
    if kind == "before" and before is not None:
        env["PYTHONPATH"] = str(before / "service")
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, where, str(patients)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def schema_url(server: str) -> str:
    import psycopg

    schema = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as connection:
        connection.execute(f'CREATE SCHEMA "{schema}"')
    separator = "&" if "?" in server else "?"
    return f"{server}{separator}options=-csearch_path%3D{schema}"


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(child(sys.argv[2], sys.argv[3], int(sys.argv[4]))))
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--patients", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--postgres", help="a PostgreSQL server URL (a schema is made per run)")
    parser.add_argument("--before", type=Path, help="a checkout of the release before, for the ratio")
    args = parser.parse_args()
    kinds = [k for k, on in (("before", args.before), ("sqlite", True), ("postgresql", args.postgres)) if on]
    times: dict[str, list[float]] = {kind: [] for kind in kinds}
    with tempfile.TemporaryDirectory() as tmp:
        for round_number in range(args.rounds):
            for kind in kinds:
                where = (
                    schema_url(args.postgres)
                    if kind == "postgresql"
                    else str(Path(tmp) / f"{kind}{round_number}.sqlite")
                )
                figures = run(kind, where, args.patients, args.before)
                times[kind].append(figures["take_and_record_s"])
                print(
                    f"round {round_number + 1} {kind:10} register {figures['register_s']:.2f} s, "
                    f"take and record {figures['take_and_record_s']:.2f} s"
                )
    best = {kind: min(values) for kind, values in times.items()}
    for kind, seconds in best.items():
        ratio = f", {seconds / best['before']:.2f}x the release before" if "before" in best else ""
        print(f"{kind:10} best {seconds:.2f} s = {args.patients / seconds:,.0f} patients/s{ratio}")


if __name__ == "__main__":
    main()
