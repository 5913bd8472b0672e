"""CDS patient-view: service CPU per call against a bare FastAPI app on the same stack (issue 18, "CDS per call").

    python bench/cds_per_call.py [--calls 200] [--rounds 3] [--profile 300] [--baseline DIR] > fragment.md

Side by side, as the issue measures it:
- The service: ``rls-screen serve --workers 1`` in dev mode (no JWT, so the figure is the hook's own work).
- The floor: a bare FastAPI app on the same stack (uvicorn, one worker, the same interpreter and
  packages) whose one route reads and parses the same JSON body and answers ``{"cards": []}``.
- The same 54-Observation patient-view body (Patient, RLS Condition, 9 draws of 6 analytes), in three
  variants: no findings, two findings (iron below target, anaemia), four findings (iron below target,
  anaemia, kidney failure, potassium 6.3 mmol/L).
- With ``--baseline DIR`` (a source tree of another commit, e.g. ``git archive main | tar -x -C DIR``), that
  commit's service too, run from ``DIR/service`` by the same interpreter: before and after side by side.
- A sequential client (one call at a time, keep-alive); interleaved rounds (the order of the apps rotates
  each round); CPU of each server process from /proc (user + system) over the round's calls.
Then an in-process profile of the service's handler for each body (cProfile through Starlette's
TestClient), grouped by module, so the per-finding cost can be located.
Output: a markdown fragment on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import cProfile
import functools
import io
import os
import pstats
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests

from run import machine  # one description of the machine for every benchmark

SERVICE = "/cds-services/rls-secondary-causes"
LOINC = "http://loinc.org"
DRAWS = 9
# (LOINC, unit, latest value) per variant; 6 analytes x 9 draws = 54 Observations each
VARIANTS: dict[str, tuple[tuple[str, str, float], ...]] = {
    "no findings": (
        ("2276-4", "ug/L", 180.0),
        ("2502-3", "%", 32.0),
        ("718-7", "g/L", 138.0),
        ("62238-1", "mL/min/{1.73_m2}", 92.0),
        ("2823-3", "mmol/L", 4.1),
        ("2601-3", "mmol/L", 0.85),
    ),
    "two findings": (
        ("2276-4", "ug/L", 28.0),
        ("2502-3", "%", 24.0),
        ("718-7", "g/L", 112.0),
        ("62238-1", "mL/min/{1.73_m2}", 72.0),
        ("2823-3", "mmol/L", 4.1),
        ("2601-3", "mmol/L", 0.82),
    ),
    "four findings": (
        ("2276-4", "ug/L", 28.0),
        ("2502-3", "%", 24.0),
        ("718-7", "g/L", 112.0),
        ("62238-1", "mL/min/{1.73_m2}", 12.0),
        ("2823-3", "mmol/L", 6.3),
        ("2601-3", "mmol/L", 0.82),
    ),
}
BARE_APP = textwrap.dedent(
    """
    import json
    from fastapi import FastAPI, Request
    from fastapi.responses import Response

    app = FastAPI()

    @app.post("/cds-services/{service_id}")
    async def hook(service_id: str, request: Request) -> Response:
        json.loads(await request.body())
        return Response(b'{"cards":[]}', media_type="application/json")
    """
)


def body(variant: str) -> dict[str, Any]:
    patient_id = f"pc-{variant.replace(' ', '-')}"
    today = datetime.now(UTC).date()
    observations = []
    for draw in range(DRAWS):
        day = (today - timedelta(days=20 + 30 * draw)).isoformat()
        for n, (loinc, unit, latest) in enumerate(VARIANTS[variant]):
            observations.append(
                {
                    "resourceType": "Observation",
                    "id": f"{patient_id}-o{draw}-{n}",
                    "status": "final",
                    "code": {"coding": [{"system": LOINC, "code": loinc}]},
                    "subject": {"reference": f"Patient/{patient_id}"},
                    "effectiveDateTime": day,
                    "valueQuantity": {
                        "value": round(latest * (1 + 0.02 * draw), 2),
                        "unit": unit,
                        "system": "http://unitsofmeasure.org",
                        "code": unit,
                    },
                }
            )
    rls = {
        "resourceType": "Condition",
        "id": f"{patient_id}-rls",
        "clinicalStatus": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]
        },
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "32914008"}]},
        "subject": {"reference": f"Patient/{patient_id}"},
    }

    def searchset(resources: list[dict[str, Any]]) -> dict[str, Any]:
        return {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in resources]}

    return {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/bench", "patientId": patient_id},
        "prefetch": {
            "patient": {"resourceType": "Patient", "id": patient_id, "gender": "female", "birthDate": "1968-04-12"},
            "conditions": searchset([rls]),
            "observations": searchset(observations),
            "procedures": searchset([]),
            "medications": searchset([]),
        },
    }


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU of the process and its threads (/proc/<pid>/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def server(command: list[str], env: dict[str, str], port: int) -> Iterator[tuple[str, int]]:
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=log)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    requests.get(base + "/", timeout=2)
                    break
                except requests.ConnectionError:
                    time.sleep(0.2)
            else:
                log.seek(0)
                raise RuntimeError(f"server did not start: {log.read()[-2000:]!r}")
            yield base, process.pid
        finally:
            process.terminate()
            process.wait(timeout=30)


def measure(session: requests.Session, url: str, pid: int, payload: bytes, calls: int) -> tuple[float, list[float]]:
    """CPU seconds per call of the server process, and each call's wall time."""
    times = []
    before = cpu_seconds(pid)
    for _ in range(calls):
        started = time.perf_counter()
        response = session.post(url, data=payload, headers={"Content-Type": "application/json"}, timeout=30)
        response.content  # noqa: B018
        times.append(time.perf_counter() - started)
        if response.status_code != 200:
            raise RuntimeError(f"HTTP {response.status_code}: {response.text[:200]}")
    return (cpu_seconds(pid) - before) / calls, times


