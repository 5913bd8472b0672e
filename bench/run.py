"""Benchmarks: speed and memory goals are measured here, not asserted in timed tests.

    python bench/run.py [--write docs/benchmarks.md] [--quick]

Sections (each says what it measures and against what):
- engine: evaluations per second of the pure engine on typical synthetic patients;
- screen: one patient on the local HAPI server: requests made, time vs the same raw queries;
- batch search path: patients/s vs the server's own time for the same reads issued directly;
- batch NDJSON path (offline): patients/s per core and peak memory at 1x and 10x the panel.
Sections that need the FHIR server are skipped (and say so) when none answers at FHIR_BASE_URL.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

import requests

from rls_screen.engine import evaluate, load_knowledge
from rls_screen.fhir_client import Allowlist, FhirClient
from rls_screen.fhir_reader import condition_codes, observation_search, read_existing_state, read_patient_data
from rls_screen.patient_data import group_resources
from rls_screen.screening import assess
from rls_screen.synth import chunked_transaction_bundles, generate_panel, write_ndjson
from rls_screen.writeback import risk_assessment_identifier

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
    return f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, {platform.system()} {platform.release()}"


def timed(function: Callable[[], object], repeat: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        samples.append(time.perf_counter() - started)
    return samples


def bench_engine(quick: bool) -> list[str]:
    knowledge = load_knowledge()
    panel = generate_panel(200, seed=1, as_of=AS_OF, id_prefix="bench")
    data = [group_resources(r.patient, r.resources) for r in panel.patients]
    observations = sum(len(d.observations) for d in data) / len(data)
    rounds = 3 if quick else 10
    per_round = [
        len(data) / t
        for t in timed(lambda: [evaluate(d.facts(), d.observations, as_of=AS_OF, knowledge=knowledge,
                                         conditions=d.conditions) for d in data], rounds)
    ]
    return [
        "## Engine (pure, one core)",
        "",
        f"Typical synthetic patient: {observations:.0f} Observations (about half inside the 365-day window).",
        "",
        "| measure | figure |",
        "|---|---|",
        f"| evaluations per second (median of {rounds} rounds of 200 patients) | {statistics.median(per_round):,.0f} |",
        f"| per evaluation | {1000 / statistics.median(per_round):.2f} ms |",
        "",
        "Command: `python bench/run.py --only engine`",
        "",
    ]


def _server(base_url: str) -> bool:
    try:
        return requests.get(f"{base_url}/metadata", timeout=(2, 10)).status_code == 200
    except requests.RequestException:
        return False


def _load(base_url: str, prefix: str, n: int) -> list[str]:
    panel = generate_panel(n, seed=9, as_of=AS_OF, id_prefix=prefix)
    client = FhirClient(base_url, allowlist=Allowlist((base_url,)))
    for bundle in chunked_transaction_bundles(panel, patients_per_bundle=25):
        client.transaction(bundle)
    return [r.patient["id"] for r in panel.patients]


def _raw_reads(session: requests.Session, base_url: str, patient_id: str, params: dict[str, str], codes: str) -> None:
    headers = {"Accept": "application/fhir+json"}
    session.get(f"{base_url}/Patient/{patient_id}", headers=headers, timeout=30).raise_for_status()
    url = f"{base_url}/Observation"
    query: dict[str, str] | None = params
    while url:
        page = session.get(url, params=query, headers=headers, timeout=30)
        page.raise_for_status()
        url = next((link["url"] for link in page.json().get("link", []) if link["relation"] == "next"), "")
        query = None
    session.get(f"{base_url}/Condition", params={"subject": f"Patient/{patient_id}", "code": codes, "_count": "500"},
                headers=headers, timeout=30).raise_for_status()


def bench_screen_and_search(base_url: str, quick: bool) -> list[str]:
    knowledge = load_knowledge()
    prefix = f"bench{int(time.time())}"
    ids = _load(base_url, prefix, 20 if quick else 60)
    client = FhirClient(base_url, allowlist=Allowlist((base_url,)))
    session = requests.Session()
    codes = condition_codes(knowledge.terminology)

    # One patient: the module's read (3 requests) vs the same raw queries.
    patient = ids[0]
    for _ in range(3):  # warm both paths
        read_patient_data(client, patient, knowledge, AS_OF)
        _raw_reads(session, base_url, patient, observation_search(patient, knowledge, AS_OF), codes)
    before = client.requests_made
    read_patient_data(client, patient, knowledge, AS_OF)
    requests_per_read = client.requests_made - before
    ours = statistics.median(timed(lambda: read_patient_data(client, patient, knowledge, AS_OF), 15))
    raw = statistics.median(timed(lambda: _raw_reads(session, base_url, patient,
                                                     observation_search(patient, knowledge, AS_OF), codes), 15))

    # Batch search path (reads + evaluation + existing-state read, no writes) vs raw reads, sequential.
    def module_path() -> None:
        for pid in ids:
            data = read_patient_data(client, pid, knowledge, AS_OF)
            assessment = assess(data, knowledge=knowledge, as_of=AS_OF)
            read_existing_state(client, pid, risk_assessment_identifier(assessment))

    def raw_path() -> None:
        for pid in ids:
            _raw_reads(session, base_url, pid, observation_search(pid, knowledge, AS_OF), codes)
            batch = {"resourceType": "Bundle", "type": "batch", "entry": [
                {"request": {"method": "GET", "url": f"Flag?subject=Patient/{pid}"}},
                {"request": {"method": "GET", "url": f"ServiceRequest?subject=Patient/{pid}"}},
                {"request": {"method": "GET", "url": f"RiskAssessment?subject=Patient/{pid}&_summary=count"}}]}
            session.post(base_url, json=batch, headers={"Content-Type": "application/fhir+json"}, timeout=30)

    module_s = statistics.median(timed(module_path, 3))
    raw_s = statistics.median(timed(raw_path, 3))
    return [
        "## One patient against the local HAPI server (`screen` read path)",
        "",
        "| measure | module | same queries, raw `requests` | ratio |",
        "|---|---|---|---|",
        f"| requests to read one patient | {requests_per_read} | 3 | |",
        f"| time to read one patient (median of 15) | {ours * 1000:.1f} ms | {raw * 1000:.1f} ms | {ours / raw:.2f} |",
        "",
        f"## Batch search path, {len(ids)} patients, sequential (reads + evaluation + write-back state read)",
        "",
        "| measure | module | server's own time for the same reads | ratio |",
        "|---|---|---|---|",
        f"| patients per second | {len(ids) / module_s:.1f} | {len(ids) / raw_s:.1f} | {module_s / raw_s:.2f} |",
        "",
        "Target: ratio <= 1.25 (the module must not be the bottleneck). Command: `python bench/run.py --only search`",
        "",
    ]


NDJSON_CHILD = """
import resource, sys, time
from pathlib import Path
from datetime import date
from rls_screen.batch.sources import NdjsonIndex
from rls_screen.engine import load_knowledge
from rls_screen.screening import assess
knowledge = load_knowledge()
started = time.perf_counter()
index = NdjsonIndex(Path(sys.argv[2]))
index.load(Path(sys.argv[1]))
indexed = time.perf_counter()
n = 0
for pid in index.patient_ids():
    assess(index.patient_data(pid), knowledge=knowledge, as_of=date(2026, 11, 25))
    n += 1
