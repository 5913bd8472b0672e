"""Benchmarks: speed and memory goals are measured here, not asserted in timed tests.

    python bench/run.py [--write docs/benchmarks.md] [--quick | --full] [--only engine|search|ndjson]

Sections (each says what it measures and against what):
- engine: evaluations per second of the pure engine on typical synthetic patients (CPU time, one core);
- screen: one patient on the local HAPI server: requests made, time vs the same raw queries;
- search: the batch search path vs the server's own time for the same requests sent directly (search_bench.py);
- ndjson: the offline Bulk/NDJSON path vs a plain DuckDB query over the same files, with peak memory
  (ndjson_bench.py). The default sizes are 1,000 and 10,000 patients; ``--full`` runs 10,000 and 100,000.
Sections that need the FHIR server are skipped (and say so) when none answers at FHIR_BASE_URL.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

import requests

import ndjson_bench
import search_bench
from rls_screen.engine import evaluate
from rls_screen.fhir_client import Allowlist, FhirClient
from rls_screen.fhir_reader import read_patient_data
from rls_screen.knowledge import load_knowledge
from rls_screen.patient_data import group_resources
from rls_screen.synth import generate_panel

AS_OF = date(2026, 11, 25)
REPO = Path(__file__).resolve().parents[1]


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kib / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return (
        f"{os.cpu_count()} cores ({cpu}){memory}, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}"
    )


def timed(function: Callable[[], object], repeat: int, clock: Callable[[], float] = time.perf_counter) -> list[float]:
    samples = []
    for _ in range(repeat):
        started = clock()
        function()
        samples.append(clock() - started)
    return samples


def bench_engine(quick: bool) -> list[str]:
    knowledge = load_knowledge()
    panel = generate_panel(200, seed=1, as_of=AS_OF, id_prefix="bench")
    data = [group_resources(r.patient, r.resources) for r in panel.patients]
    observations = sum(len(d.observations) for d in data) / len(data)
    rounds = 5 if quick else 25

    def run() -> None:
        for d in data:
            evaluate(d.facts(), d.observations, as_of=AS_OF, knowledge=knowledge, conditions=d.conditions)

    samples = timed(run, rounds, time.process_time)  # CPU time: the machine is shared, wall time is noisy
    per_eval = statistics.median(samples) / len(data)
    best = min(samples) / len(data)
    return [
        "## Engine (pure, one core)",
        "",
        f"Typical synthetic patient: {observations:.0f} Observations (about three quarters inside the 365-day window).",
        "",
        "| measure | figure |",
        "|---|---|",
        f"| evaluations per CPU-second (median of {rounds} rounds of 200 patients) | {1 / per_eval:,.0f} |",
        f"| per evaluation: median / best round | {per_eval * 1000:.3f} ms / {best * 1000:.3f} ms |",
        "",
        "Command: `python bench/run.py --only engine`",
        "",
    ]


def _server(base_url: str) -> bool:
    try:
        return requests.get(f"{base_url}/metadata", timeout=(2, 10)).status_code == 200
    except requests.RequestException:
        return False


def _raw_reads(
    session: requests.Session, base_url: str, patient_id: str, searches: list[tuple[str, dict[str, str]]]
) -> None:
    """The same requests as the module's read, sent with plain ``requests`` (pages followed)."""
    headers = {"Accept": "application/fhir+json"}
    session.get(f"{base_url}/Patient/{patient_id}", headers=headers, timeout=30).raise_for_status()
    for resource_type, params in searches:
        url = f"{base_url}/{resource_type}"
        query: dict[str, str] | None = params
        while url:
            page = session.get(url, params=query, headers=headers, timeout=30)
            page.raise_for_status()
            url = next((link["url"] for link in page.json().get("link", []) if link["relation"] == "next"), "")
            query = None