async def _inline(function: Any, *args: Any, **kwargs: Any) -> Any:
    return function(*args, **kwargs)


class InlineExecutor(concurrent.futures.Executor):
    """The app's call pool, made to run each call in the submitting thread (so cProfile sees it)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as error:
            future.set_exception(error)
        return future


async def _asgi_posts(app: Any, path: str, payload: bytes, calls: int) -> None:
    """POSTs through the ASGI app, one after the other in this thread (so cProfile sees them)."""
    for _ in range(calls):
        await _asgi_post(app, path, payload)


async def _asgi_post(app: Any, path: str, payload: bytes) -> None:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"host", b"127.0.0.1")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }
    messages = [{"type": "http.request", "body": payload, "more_body": False}]
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    await app(scope, receive, send)
    if statuses != [200]:
        raise RuntimeError(f"profiled call answered {statuses}")


def profile(variant: str, calls: int) -> tuple[list[str], list[str]]:
    """The service's handler in this thread (thread pools made inline), profiled; own time by module."""
    import fastapi.dependencies.utils
    import fastapi.routing

    from rls_screen.cds import app as app_module
    from rls_screen.cds import create_app

    for module in (app_module, fastapi.routing, fastapi.dependencies.utils):
        module.run_in_threadpool = _inline  # type: ignore[attr-defined]
    app_module.ThreadPoolExecutor = InlineExecutor  # type: ignore[misc]
    app = create_app()
    payload = orjson_dumps(body(variant))
    asyncio.run(_asgi_posts(app, SERVICE, payload, 20))
    profiler = cProfile.Profile()
    profiler.enable()
    asyncio.run(_asgi_posts(app, SERVICE, payload, calls))
    profiler.disable()
    stats = pstats.Stats(profiler, stream=io.StringIO())
    own: dict[str, float] = {}
    for (filename, _, _), (_, _, tottime, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        if "rls_screen" in filename:
            key = "rls_screen/" + filename.split("rls_screen/", 1)[1]
        elif "site-packages/" in filename:
            key = filename.split("site-packages/", 1)[1].split("/", 1)[0]
        elif filename.startswith("~"):
            key = "builtins (C code: json, pydantic-core, re, ...)"
        elif "asyncio" in filename:
            key = "asyncio (the driver's event loop)"
        else:
            key = "python stdlib"
        own[key] = own.get(key, 0.0) + tottime
    total = sum(own.values())
    top = sorted(own.items(), key=lambda item: -item[1])[:12]
    by_module = [f"| {variant} | {name} | {1000 * t / calls:.2f} | {100 * t / total:.0f} % |" for name, t in top]
    return by_module, _parts(variant, stats, total, calls)


PARTS = (
    (
        "`assess` (the data contract's filter, then the engine: classify per Observation, rules)",
        "assessment.py",
        "assess",
    ),
    ("prefetch decode (`PatientDataResolver`: Bundles to resources, D1 checks)", "cds/prefetch.py", "_search_key"),
    ("cards (`CardBuilder.patient_view`: the one card's text, uuid, signature)", "cds/cards.py", "patient_view"),
    (
        "suppression (`_apply_suppression`: feedback store look-up, issued cards recorded)",
        "cds/runtime.py",
        "_apply_suppression",
    ),
)


def _parts(variant: str, stats: pstats.Stats, total: float, calls: int) -> list[str]:
    """Cumulative time of the call's parts; what the service's own code leaves is the framework's share
    (ASGI middleware, FastAPI, the body's JSON decode and validation, the thread hop, logs, metrics)."""
    cumulative: dict[tuple[str, str], float] = {}
    for (filename, _, function), (_, _, _, cumtime, _) in stats.stats.items():  # type: ignore[attr-defined]
        for _, file_end, name in (*PARTS, ("", "cds/runtime.py", "call")):
            if filename.endswith(file_end) and function == name:
                cumulative[(file_end, name)] = cumulative.get((file_end, name), 0.0) + cumtime
    rows = []
    for label, file_end, name in PARTS:
        t = cumulative.get((file_end, name), 0.0)
        rows.append(f"| {variant} | {label} | {1000 * t / calls:.2f} | {100 * t / total:.0f} % |")
    framework = total - cumulative.get(("cds/runtime.py", "call"), 0.0)
    rows.append(
        f"| {variant} | framework, request decode, response (outside `CdsRuntime.call`) "
        f"| {1000 * framework / calls:.2f} | {100 * framework / total:.0f} % |"
    )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", type=int, default=300, help="calls per profiled variant (0: no profile)")
    parser.add_argument("--baseline", type=Path, help="a source tree whose service/ is measured too (before/after)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "RLS_SCREEN_CDS_DEV_MODE": "true",
            "RLS_SCREEN_STATE_DIR": tmp,
            "RLS_SCREEN_FHIR_ALLOWLIST": "",
        }
        os.environ.update({k: env[k] for k in ("RLS_SCREEN_CDS_DEV_MODE", "RLS_SCREEN_STATE_DIR")})
        (Path(tmp) / "bare_app.py").write_text(BARE_APP, encoding="utf-8")
        service_port, bare_port, baseline_port = free_port(), free_port(), free_port()
        env["RLS_SCREEN_PUBLIC_URL"] = f"http://127.0.0.1:{service_port}"
        bare_cmd = [sys.executable, "-m", "uvicorn", "bare_app:app", "--port", str(bare_port), "--workers", "1"]
        bare_cmd += ["--no-access-log", "--app-dir", tmp, "--log-level", "warning"]
        payloads = {v: orjson_dumps(body(v)) for v in VARIANTS}
        cpu: dict[tuple[str, str], list[float]] = {}
        wall: dict[tuple[str, str], list[float]] = {}
        with ExitStack() as stack:
            service_base, service_pid = stack.enter_context(server(_serve(service_port), env, service_port))
            bare_base, bare_pid = stack.enter_context(server(bare_cmd, env, bare_port))
            sides = {"service": (service_base + SERVICE, service_pid), "bare": (bare_base + SERVICE, bare_pid)}
            if args.baseline:
                baseline_env = env | {
                    "PYTHONPATH": str(args.baseline.resolve() / "service"),
                    "RLS_SCREEN_PUBLIC_URL": f"http://127.0.0.1:{baseline_port}",
                }
                base, pid = stack.enter_context(server(_serve(baseline_port), baseline_env, baseline_port))
                sides["baseline"] = (base + SERVICE, pid)
            session = requests.Session()
            for payload in payloads.values():  # warm-up, discarded
                for url, pid in sides.values():
                    measure(session, url, pid, payload, 50)
            for round_number in range(args.rounds):
                names = list(sides)
                order = names[round_number % len(names) :] + names[: round_number % len(names)]
                for variant, payload in payloads.items():
                    for side in order:
                        url, pid = sides[side]
                        per_call, times = measure(session, url, pid, payload, args.calls)
                        cpu.setdefault((side, variant), []).append(per_call)
                        wall.setdefault((side, variant), []).extend(times)
    rows = []
    for variant in VARIANTS:
        bare = cpu[("bare", variant)]
        times = sorted(wall[("service", variant)])
        p50, p99 = times[len(times) // 2] * 1000, times[int(len(times) * 0.99)] * 1000
        cells = [_cpu_cells(cpu[("baseline", variant)], bare)] if args.baseline else []
        cells += [_cpu_cells(cpu[("service", variant)], bare), f"{statistics.median(bare) * 1000:.2f}"]
        rows.append(f"| {variant} | {' | '.join(cells)} | {p50:.1f} | {p99:.1f} |")
    before_head = "baseline CPU ms/call | baseline ratio | baseline ratio of minima | " if args.baseline else ""
    lines = [
        f"## CDS patient-view: service CPU per call vs a bare FastAPI app ({args.rounds} interleaved rounds of "
        f"{args.calls} calls per body and side, sequential client, one worker, dev mode)",
        "",
        "CPU ms/call: the median over rounds; ratio: the median over rounds of the round's service / bare (both "
        "measured within the same minute); ratio of minima: each side's least disturbed round.",
        "",
        f"| body (54 Observations) | {before_head}service CPU ms/call | ratio | ratio of minima "
        "| bare FastAPI CPU ms/call | service p50 ms | service p99 ms |",
        "|---|---|---|---|---|---|---|" + ("---|---|---|" if args.baseline else ""),
        *rows,
        "",
        f"Measured {datetime.now(UTC).date().isoformat()} on {machine()}.",
        f"Command: `python bench/cds_per_call.py --calls {args.calls} --rounds {args.rounds} --profile {args.profile}"
        + (" --baseline DIR`" if args.baseline else "`"),
        "",
    ]
    if args.profile:
        lines += [
            f"In-process profile of the handler ({args.profile} calls per body, cProfile own time by module; "
            "cProfile inflates Python-heavy code, read shares, not absolute figures):",
            "",
            "| body | module | own ms/call | share |",
            "|---|---|---|---|",
        ]
        profiles = {variant: profile(variant, args.profile) for variant in VARIANTS}
        for by_module, _ in profiles.values():
            lines += by_module
        lines += [
            "",
            "The same profile by part of the call (cumulative time; the parts do not overlap):",
            "",
            "| body | part of the call | cumulative ms/call | share |",
            "|---|---|---|---|",
        ]
        for _, by_part in profiles.values():
            lines += by_part
        lines.append("")
    print("\n".join(lines))
    return 0


def orjson_dumps(value: Any) -> bytes:
    import orjson

    return orjson.dumps(value)


def _cpu_cells(side: list[float], bare: list[float]) -> str:
    """Median CPU ms/call, the median of the per-round ratios to the bare app, and the ratio of the minima."""
    paired = statistics.median(s / max(b, 1e-9) for s, b in zip(side, bare, strict=True))
    return f"{statistics.median(side) * 1000:.2f} | {paired:.1f} | {min(side) / max(min(bare), 1e-9):.1f}"


def _serve(port: int) -> list[str]:
    command = [sys.executable, "-m", "rls_screen.cli", "serve", "--port", str(port), "--workers", "1"]
    return command + (["--no-access-log"] if "--no-access-log" in _serve_help() else [])


@functools.cache
def _serve_help() -> str:
    return subprocess.run(
        [sys.executable, "-m", "rls_screen.cli", "serve", "--help"], capture_output=True, text=True, check=False
    ).stdout


if __name__ == "__main__":
    sys.exit(main())