done = time.perf_counter()
cpu = resource.getrusage(resource.RUSAGE_SELF)
print(n, indexed - started, done - indexed, cpu.ru_utime + cpu.ru_stime, cpu.ru_maxrss)
"""


def bench_ndjson(quick: bool) -> list[str]:
    sizes = (500, 5000) if quick else (2000, 20000)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            directory = Path(tmp) / f"p{n}"
            write_ndjson(iter_records(n), directory)
            result = subprocess.run([sys.executable, "-c", NDJSON_CHILD, str(directory), str(Path(tmp) / f"i{n}.sqlite")],
                                    capture_output=True, text=True, check=True)
            count, index_s, eval_s, cpu_s, rss_kb = result.stdout.split()
            total = float(index_s) + float(eval_s)
            rows.append(f"| {int(count):,} | {float(index_s):.1f} s | {float(eval_s):.1f} s | "
                        f"{int(count) / total:,.0f} | {int(count) / float(cpu_s):,.0f} | {int(rss_kb) / 1024:.0f} MB |")
    return [
        "## Batch NDJSON path, offline (`batch --ndjson DIR --dry-run`): index to SQLite on disk, then evaluate",
        "",
        "| patients | index | evaluate | patients/s (wall) | patients/s per CPU-second | peak RSS |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        "Peak memory should stay flat from 1x to 10x (resources are streamed to an on-disk index).",
        "Command: `python bench/run.py --only ndjson`",
        "",
    ]


def iter_records(n: int):  # type: ignore[no-untyped-def]
    from rls_screen.synth import iter_patient_records

    return iter_patient_records(n, 2, AS_OF, "nd")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--write", type=Path, help="write the markdown report here")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument("--only", choices=("engine", "search", "ndjson"))
    args = parser.parse_args()
    base_url = os.environ.get("FHIR_BASE_URL", "http://127.0.0.1:8080/fhir").rstrip("/")
    lines = [
        "# Benchmarks",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {machine()}; HAPI FHIR JPA 8.8 (H2 in memory) on the same machine.",
        "Reproduce: `make bench` (needs the local server: `make fhir-up`).",
        "",
    ]
    if args.only in (None, "engine"):
        lines += bench_engine(args.quick)
    if args.only in (None, "search"):
        lines += bench_screen_and_search(base_url, args.quick) if _server(base_url) else [
            "## Search path", "", f"Skipped: no FHIR server at {base_url}.", ""]
    if args.only in (None, "ndjson"):
        lines += bench_ndjson(args.quick)
    text = "\n".join(lines)
    print(text)
    if args.write:
        existing = args.write.read_text(encoding="utf-8") if args.write.exists() else ""
        marker = "<!-- sections below are maintained by hand -->"
        tail = existing[existing.index(marker):] if marker in existing else marker + "\n"
        args.write.write_text(text + "\n" + tail, encoding="utf-8")
    return 0


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_NOFILE, resource.getrlimit(resource.RLIMIT_NOFILE))
    sys.exit(main())
