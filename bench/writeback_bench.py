"""Batch with write-back in groups vs the server's own time for the same requests sent directly (issue 18).

    python bench/writeback_bench.py [--patients 50] [--rounds 2] [--concurrency 2] [--group-sizes 1,25]

The fairness rules of bench/search_bench.py, for groups:
- Same requests: the module screens panel A through the real batch runner (``run_job``: the group's batch
  read, evaluation, the pre-write read, planning, the group transaction, the job store) over a recording
  session; the raw side replays exactly those HTTP requests (same method, URL, headers, body bytes) for
  panel B, an identical panel whose id prefix differs by one character, with plain ``requests``, group by
  group, the same number of groups in flight, no evaluation.
- Same server state: every round uses fresh panels (loaded before any round is measured), so both sides
  create the RiskAssessments, Flags, ServiceRequests and Provenance for the first time: module on A, raw on
  B, module again on C (raw sits in the middle; the module's figure is the mean of A and C).
- Warmed: a discarded first round. Medians over the rounds.
Requires the FHIR server (FHIR_BASE_URL, default the local HAPI). Ids are prefixed ``wb<time>`` (test data).
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

from rls_screen.batch import runner
from rls_screen.batch.jobs import JobStore
from rls_screen.fhir_client import Allowlist, FhirClient
from rls_screen.knowledge import Knowledge, load_knowledge
from rls_screen.screening import ensure_device
from rls_screen.synth import chunked_transaction_bundles, generate_panel

AS_OF = date(2026, 11, 25)
SEED = 9
Recorded = tuple[str, str, bytes | None, dict[str, str]]
KEEP_HEADERS = ("Accept", "Content-Type", "If-None-Exist", "If-Match", "Prefer", "Cache-Control")
_current = threading.local()


class _RecordingSession(requests.Session):
    """Records each request sent while a group is screened (by the runner's worker thread)."""

    def __init__(self, sink: dict[str, list[Recorded]]) -> None:
        super().__init__()
        self.sink = sink

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        group = getattr(_current, "group", None)
        if group is not None:
            body = request.body.encode() if isinstance(request.body, str) else request.body
            headers = {k: v for k, v in request.headers.items() if k in KEEP_HEADERS}
            self.sink.setdefault(group, []).append((str(request.method), str(request.url), body, headers))
        return super().send(request, **kwargs)


def _mount(session: requests.Session) -> requests.Session:
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=32, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


_screen_group = runner.screen_group


def _tagged_screen_group(client: Any, job: Any, ids: list[str], options: Any) -> Any:
    _current.group = ids[0]
    try:
        return _screen_group(client, job, ids, options)
    finally:
        _current.group = None


runner.screen_group = _tagged_screen_group


def load_panel(base_url: str, prefix: str, n: int) -> list[str]:
    panel = generate_panel(n, seed=SEED, as_of=AS_OF, id_prefix=prefix)
    client = FhirClient(base_url, allowlist=Allowlist((base_url,)), read_timeout_s=600)
    for bundle in chunked_transaction_bundles(panel, patients_per_bundle=10):
        client.transaction(bundle)
    client.close()
    return [r.patient["id"] for r in panel.patients]


def module_run(
    base_url: str, ids: list[str], knowledge: Knowledge, *, concurrency: int, group_size: int
) -> tuple[float, dict[str, list[Recorded]]]:
    """The real batch runner with write-back; returns (wall seconds, the requests of each group)."""
    recording: dict[str, list[Recorded]] = {}
    client = FhirClient(base_url, allowlist=Allowlist((base_url,)), session=_mount(_RecordingSession(recording)))
    with tempfile.TemporaryDirectory() as tmp:
        store = JobStore(Path(tmp) / "jobs.sqlite")
        job = store.create_job(created="bench", source="bench", as_of=AS_OF, dry_run=False, fhir_base_url=base_url)
        store.add_patients(job.id, ids)
        options = runner.BatchOptions(
            knowledge=knowledge,
            recorded=datetime(2026, 11, 25, 12, tzinfo=UTC),
            concurrency=concurrency,
            group_size=group_size,
            retry_rounds=0,
        )
        started = time.perf_counter()
        counts = runner.run_job(store, job, client, options)
        elapsed = time.perf_counter() - started
        store.close()
    client.close()
    if counts["done"] != len(ids):
        raise RuntimeError(f"module run: {counts}")
    if any("_getpages" in url for calls in recording.values() for _, url, _, _ in calls):
        raise RuntimeError("a search was paged: replaying page links of another panel is not the same")
    return elapsed, recording


def raw_run(session: requests.Session, recording: dict[str, list[Recorded]], rename: tuple[str, str], n: int) -> float:
    """The requests recorded for panel A, renamed to panel B and sent directly, group by group."""
    old, new = rename
    old_b, new_b = old.encode(), new.encode()
    plans = [
        [(m, u.replace(old, new), b.replace(old_b, new_b) if b else None, h) for m, u, b, h in calls]
        for calls in recording.values()
    ]

    def replay(plan: list[Recorded]) -> None:
        for method, url, body, headers in plan:
            response = session.request(method, url, data=body, headers=headers, timeout=600)
            if response.status_code >= 400:
                raise RuntimeError(f"raw {method} -> HTTP {response.status_code}")
            response.content  # noqa: B018 - read the whole body, as the module does

    started = time.perf_counter()
    with ThreadPoolExecutor(n) as pool:
        list(pool.map(replay, plans))
    return time.perf_counter() - started


def bench(base_url: str, n: int, rounds: int, concurrency: int, group_sizes: list[int]) -> list[str]:
    knowledge = load_knowledge()
    stamp = f"wb{int(time.time()) % 100000:05d}"
    session = _mount(requests.Session())
    ensure_device(FhirClient(base_url, allowlist=Allowlist((base_url,))))  # once, outside any measured group
    # every panel first (loading is the slow part on an H2-backed server), so no load overlaps a measurement
    prefixes = [
        f"{stamp}g{size:03d}r{round_number}{side}"
        for size in group_sizes
        for round_number in range(rounds + 1)
        for side in "abc"
    ]
    with ThreadPoolExecutor(2) as pool:
        panels = dict(zip(prefixes, pool.map(lambda prefix: load_panel(base_url, prefix, n), prefixes), strict=True))
    rows = []
    for size in group_sizes:
        module_times: list[float] = []
        raw_times: list[float] = []
        request_counts: list[float] = []
        for round_number in range(rounds + 1):  # round 0 warms up and is discarded
            a, b, c = (f"{stamp}g{size:03d}r{round_number}{side}" for side in "abc")
            first, recording = module_run(base_url, panels[a], knowledge, concurrency=concurrency, group_size=size)
            raw_s = raw_run(session, recording, (a, b), concurrency)
            second, _ = module_run(base_url, panels[c], knowledge, concurrency=concurrency, group_size=size)
            if round_number:
                module_times.append(statistics.mean([first, second]))
                raw_times.append(raw_s)
                request_counts.append(sum(len(v) for v in recording.values()) / n)
        module_s, raw_s = statistics.median(module_times), statistics.median(raw_times)
        ratios = [m / r for m, r in zip(module_times, raw_times, strict=True)]
        rows.append(
            f"| {size} | {concurrency} | {statistics.median(request_counts):.2f} | {n / module_s:.1f} "
            f"| {n / raw_s:.1f} | {module_s / raw_s:.2f} | {min(ratios):.2f}-{max(ratios):.2f} |"
        )
    return [
        f"## Batch write-back in groups vs the same requests sent directly ({n} patients per round, "
        f"{rounds} rounds + 1 warm-up)",
        "",
        "| group size | groups in flight | requests per patient | module patients/s | raw patients/s "
        "| ratio module/raw (median) | ratio range |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"Command: `python bench/writeback_bench.py --patients {n} --rounds {rounds} --concurrency {concurrency} "
        f"--group-sizes {','.join(map(str, group_sizes))}`",
        "",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--patients", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--group-sizes", default="1,25")
    args = parser.parse_args()
    base_url = os.environ.get("FHIR_BASE_URL", "http://127.0.0.1:8080/fhir").rstrip("/")
    sizes = [int(size) for size in args.group_sizes.split(",")]
    print("\n".join(bench(base_url, args.patients, args.rounds, args.concurrency, sizes)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