def bench_screen(base_url: str, quick: bool) -> list[str]:
    """One patient's read: the module's requests (the Patient, one search per contract type) vs the same
    queries with plain requests."""
    knowledge = load_knowledge()
    prefix = f"bench{int(time.time())}"
    patient = search_bench.load_panel(base_url, prefix, 1)[0]
    client = FhirClient(base_url, allowlist=Allowlist((base_url,)))
    session = requests.Session()
    contract = knowledge.contract
    searches = [(s.resource_type, contract.rest_params(s, patient, AS_OF)) for s in contract.searches]
    for _ in range(5):  # warm both paths
        read_patient_data(client, patient, knowledge, AS_OF)
        _raw_reads(session, base_url, patient, searches)
    before = client.requests_made
    read_patient_data(client, patient, knowledge, AS_OF)
    requests_per_read = client.requests_made - before
    ours: list[float] = []
    raw: list[float] = []
    for _ in range(10 if quick else 30):  # interleaved
        ours += timed(lambda: read_patient_data(client, patient, knowledge, AS_OF), 1)
        raw += timed(lambda: _raw_reads(session, base_url, patient, searches), 1)
    ours_s, raw_s = statistics.median(ours), statistics.median(raw)
    return [
        "## One patient against the local HAPI server (`screen` read path)",
        "",
        "| measure | module | same queries, raw `requests` | ratio |",
        "|---|---|---|---|",
        f"| requests to read one patient | {requests_per_read} | {1 + len(searches)} | |",
        f"| time to read one patient (median of {len(ours)}, interleaved) | {ours_s * 1000:.1f} ms "
        f"| {raw_s * 1000:.1f} ms | {ours_s / raw_s:.2f} |",
        "",
        "Command: `python bench/run.py --only screen`",
        "",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--write", type=Path, help="write the markdown report here")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    size.add_argument("--full", action="store_true", help="the issue's sizes: NDJSON at 10,000 and 100,000 patients")
    parser.add_argument("--only", choices=("engine", "screen", "search", "ndjson"))
    args = parser.parse_args()
    base_url = os.environ.get("FHIR_BASE_URL", "http://127.0.0.1:8080/fhir").rstrip("/")
    command = "python bench/run.py" + (" --quick" if args.quick else " --full" if args.full else "")
    lines = [
        "# Benchmarks",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {machine()}; HAPI FHIR JPA 8.8 (H2 in memory) on the same machine.",
        f"Reproduce this part: `{command}` (`make bench` runs `python bench/run.py`; the search sections need",
        "the local server: `make fhir-up`). The machine is shared with other work: figures are medians of",
        "interleaved runs.",
        "",
    ]
    server = args.only in (None, "screen", "search") and _server(base_url)
    if args.only in (None, "engine"):
        lines += bench_engine(args.quick)
    if args.only in (None, "screen"):
        lines += (
            bench_screen(base_url, args.quick)
            if server
            else ["## Screen", "", f"Skipped: no server at {base_url}.", ""]
        )
    if args.only in (None, "search"):
        if server:
            n, rounds = (10, 2) if args.quick else (30, 4) if args.full else (20, 3)
            try:
                lines += search_bench.bench_search(base_url, n, rounds, [1, 4], ["dry-run", "write"])
            except Exception as error:  # a struggling shared server must not lose the other sections
                lines += ["## Batch search path", "", f"Failed: {type(error).__name__}: {error}", ""]
        else:
            lines += ["## Search path", "", f"Skipped: no FHIR server at {base_url}.", ""]
    if args.only in (None, "ndjson"):
        sizes, rounds = ([500, 5000], 1) if args.quick else ([10_000, 100_000], 3) if args.full else ([1000, 10_000], 2)
        sizes_text = ",".join(map(str, sizes))
        lines += ndjson_bench.report(
            ndjson_bench.measure(sizes, rounds), f"python bench/ndjson_bench.py --sizes {sizes_text} --rounds {rounds}"
        )
    text = "\n".join(lines)
    print(text)
    if args.write:
        existing = args.write.read_text(encoding="utf-8") if args.write.exists() else ""
        marker = "<!-- sections below are maintained by hand -->"
        tail = existing[existing.index(marker) :] if marker in existing else marker + "\n"
        args.write.write_text(text + "\n" + tail, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
