"""Batch search path vs the server's own time for the same requests issued directly (issue 6 / issue 7).

    python bench/search_bench.py [--patients 30] [--rounds 4] [--concurrency 1,4] [--modes dry-run,write]

How the comparison is made fair:
- Same requests: the module screens panel A through the real batch runner (``run_job``: reads, evaluation,
  write-back planning, the transaction, the job store) over a recording session; the raw side replays exactly
  those HTTP requests (same method, URL, headers, body bytes) for panel B, an identical synthetic panel whose
  id prefix differs only by one character, with plain ``requests`` and no evaluation at all.
- Same server state: with writes, every round uses two fresh panels, so both sides create the same
  RiskAssessments, Flags and Provenance for the first time; dry runs (reads only) reuse one pair.
- Warmed: a discarded first round (server caches, connection pools, the module's Device).
- Interleaved: module and raw alternate, the side that goes first alternating each round; medians reported.
- Concurrency: the same number of patients in flight on both sides (the batch default is 4).
Requires the FHIR server (FHIR_BASE_URL, default the local HAPI). Ids are prefixed ``sb<time>`` (test data).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from functools import partial

import requests

from replay import Recording, load_panel, module_run, pooled, raw_run, requests_sent
from rls_screen.fhir_client import Allowlist, FhirClient
from rls_screen.knowledge import load_knowledge
from rls_screen.screening import ensure_device

__all__ = ["bench_search", "load_panel"]  # bench/run.py loads its CDS patient with load_panel


def bench_search(base_url: str, n: int, rounds: int, concurrencies: list[int], modes: list[str]) -> list[str]:
    knowledge = load_knowledge()
    stamp = f"sb{int(time.time()) % 100000:05d}"
    session = pooled(requests.Session())
    rows = []
    pair = 0

    def fresh_pair() -> tuple[str, str, list[str], list[str]]:
        nonlocal pair
        pair += 1
        a, b = f"{stamp}{pair:03d}a", f"{stamp}{pair:03d}b"
        return a, b, load_panel(base_url, a, n), load_panel(base_url, b, n)

    def fresh_panel() -> list[str]:
        nonlocal pair
        pair += 1
        return load_panel(base_url, f"{stamp}{pair:03d}c", n)

    ensure_device(FhirClient(base_url, allowlist=Allowlist((base_url,))))  # once, outside any measured patient
    shared = fresh_pair()
    for mode in modes:
        dry_run = mode == "dry-run"
        for concurrency in concurrencies:
            module_times: list[float] = []
            raw_times: list[float] = []
            request_counts: list[float] = []

            # one by one (group_size=1): requests recorded per patient; bench/writeback_bench.py measures groups
            module = partial(
                module_run, base_url, knowledge=knowledge, dry_run=dry_run, concurrency=concurrency, group_size=1
            )

            previous: Recording = {}
            for round_number in range(rounds + 1):  # round 0 warms up and is discarded
                if dry_run:
                    # reads only: the server state does not change, one pair serves every round; who goes first
                    # alternates, and the raw side replays what the module sent in this same round
                    a, b, ids_a, _ = shared
                    if round_number % 2 == 0:
                        module_s, recording = module(ids_a)
                        raw_s = raw_run(session, recording, (a, b), concurrency)
                    else:
                        raw_s = raw_run(session, previous, (a, b), concurrency)
                        module_s, recording = module(ids_a)
                    previous = recording
                    module_round = [module_s]
                else:
                    # writes: fresh panels every round (first-time creates on both sides); the raw replay needs
                    # the module's requests first, so module (A), raw (B), module again (C): raw sits in the middle
                    a, b, ids_a, _ = fresh_pair()
                    ids_c = fresh_panel()
                    first, recording = module(ids_a)
                    raw_s = raw_run(session, recording, (a, b), concurrency)
                    second, _ = module(ids_c)
                    module_round = [first, second]
                if round_number:
                    module_times.append(statistics.mean(module_round))
                    raw_times.append(raw_s)
                    request_counts.append(requests_sent(recording) / len(ids_a))
            module_s, raw_s = statistics.median(module_times), statistics.median(raw_times)
            ratios = [m / r for m, r in zip(module_times, raw_times, strict=True)]
            rows.append(
                f"| {mode} | {concurrency} | {statistics.median(request_counts):.1f} | {n / module_s:.1f} "
                f"| {n / raw_s:.1f} | {module_s / raw_s:.2f} | {min(ratios):.2f}-{max(ratios):.2f} |"
            )
    return [
        f"## Batch search path vs the server's own time ({n} patients per round, {rounds} rounds + 1 warm-up)",
        "",
        "Module: `run_job` over the FHIR server (read 3 requests, evaluate, read write-back state, plan, and with",
        "writes one transaction per patient that changed). Raw: the identical HTTP requests for an identical panel,",
        "sent with plain `requests`, no evaluation. Same concurrency on both sides.",
        "",
        "| mode | patients in flight | requests per patient | module patients/s | raw patients/s "
        "| ratio module/raw (median) | ratio range |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        "Target: ratio <= 1.25 (the module must not be the bottleneck).",
        f"Command: `python bench/search_bench.py --patients {n} --rounds {rounds} "
        f"--concurrency {','.join(map(str, concurrencies))} --modes {','.join(modes)}`",
        "",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--patients", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--concurrency", default="1,4")
    parser.add_argument("--modes", default="dry-run,write")
    args = parser.parse_args()
    base_url = os.environ.get("FHIR_BASE_URL", "http://127.0.0.1:8080/fhir").rstrip("/")
    lines = bench_search(
        base_url, args.patients, args.rounds, [int(c) for c in args.concurrency.split(",")], args.modes.split(",")
    )
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
