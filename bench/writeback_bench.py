"""Batch with write-back in groups vs the server's own time for the same requests sent directly (issue 18).

    python bench/writeback_bench.py [--patients 200] [--rounds 3] [--concurrency 2] [--group-sizes 1,25,50]

The fairness rules of bench/search_bench.py, for groups (machinery in bench/replay.py):
- Same requests: the module screens panel A through the real batch runner (``run_job``: the group's batch
  read, evaluation, the pre-write read, planning, the group transaction, the job store) over a recording
  session; the raw side replays exactly those HTTP requests (same method, URL, headers, body bytes) for
  panel B, an identical panel whose id prefix differs by one character, with plain ``requests``, group by
  group, the same number of groups in flight, no evaluation.
- Same server state: every round uses fresh panels, loaded before the round is measured, so both sides
  create the RiskAssessments, Flags, ServiceRequests and Provenance for the first time: module on A, raw on
  B, module again on C (raw sits in the middle; the module's figure is the mean of A and C).
- Interleaved: each round measures every group size in turn; round 0 warms up and is discarded; medians.
- Quiet server: before each run, a wait (up to 30 s) until the server's CPU settles: after a load, a fresh
  JVM's JIT compiler and the work the load queued (subscription matching) would slow whichever side went first.
- CPU: the FHIR server's CPU seconds per wall second during each run (when it was started by
  deploy/fhir-up.sh on the URL's port, or ``--server-pid``), and this process's own (the module's side).
Requires the FHIR server (FHIR_BASE_URL, default the local HAPI). Ids are prefixed ``wb<time>`` (test data).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from urllib.parse import urlsplit

import requests

from replay import ServerCpu, cpu_during, load_panel, module_run, pooled, raw_run, requests_sent, wait_until_quiet
from rls_screen.fhir_client import Allowlist, FhirClient
from rls_screen.knowledge import load_knowledge
from rls_screen.screening import ensure_device


@dataclass
class Figures:
    """One group size's measured rounds."""

    module_s: list[float] = field(default_factory=list)
    raw_s: list[float] = field(default_factory=list)
    requests_per_patient: list[float] = field(default_factory=list)
    server_cores_module: list[float] = field(default_factory=list)
    server_cores_raw: list[float] = field(default_factory=list)
    own_cpu_ms_per_patient: list[float] = field(default_factory=list)


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):.2f}" if values else "n/a"


def bench(
    base_url: str, n: int, rounds: int, concurrency: int, sizes: list[int], server: ServerCpu, warmup: int
) -> list[str]:
    knowledge = load_knowledge()
    stamp = f"wb{int(time.time()) % 100000:05d}"
    session = pooled(requests.Session())
    ensure_device(FhirClient(base_url, allowlist=Allowlist((base_url,))))  # once, outside any measured group
    figures = {size: Figures() for size in sizes}
    load_before = os.getloadavg()
    for round_number in range(rounds + 1):  # round 0 warms up and is discarded
        prefixes = [f"{stamp}g{size:03d}r{round_number}{side}" for size in sizes for side in "abc"]
        # the warm-up round is smaller: an H2 server holds everything on its heap, and slows as it fills
        size_of_round = warmup if round_number == 0 else n
        with ThreadPoolExecutor(2) as pool:  # loaded before the round, so no load overlaps a measurement
            loaded = pool.map(partial(load_panel, base_url, n=size_of_round), prefixes)
            panels = dict(zip(prefixes, loaded, strict=True))
        for size in sizes:
            a, b, c = (f"{stamp}g{size:03d}r{round_number}{side}" for side in "abc")
            run = partial(
                module_run, base_url, knowledge=knowledge, dry_run=False, concurrency=concurrency, group_size=size
            )
            waited = wait_until_quiet(server)  # the load's tail and the JIT compiler, before every measured run
            own = time.process_time()
            (first, recording), server_first = cpu_during(server, partial(run, panels[a]))
            own_first = time.process_time() - own
            waited += wait_until_quiet(server)
            raw_s, server_raw = cpu_during(server, partial(raw_run, session, recording, (a, b), concurrency))
            waited += wait_until_quiet(server)
            own = time.process_time()
            (second, _), server_second = cpu_during(server, partial(run, panels[c]))
            own_second = time.process_time() - own
            print(
                f"round {round_number} size {size}: module {first:.2f}/{second:.2f} s, raw {raw_s:.2f} s, "
                f"load {os.getloadavg()[0]:.1f}, waited {waited:.0f} s for a quiet server",
                file=sys.stderr,
                flush=True,
            )
            if not round_number:
                continue
            f = figures[size]
            f.module_s.append(statistics.mean([first, second]))
            f.raw_s.append(raw_s)
            f.requests_per_patient.append(requests_sent(recording) / n)
            f.own_cpu_ms_per_patient.append(1000 * (own_first + own_second) / (2 * n))
            if server_first is not None and server_second is not None and server_raw is not None:
                f.server_cores_module.append((server_first + server_second) / (first + second))
                f.server_cores_raw.append(server_raw / raw_s)
    load_after = os.getloadavg()
    rows = []
    for size in sizes:
        f = figures[size]
        module_s, raw_s = statistics.median(f.module_s), statistics.median(f.raw_s)
        ratios = [m / r for m, r in zip(f.module_s, f.raw_s, strict=True)]
        rows.append(
            f"| {size} | {concurrency} | {statistics.median(f.requests_per_patient):.2f} | {n / module_s:.1f} "
            f"| {n / raw_s:.1f} | {module_s / raw_s:.2f} | {min(ratios):.2f}-{max(ratios):.2f} "
            f"| {_median(f.server_cores_module)} | {_median(f.server_cores_raw)} "
            f"| {statistics.median(f.own_cpu_ms_per_patient):.1f} |"
        )
    return [
        f"Batch write-back in groups vs the same requests sent directly ({n} patients per run, "
        f"{rounds} rounds + 1 warm-up of {warmup}; load average {load_before[0]:.1f} before, "
        f"{load_after[0]:.1f} after)",
        "",
        "| group size | groups in flight | requests per patient | module patients/s | raw patients/s "
        "| ratio module/raw (median) | ratio range | server cores busy, module | server cores busy, raw "
        "| module process CPU ms/patient |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"Command: `python bench/writeback_bench.py --patients {n} --rounds {rounds} --concurrency {concurrency} "
        f"--group-sizes {','.join(map(str, sizes))} --warmup-patients {warmup}`",
        "",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--patients", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup-patients", type=int, default=50, help="patients in the discarded first round")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--group-sizes", default="1,25,50")
    parser.add_argument("--server-pid", type=int, help="the FHIR server's process, for its CPU (default: fhir-up.sh's)")
    args = parser.parse_args()
    base_url = os.environ.get("FHIR_BASE_URL", "http://127.0.0.1:8080/fhir").rstrip("/")
    server = ServerCpu(args.server_pid) if args.server_pid else ServerCpu.of_port(urlsplit(base_url).port or 80)
    sizes = [int(size) for size in args.group_sizes.split(",")]
    print("\n".join(bench(base_url, args.patients, args.rounds, args.concurrency, sizes, server, args.warmup_patients)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
