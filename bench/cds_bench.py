"""CDS Hooks patient-view latency (p50/p99) and throughput at several concurrencies.

    python bench/cds_bench.py [--levels 1,4,16] [--requests 400] [--quick] > fragment.md

Two scenarios against the real service (uvicorn in a child process, JWT verification on):
- full prefetch: Patient, an active RLS Condition and ~60 lab Observations in the request;
- fallback: no prefetch; the service reads Patient, Conditions, Observations and
  MedicationRequests from the local HAPI server (FHIR_BASE_URL) with the request's fhirServer.
The fallback scenario is skipped (and says so) when no FHIR server answers.

Load generator: a threaded Python client (requests, one keep-alive session per thread). wrk is not
used even where installed: every CDS call needs a freshly signed ES384 JWT with its own jti (the
service keeps a replay cache), which wrk's Lua cannot mint; tokens are signed before each timed run.
Client and server share the machine's cores, so throughput is a lower bound. Output: a markdown
fragment on stdout for docs/benchmarks.md. Traffic goes to loopback only, bounded in count and time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import requests
from cryptography.hazmat.primitives.asymmetric import ec

from run import machine  # one description of the machine for every benchmark

ISSUER = "https://bench-ehr.example.test"
KID = "bench-es384"
SERVICE = "/cds-services/rls-secondary-causes"
LOINC = "http://loinc.org"
# Six analytes x ten draw dates = 60 Observations; the latest values make two findings.
SERIES = (
    ("2276-4", "ug/L", 28.0),  # ferritin: iron below the RLS target
    ("2502-3", "%", 24.0),  # TSAT
    ("718-7", "g/L", 112.0),  # haemoglobin: mild anaemia (female)
    ("62238-1", "mL/min/{1.73_m2}", 72.0),  # eGFR
    ("2823-3", "mmol/L", 4.1),  # potassium
    ("2601-3", "mmol/L", 0.82),  # magnesium
)
DRAWS = 10
MAX_SECONDS_PER_RUN = 120.0
WRK_NOTE = {True: "wrk is installed but", False: "wrk is not installed, and"}


# --- data -----------------------------------------------------------------------------------------


def patient_resources(patient_id: str) -> list[dict[str, Any]]:
    today = datetime.now(UTC).date()
    resources: list[dict[str, Any]] = [
        {"resourceType": "Patient", "id": patient_id, "gender": "female", "birthDate": "1968-04-12"},
        {
            "resourceType": "Condition",
            "id": f"{patient_id}-rls",
            "clinicalStatus": {
                "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]
            },
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "32914008"}]},
            "subject": {"reference": f"Patient/{patient_id}"},
        },
    ]
    n = 0
    for draw in range(DRAWS):
        day = (today - timedelta(days=20 + 30 * draw)).isoformat()
        for loinc, unit, latest in SERIES:
            n += 1
            resources.append(
                {
                    "resourceType": "Observation",
                    "id": f"{patient_id}-o{n}",
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
    return resources


def searchset(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in resources]}


def request_body(patient_id: str, resources: list[dict[str, Any]] | None, fhir_url: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/bench", "patientId": patient_id},
    }
    if resources is not None:
        by_type: dict[str, list[dict[str, Any]]] = {}
        for resource in resources:
            by_type.setdefault(resource["resourceType"], []).append(resource)
        body["prefetch"] = {
            "patient": by_type["Patient"][0],
            "conditions": searchset(by_type["Condition"]),
            "observations": searchset(by_type["Observation"]),
            "medications": searchset([]),
        }
    if fhir_url is not None:
        body["fhirServer"] = fhir_url
        body["fhirAuthorization"] = {
            "access_token": "bench-token",
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "patient/*.read",
            "subject": "rls-screen",
        }
    return body


def load_into_fhir(fhir_url: str, resources: list[dict[str, Any]]) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in resources
        ],
    }
    response = requests.post(fhir_url, json=bundle, headers={"Content-Type": "application/fhir+json"}, timeout=120)
    response.raise_for_status()


def fhir_answers(fhir_url: str) -> bool:
    try:
        return requests.get(f"{fhir_url}/metadata", timeout=(2, 20)).status_code == 200
    except requests.RequestException:
        return False


# --- the service under test ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def cds_service(fhir_url: str, public_key_jwk: dict[str, Any]) -> Iterator[str]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        issuers = Path(tmp) / "issuers.json"
        issuers.write_text(json.dumps({ISSUER: {"jwks": {"keys": [public_key_jwk]}}}), encoding="utf-8")
        env = {
            **os.environ,
            "FHIR_BASE_URL": fhir_url,
            "RLS_SCREEN_PUBLIC_URL": base,
            "RLS_SCREEN_CDS_TRUSTED_ISSUERS_FILE": str(issuers),
            "RLS_SCREEN_CDS_FEEDBACK_DB": str(Path(tmp) / "cds.sqlite3"),
            "RLS_SCREEN_CDS_SUBJECT_SALT": "bench",
            "RLS_SCREEN_CDS_DEADLINE_MS": "10000",
            "RLS_SCREEN_STATE_DIR": tmp,
        }
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "rls_screen.cds.app:create_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ]
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if requests.get(f"{base}/health", timeout=1).status_code == 200:
                        break
                except requests.RequestException:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"the CDS service did not start: {process.stderr.read() if process.stderr else ''}"
                    )
                time.sleep(0.1)
            yield base
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


# --- load ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunResult:
    concurrency: int
    requests: int
    errors: int
    wall_s: float
    latencies_ms: list[float]

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies_ms)

    @property
    def p99(self) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]

    @property
    def throughput(self) -> float:
        return len(self.latencies_ms) / self.wall_s


def sign(private_key: Any, audience: str) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": audience, "exp": now + 600, "iat": now, "jti": str(uuid.uuid4())}
    return jwt.encode(claims, private_key, algorithm="ES384", headers={"kid": KID, "typ": "JWT"})


def run_level(base: str, private_key: Any, bodies: list[bytes], concurrency: int, expect_cards: int) -> RunResult:
    tokens = [sign(private_key, base + SERVICE) for _ in bodies]
    work = list(zip(tokens, bodies, strict=True))
    lock = threading.Lock()
    latencies: list[float] = []
    errors = 0
    position = 0
    stop_at = time.monotonic() + MAX_SECONDS_PER_RUN

    def worker() -> None:
        nonlocal errors, position
        session = requests.Session()
        while time.monotonic() < stop_at:
            with lock:
                if position >= len(work):
                    return
                token, body = work[position]
                position += 1
            started = time.perf_counter()
            try:
                response = session.post(
                    base + SERVICE,
                    data=body,
                    headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
                    timeout=30,
                )
                ok = response.status_code == 200 and len(response.json()["cards"]) == expect_cards
            except requests.RequestException:
                ok = False
            elapsed = (time.perf_counter() - started) * 1000
            with lock:
                if ok:
                    latencies.append(elapsed)
                else:
                    errors += 1

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    return RunResult(concurrency, len(latencies) + errors, errors, wall, latencies)


def scenario(
    base: str, private_key: Any, make_body: Any, levels: list[int], per_level: int, expect_cards: int
) -> list[RunResult]:
    warmup = [json.dumps(make_body()).encode() for _ in range(20)]
    run_level(base, private_key, warmup, 2, expect_cards)
    results = []
    for level in levels:
        bodies = [json.dumps(make_body()).encode() for _ in range(per_level)]
        results.append(run_level(base, private_key, bodies, level, expect_cards))
    return results


def table(title: str, results: list[RunResult]) -> list[str]:
    lines = [
        f"**{title}**",
        "",
        "| concurrency | requests | errors | p50 ms | p99 ms | throughput (req/s) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.concurrency} | {r.requests} | {r.errors} | {r.p50:.1f} | {r.p99:.1f} | {r.throughput:.0f} |"
            if r.latencies_ms
            else f"| {r.concurrency} | {r.requests} | {r.errors} | - | - | - |"
        )
    return [*lines, ""]


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--fhir-url", default=os.environ.get("FHIR_BASE_URL", "http://127.0.0.1:8080/fhir"))
    parser.add_argument("--levels", default="1,4,16", help="comma-separated concurrencies")
    parser.add_argument("--requests", type=int, default=400, help="requests per level, full prefetch")
    parser.add_argument("--fallback-requests", type=int, default=150, help="requests per level, fallback")
    parser.add_argument("--quick", action="store_true", help="a smoke run: few requests")
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",") if x.strip()]
    per_level = 40 if args.quick else args.requests
    per_level_fallback = 20 if args.quick else args.fallback_requests

    private_key = ec.generate_private_key(ec.SECP384R1())
    public_jwk = {**json.loads(jwt.get_algorithm_by_name("ES384").to_jwk(private_key.public_key())), "kid": KID}
    patient_id = f"cdsbench-{uuid.uuid4().hex[:8]}"
    resources = patient_resources(patient_id)
    fhir_ok = fhir_answers(args.fhir_url)
    if fhir_ok:
        load_into_fhir(args.fhir_url, resources)

    out = [
        "### CDS Hooks service: patient-view latency and throughput",
        "",
        f"Measured {datetime.now(UTC).date().isoformat()} by `bench/cds_bench.py` on {machine()}; "
        "one uvicorn worker, JWT (ES384) verified on every call, feedback database on; load from a "
        f"threaded Python client on the same machine ({WRK_NOTE[bool(shutil.which('wrk'))]} "
        "cannot sign a fresh JWT per request). Each call returns 2 cards (iron below the RLS target, anaemia).",
        "",
    ]
    with cds_service(args.fhir_url, public_jwk) as base:
        prefetch_results = scenario(
            base, private_key, lambda: request_body(patient_id, resources, None), levels, per_level, 2
        )
        out += table(
            f"Full prefetch (Patient, Condition, {len(resources) - 2} Observations in the request)", prefetch_results
        )
        if fhir_ok:
            fallback_results = scenario(
                base, private_key, lambda: request_body(patient_id, None, args.fhir_url), levels, per_level_fallback, 2
            )
            out += table(
                "Fallback to the local HAPI server (no prefetch: 1 read + 3 searches per call)", fallback_results
            )
        else:
            out += [f"_Fallback scenario skipped: no FHIR server answers at {args.fhir_url}._", ""]
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
