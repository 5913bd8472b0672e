"""Module against raw: load panels onto a FHIR server, record the requests the batch sends, replay them.

Shared by bench/search_bench.py (one patient at a time) and bench/writeback_bench.py (groups):
- ``load_panel``: a synthetic panel written to the server in small transactions (not measured).
- ``module_run``: the real batch runner (``run_job``) over a session that records every request, keyed by
  the patient or group whose screening sent it (``recorded_by``: a patch of one runner function for the
  length of the run, restored after it, so importing a benchmark changes nothing).
- ``raw_run``: those requests renamed to an identical panel (the id prefix differs by one character) and
  sent with plain ``requests``, the same number in flight, no evaluation: the server's own time.
- ``ServerCpu``: the FHIR server process's CPU seconds over a measured run (its share of the machine).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import orjson
import requests
from requests.adapters import HTTPAdapter

from rls_screen.batch import runner
from rls_screen.batch.jobs import JobStore
from rls_screen.fhir_client import Allowlist, FhirClient
from rls_screen.knowledge import Knowledge
from rls_screen.synth import chunked_transaction_bundles, generate_panel
from rls_screen.writeback import RISK_ASSESSMENT_ID_SYSTEM as RA_SYSTEM

AS_OF = date(2026, 11, 25)
SEED = 9
RECORDED_AT = datetime(2026, 11, 25, 12, tzinfo=UTC)
Recorded = tuple[str, str, bytes | None, dict[str, str]]
"""(method, URL, body bytes, the headers that change what the server does)."""
Recording = dict[str, list[Recorded]]
"""The requests each patient's or group's screening sent, keyed by its (first) patient id."""
KEEP_HEADERS = ("Accept", "Content-Type", "If-None-Exist", "If-Match", "Prefer", "Cache-Control", "Authorization")


class _RecordingSession(requests.Session):
    """Records each request a worker thread sends while it screens a patient or group (``recorded_by``)."""

    def __init__(self, sink: Recording, scope: threading.local) -> None:
        super().__init__()
        self.sink, self.scope = sink, scope

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        key = getattr(self.scope, "key", None)
        if key is not None:
            body = request.body.encode() if isinstance(request.body, str) else request.body
            headers = {k: v for k, v in request.headers.items() if k in KEEP_HEADERS}
            self.sink.setdefault(key, []).append((str(request.method), str(request.url), body, headers))
        return super().send(request, **kwargs)


def pooled(session: requests.Session) -> requests.Session:
    """Both sides pool connections alike (more than the threads in flight, no adapter retries)."""
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=32, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


@contextmanager
def recorded_by(owner: Any, name: str, key_of: Callable[..., str], scope: threading.local) -> Iterator[None]:
    """For the block, ``owner.name(...)`` marks its thread's requests with ``key_of(*args)``; restored after."""
    original = getattr(owner, name)

    def tagged(*args: Any) -> Any:
        scope.key = key_of(*args)
        try:
            return original(*args)
        finally:
            scope.key = None

    setattr(owner, name, tagged)
    try:
        yield
    finally:
        setattr(owner, name, original)


def load_panel(base_url: str, prefix: str, n: int) -> list[str]:
    """Write an n-patient synthetic panel (ids prefixed ``prefix``) to the server; its patient ids."""
    panel = generate_panel(n, seed=SEED, as_of=AS_OF, id_prefix=prefix)
    # small transactions and a long read timeout: an H2-backed server slows down as it fills up
    client = FhirClient(base_url, allowlist=Allowlist((base_url,)), read_timeout_s=600)
    for bundle in chunked_transaction_bundles(panel, patients_per_bundle=10):
        client.transaction(bundle)
    client.close()
    return [r.patient["id"] for r in panel.patients]


def module_run(
    base_url: str,
    ids: list[str],
    knowledge: Knowledge,
    *,
    dry_run: bool,
    concurrency: int,
    group_size: int,
) -> tuple[float, Recording]:
    """The real batch runner (no retry rounds: a failure fails the benchmark); (wall seconds, its requests).

    Requests are keyed by group (its first patient), so the raw side replays each group's requests in
    order, one group per thread, as the runner's threads sent them.
    """
    recording: Recording = {}
    scope = threading.local()
    client = FhirClient(base_url, allowlist=Allowlist((base_url,)), session=pooled(_RecordingSession(recording, scope)))
    with tempfile.TemporaryDirectory() as tmp:
        store = JobStore(Path(tmp) / "jobs.sqlite")
        job = store.create_job(created="bench", source="bench", as_of=AS_OF, dry_run=dry_run, fhir_base_url=base_url)
        store.add_patients(job.id, ids)
        options = runner.BatchOptions(
            knowledge=knowledge,
            recorded=RECORDED_AT,
            concurrency=concurrency,
            group_size=group_size,
            retry_rounds=0,
        )
        with recorded_by(runner, "screen_group", lambda _client, _job, group, _options: group[0], scope):
            started = time.perf_counter()
            counts = runner.run_job(store, job, client, options)
            elapsed = time.perf_counter() - started
        store.close()
    client.close()
    if counts["done"] != len(ids):
        raise RuntimeError(f"module run: {counts}")
    return elapsed, recording


