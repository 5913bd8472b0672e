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
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from rls_screen.batch import groups, runner
from rls_screen.batch.jobs import JobStore
from rls_screen.fhir_client import Allowlist, FhirClient
from rls_screen.knowledge import Knowledge, load_knowledge
from rls_screen.screening import ensure_device
from rls_screen.synth import chunked_transaction_bundles, generate_panel

AS_OF = date(2026, 11, 25)
SEED = 9
Recorded = tuple[str, str, bytes | None, dict[str, str]]
_current = threading.local()
KEEP_HEADERS = ("Accept", "Content-Type", "If-None-Exist", "If-Match", "Prefer", "Authorization")


def _session(recording: dict[str, list[Recorded]] | None = None) -> requests.Session:
    session: requests.Session = _RecordingSession(recording) if recording is not None else requests.Session()
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=32, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


class _RecordingSession(requests.Session):
    """Records each request sent while a patient is being screened (by the runner's worker thread)."""

    def __init__(self, sink: dict[str, list[Recorded]]) -> None:
        super().__init__()
        self.sink = sink

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        patient = getattr(_current, "patient", None)
        if patient is not None:
            body = request.body.encode() if isinstance(request.body, str) else request.body
            headers = {k: v for k, v in request.headers.items() if k in KEEP_HEADERS}
            self.sink.setdefault(patient, []).append((str(request.method), str(request.url), body, headers))
        return super().send(request, **kwargs)


_screen_one = groups.screen_one


def _tagged_screen_one(client: Any, job: Any, patient_id: str, options: Any) -> dict[str, Any]:
    _current.patient = patient_id
    try:
        return _screen_one(client, job, patient_id, options)
    finally:
        _current.patient = None


groups.screen_one = _tagged_screen_one


def load_panel(base_url: str, prefix: str, n: int) -> list[str]:
    panel = generate_panel(n, seed=SEED, as_of=AS_OF, id_prefix=prefix)
    # small transactions and a long read timeout: the shared H2-backed server slows down as it fills up
    client = FhirClient(base_url, allowlist=Allowlist((base_url,)), read_timeout_s=300)
    for bundle in chunked_transaction_bundles(panel, patients_per_bundle=10):
        client.transaction(bundle)
    client.close()
    return [r.patient["id"] for r in panel.patients]


def module_run(
    base_url: str, ids: list[str], knowledge: Knowledge, *, dry_run: bool, concurrency: int
) -> tuple[float, dict[str, list[Recorded]]]:
    """The real batch runner over the search path; returns (wall seconds, requests per patient)."""
    recording: dict[str, list[Recorded]] = {}
    client = FhirClient(base_url, allowlist=Allowlist((base_url,)), session=_session(recording))
    with tempfile.TemporaryDirectory() as tmp:
        store = JobStore(Path(tmp) / "jobs.sqlite")
        job = store.create_job(created="bench", source="bench", as_of=AS_OF, dry_run=dry_run, fhir_base_url=base_url)
        store.add_patients(job.id, ids)
        # one by one (group_size=1): the requests are recorded per patient; bench/writeback_bench.py measures groups
        options = runner.BatchOptions(
            knowledge=knowledge,
            recorded=datetime(2026, 11, 25, 12, tzinfo=UTC),
            concurrency=concurrency,
            group_size=1,
        )
        started = time.perf_counter()
        counts = runner.run_job(store, job, client, options)
        elapsed = time.perf_counter() - started
        store.close()
    client.close()
    if counts["done"] != len(ids):
        raise RuntimeError(f"module run: {counts}")
    return elapsed, recording


def raw_run(
    session: requests.Session,
    recording: dict[str, list[Recorded]],
    ids: list[str],
    rename: tuple[str, str],
    concurrency: int,
) -> float:
    """The requests recorded for ``ids`` (panel A), renamed to panel B and sent directly; returns wall seconds."""
    old, new = rename
    old_b, new_b = old.encode(), new.encode()
    plans = [
        [
            (method, url.replace(old, new), body.replace(old_b, new_b) if body else None, headers)
            for method, url, body, headers in recording[pid]
        ]
        for pid in ids
    ]

    def replay(plan: list[Recorded]) -> None:
        for method, url, body, headers in plan:
            response = session.request(method, url, data=body, headers=headers, timeout=60)
            if response.status_code >= 400:
                raise RuntimeError(f"raw {method} -> HTTP {response.status_code}")
            response.content  # noqa: B018 - read the whole body, as the module does

    started = time.perf_counter()
    if concurrency == 1:
        for plan in plans:
            replay(plan)
    else:
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(replay, plans))
    return time.perf_counter() - started


def bench_search(base_url: str, n: int, rounds: int, concurrencies: list[int], modes: list[str]) -> list[str]:
    knowledge = load_knowledge()
    stamp = f"sb{int(time.time()) % 100000:05d}"
    session = _session()
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

            def module(ids: list[str]) -> tuple[float, dict[str, list[Recorded]]]:
                return module_run(base_url, ids, knowledge, dry_run=dry_run, concurrency=concurrency)  # noqa: B023

            previous: dict[str, list[Recorded]] = {}
            for round_number in range(rounds + 1):  # round 0 warms up and is discarded
                if dry_run:
                    # reads only: the server state does not change, one pair serves every round; who goes first
                    # alternates, and the raw side replays what the module sent in this same round
                    a, b, ids_a, _ = shared
                    if round_number % 2 == 0:
                        module_s, recording = module(ids_a)
                        raw_s = raw_run(session, recording, ids_a, (a, b), concurrency)
                    else:
                        raw_s = raw_run(session, previous, ids_a, (a, b), concurrency)
                        module_s, recording = module(ids_a)
                    previous = recording
                    module_round = [module_s]
                else:
                    # writes: fresh panels every round (first-time creates on both sides); the raw replay needs
                    # the module's requests first, so module (A), raw (B), module again (C): raw sits in the middle
                    a, b, ids_a, _ = fresh_pair()
                    ids_c = fresh_panel()
                    first, recording = module(ids_a)
                    raw_s = raw_run(session, recording, ids_a, (a, b), concurrency)
                    second, _ = module(ids_c)
                    module_round = [first, second]
                if any("_getpages" in url for calls in recording.values() for _, url, _, _ in calls):
                    raise RuntimeError("a search was paged: replaying page links of another panel is not the same")
                if round_number:
                    module_times.append(statistics.mean(module_round))
                    raw_times.append(raw_s)
                    request_counts.append(sum(len(v) for v in recording.values()) / len(ids_a))
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