def requests_sent(recording: Recording) -> int:
    return sum(len(calls) for calls in recording.values())


def _risk_assessment_identifiers(recording: Recording) -> set[str]:
    """The RiskAssessment identifiers the module's transactions created (hashes over the patient, among others)."""
    found: set[str] = set()
    for calls in recording.values():
        for method, _url, body, _headers in calls:
            if method != "POST" or not body or b'"transaction"' not in body:
                continue
            for entry in orjson.loads(body).get("entry", []):
                resource = entry.get("resource", {})
                if resource.get("resourceType") == "RiskAssessment":
                    found.update(i["value"] for i in resource.get("identifier", []) if i.get("system") == RA_SYSTEM)
    return found


def renamed(recording: Recording, rename: tuple[str, str]) -> list[list[Recorded]]:
    """Panel A's requests for panel B: the id prefix replaced, and each RiskAssessment identifier too.

    The identifier is a hash (over the patient id among others) that a plain rename leaves as it was: B's
    pre-write read would then find A's RiskAssessments, and B's conditional creates (``ifNoneExist``) would
    match them and create nothing, so the raw side would do less work than the module. Each is replaced by
    another value of the same length that no resource has yet.
    """
    old, new = rename
    swaps = [(old.encode(), new.encode())]
    swaps += [
        (value.encode(), hashlib.sha256(f"{new}|{value}".encode()).hexdigest()[: len(value)].encode())
        for value in sorted(_risk_assessment_identifiers(recording))
    ]

    def swap(data: bytes) -> bytes:
        for before, after in swaps:
            data = data.replace(before, after)
        return data

    return [
        [(m, swap(u.encode()).decode(), swap(b) if b else None, h) for m, u, b, h in calls]
        for calls in recording.values()
    ]


def _next_links(answer: dict[str, Any]) -> list[str]:
    """The next-page links of a search answer, or of each search in a batch answer (in entry order)."""
    bundles = (
        [answer] if answer.get("type") == "searchset" else [e.get("resource", {}) for e in answer.get("entry", [])]
    )
    return [
        link["url"]
        for bundle in bundles
        for link in bundle.get("link", [])
        if isinstance(bundle, dict) and link.get("relation") == "next"
    ]


def raw_run(session: requests.Session, recording: Recording, rename: tuple[str, str], concurrency: int) -> float:
    """The recorded requests, renamed from panel A to panel B (``renamed``), sent directly; wall seconds.

    Each recorded group is one task (its requests in order), ``concurrency`` tasks in flight, like the runner.
    A page the module followed (``_getpages``, a search id of panel A's) is this panel's own next page.
    """
    plans = renamed(recording, rename)

    def replay(plan: list[Recorded]) -> None:
        pages: list[str] = []  # next-page links not followed yet, in the order the module follows them
        for method, url, body, headers in plan:
            if "_getpages" in url:  # a page of this panel's own search (the recorded one is panel A's)
                if not pages:
                    raise RuntimeError("the module followed a page the raw search does not have")
                url = pages.pop(0)
            response = session.request(method, url, data=body, headers=headers, timeout=600)
            if response.status_code >= 400:
                raise RuntimeError(f"raw {method} -> HTTP {response.status_code}")
            if b'"next"' in response.content:  # reads the whole body, as the module does
                pages[:0] = _next_links(orjson.loads(response.content))

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(replay, plans))
    return time.perf_counter() - started


@dataclass
class ServerCpu:
    """CPU seconds (user + system) of one process, e.g. the FHIR server's JVM, read from /proc (Linux)."""

    pid: int | None

    def seconds(self) -> float | None:
        if self.pid is None:
            return None
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime (proc(5))

    @classmethod
    def of_port(cls, port: int) -> ServerCpu:
        """The server started by deploy/fhir-up.sh on this port (its pid file), or none known."""
        run_dir = Path(os.environ.get("FHIR_RUN_DIR", Path(__file__).parents[1] / "deploy/fhir-server/.run"))
        try:
            if int((run_dir / "fhir-server.port").read_text()) == port:
                return cls(int((run_dir / "fhir-server.pid").read_text()))
        except (OSError, ValueError):
            pass
        return cls(None)


def cpu_during(cpu: ServerCpu, run: Callable[[], Any]) -> tuple[Any, float | None]:
    """``run()``'s result and the process's CPU seconds while it ran (None when unknown)."""
    before = cpu.seconds()
    result = run()
    after = cpu.seconds()
    return result, (after - before if before is not None and after is not None else None)


def wait_until_quiet(
    cpu: ServerCpu, *, below_cores: float = 0.1, window_s: float = 2.0, limit_s: float = 120.0
) -> float:
    """Wait until the server uses less than ``below_cores`` over a window (its JIT compiler and the work a
    load queued behind it, e.g. subscription matching, settle), at most ``limit_s``; the seconds waited."""
    started = time.perf_counter()
    before = cpu.seconds()
    while before is not None and time.perf_counter() - started < limit_s:
        time.sleep(window_s)
        after = cpu.seconds()
        if after is None or after - before < below_cores * window_s:
            break
        before = after
    return time.perf_counter() - started
