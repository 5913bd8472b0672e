"""CDS Hooks patient-view: latency at a fixed request rate, maximum sustained throughput, and the
no-prefetch path against the same FHIR queries sent directly.

    python bench/cds_bench.py [--workers 1,2] [--rate 100] [--duration 30] [--steps 100,150,...]
                              [--no-prefetch-rounds 40] [--quick] > fragment.md

The service runs as in production: ``python -m rls_screen.cli serve --workers N`` (uvicorn, ES384
JWT verified on every call, the SQLite state file for feedback and the shared jti replay cache).

Load: vegeta (a Go load generator; ``bench/tools/install-vegeta.sh`` installs the pinned version
into .tools/bin) in open-loop mode: requests start at the given rate whether or not earlier ones
have answered, so a slow service shows as latency, not as a politely lower rate (closed-loop
clients hide queueing). Every request carries its own freshly signed JWT (own ``jti``: the service
refuses replays), signed before the attack and fed to vegeta as a targets file; any 401 would mean
a token was used twice and is reported as an error.

1. Full prefetch (Patient, RLS Condition, 60 Observations): p50/p90/p99/max at ``--rate`` for
   ``--duration`` seconds, per worker count; then rising rates for ``--step-duration`` seconds each
   until the service no longer keeps up. "Sustained" = every answer 200 with its cards, achieved
   throughput >= 97 % of the offered rate, and p99 under 100 ms.
2. No prefetch (the service reads from the local HAPI server): the FHIR requests one call makes are
   recorded once through a proxy (tests/support/fault_proxy.py); then, interleaved call by call, the
   CDS call and the identical requests sent directly with ``requests`` (the same client library,
   keep-alive). Ratio = median CDS call / median direct queries. Skipped when no FHIR server answers.

Client and service share the machine's 2 cores: throughput is a lower bound for a server of its own.
Traffic goes to loopback only, bounded in count and time. Output: a markdown fragment on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.support.fault_proxy import FaultProxy  # noqa: E402  (the repo root is on the path only now)
from tests.support.fhir_data import put_all  # noqa: E402

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
EXPECTED_CARDS = 1  # one card (the default card mode) naming both findings
SUSTAINED_P99_MS = 100.0
SUSTAINED_SHARE = 0.97


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
            "procedures": searchset([]),  # required since the dialysis rule reads Procedures
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


@dataclass
class Service:
    base: str
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


@contextmanager
def cds_service(
    workers: int, fhir_url: str, public_key_jwk: dict[str, Any], extra_allowed: str = ""
) -> Iterator[Service]:
    """``rls-screen serve --workers N`` in a child process; its log goes to a file (a pipe could fill)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        issuers = Path(tmp) / "issuers.json"
        issuers.write_text(json.dumps({ISSUER: {"jwks": {"keys": [public_key_jwk]}}}), encoding="utf-8")
        env = {
            **os.environ,
            "FHIR_BASE_URL": fhir_url,
            "RLS_SCREEN_FHIR_ALLOWLIST": extra_allowed,
            "RLS_SCREEN_PUBLIC_URL": base,
            "RLS_SCREEN_CDS_TRUSTED_ISSUERS_FILE": str(issuers),
            "RLS_SCREEN_CDS_SUBJECT_SALT": "bench",
            "RLS_SCREEN_CDS_DEADLINE_MS": "10000",
            "RLS_SCREEN_STATE_DIR": tmp,
        }
        log = Path(tmp) / "service.log"
        command = [sys.executable, "-m", "rls_screen.cli", "serve", "--port", str(port), "--workers", str(workers)]
        command += ["--no-access-log", "--log-level", "warning"]
        with log.open("w", encoding="utf-8") as log_file:
            process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=log_file)
            try:
                deadline = time.monotonic() + 90
                while not _healthy(base) or len(_children(process.pid)) < (workers if workers > 1 else 0):
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"the CDS service did not start: {log.read_text()[-2000:]}")
                    time.sleep(0.2)
                yield Service(base, log)
            finally:
                process.terminate()
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()


def _healthy(base: str) -> bool:
    try:
        return requests.get(f"{base}/health", timeout=1).status_code == 200
    except requests.RequestException:
        return False


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


def sign(private_key: Any, audience: str) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": audience, "exp": now + 600, "iat": now, "jti": str(uuid.uuid4())}
    return jwt.encode(claims, private_key, algorithm="ES384", headers={"kid": KID, "typ": "JWT"})


def call(base: str, private_key: Any, body: dict[str, Any], session: requests.Session) -> requests.Response:
    token = sign(private_key, base + SERVICE)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    return session.post(base + SERVICE, data=json.dumps(body), headers=headers, timeout=30)


# --- load with vegeta ------------------------------------------------------------------------------


def vegeta_binary() -> str:
    result = subprocess.run(
        [str(REPO / "bench" / "tools" / "install-vegeta.sh")], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"vegeta is not available: {result.stderr.strip()[-500:]}")
    return result.stdout.strip().splitlines()[-1]


@dataclass(frozen=True)
class Attack:
    workers: int
    rate: int
    seconds: int
    requests: int
    ok: int
    status_codes: dict[str, int]
    throughput: float
    p50: float
    p90: float
    p99: float
    max: float

    @property
    def sustained(self) -> bool:
        return (
            self.ok == self.requests and self.throughput >= SUSTAINED_SHARE * self.rate and self.p99 < SUSTAINED_P99_MS
        )


def attack(
    vegeta: str, service: Service, private_key: Any, body_file: Path, workers: int, rate: int, seconds: int
) -> Attack:
    """One open-loop run at ``rate`` req/s; one fresh token per request, none reused."""
    count = rate * seconds + rate  # a second's worth spare: vegeta cycles through targets, never reuse one
    with tempfile.TemporaryDirectory() as tmp:
        targets = Path(tmp) / "targets.txt"
        url = service.base + SERVICE
        audience = service.base + SERVICE
        with targets.open("w", encoding="utf-8") as out:
            for _ in range(count):
                out.write(
                    f"POST {url}\nAuthorization: Bearer {sign(private_key, audience)}\n"
                    f"Content-Type: application/json\n@{body_file}\n\n"
                )
        results = Path(tmp) / "results.bin"
        with results.open("wb") as out:
            subprocess.run(
                [
                    vegeta,
                    "attack",
                    "-targets",
                    str(targets),
                    "-rate",
                    f"{rate}/1s",
                    "-duration",
                    f"{seconds}s",
                    "-timeout",
                    "10s",
                    "-max-workers",
                    "400",
                ],
                stdout=out,
                check=True,
                timeout=seconds + 120,
            )
        report = json.loads(
            subprocess.run(
                [vegeta, "report", "-type", "json", str(results)], capture_output=True, text=True, check=True
            ).stdout
        )
    latencies = report["latencies"]
    codes = {str(k): int(v) for k, v in (report.get("status_codes") or {}).items()}
    return Attack(
        workers=workers,
        rate=rate,
        seconds=seconds,
        requests=int(report["requests"]),
        ok=codes.get("200", 0),
        status_codes=codes,
        throughput=float(report["throughput"]),
        p50=latencies["50th"] / 1e6,
        p90=latencies["90th"] / 1e6,
        p99=latencies["99th"] / 1e6,
        max=latencies["max"] / 1e6,
    )


def full_prefetch(
    vegeta: str, workers: int, private_key: Any, public_jwk: dict[str, Any], args: argparse.Namespace
) -> tuple[Attack, list[Attack]]:
    patient_id = f"cdsbench-{uuid.uuid4().hex[:8]}"
    resources = patient_resources(patient_id)
    with tempfile.TemporaryDirectory() as tmp, cds_service(workers, args.fhir_url, public_jwk) as service:
        body_file = Path(tmp) / "body.json"
        body = request_body(patient_id, resources, None)
        body_file.write_text(json.dumps(body), encoding="utf-8")
        answer = call(service.base, private_key, body, requests.Session())
        cards = answer.json().get("cards", []) if answer.status_code == 200 else None
        if cards is None or len(cards) != EXPECTED_CARDS:
            raise RuntimeError(f"the service did not answer as expected: {answer.status_code} {answer.text[:300]}")
        attack(vegeta, service, private_key, body_file, workers, 20, 3)  # warm-up: imports, caches, connections
        at_target = attack(vegeta, service, private_key, body_file, workers, args.rate, args.duration)
        steps = []
        for rate in args.steps:
            result = attack(vegeta, service, private_key, body_file, workers, rate, args.step_duration)
            steps.append(result)
            if not result.sustained:
                break
        return at_target, steps


# --- no prefetch: the CDS call vs the same FHIR queries sent directly -------------------------------


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    body: bytes | None


def no_prefetch(private_key: Any, public_jwk: dict[str, Any], fhir_url: str, rounds: int) -> dict[str, Any]:
    patient_id = f"cdsbench-np-{uuid.uuid4().hex[:8]}"
    put_all(fhir_url, patient_resources(patient_id))
    session = requests.Session()
    with (
        FaultProxy(fhir_url, record_bodies=True) as proxy,
        cds_service(1, fhir_url, public_jwk, extra_allowed=proxy.base_url) as service,
    ):
        answer = call(service.base, private_key, request_body(patient_id, None, proxy.base_url), session)
        if answer.status_code != 200 or len(answer.json()["cards"]) != EXPECTED_CARDS:
            raise RuntimeError(f"no-prefetch call failed: {answer.status_code} {answer.text[:300]}")
        recorded = [Recorded(e.method, e.target.removeprefix("/fhir"), e.body) for e in proxy.forwarded()]
        cds_ms, direct_ms = [], []
        fhir = requests.Session()
        for n in range(rounds + 2):  # two warm-up rounds
            order = ("cds", "direct") if n % 2 == 0 else ("direct", "cds")
            for side in order:
                started = time.perf_counter()
                if side == "cds":
                    response = call(service.base, private_key, request_body(patient_id, None, fhir_url), session)
                    ok = response.status_code == 200 and len(response.json()["cards"]) == EXPECTED_CARDS
                else:
                    ok = all(_send(fhir, fhir_url, r) for r in recorded)
                elapsed = (time.perf_counter() - started) * 1000
                if not ok:
                    raise RuntimeError(f"{side} round {n} failed")
                if n >= 2:
                    (cds_ms if side == "cds" else direct_ms).append(elapsed)
        log = service.log_text()
    counts = sorted({int(part.split("=")[1]) for part in log.split() if part.startswith("fhir_requests=")})
    return {
        "requests": [f"{r.method} {r.path.split('?')[0] or '/'}" for r in recorded],
        "fhir_requests_logged": counts,
        "cds_ms": cds_ms,
        "direct_ms": direct_ms,
    }


def _send(session: requests.Session, fhir_url: str, recorded: Recorded) -> bool:
    headers = {"Accept": "application/fhir+json", "Authorization": "Bearer bench-token"}
    if recorded.body:
        headers["Content-Type"] = "application/fhir+json"
    response = session.request(
        recorded.method, fhir_url + recorded.path, data=recorded.body or None, headers=headers, timeout=60
    )
    response.json()  # the module parses every answer; so does the direct side
    return response.status_code == 200


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# --- report ---------------------------------------------------------------------------------------


def attack_row(a: Attack, label: str) -> str:
    others = ", ".join(f"{k}: {v}" for k, v in sorted(a.status_codes.items()) if k != "200") or "none"
    return (
        f"| {label} | {a.workers} | {a.rate} | {a.seconds} | {a.requests} | {others} | {a.throughput:.0f} | "
        f"{a.p50:.1f} | {a.p90:.1f} | {a.p99:.1f} | {a.max:.1f} | {'yes' if a.sustained else 'no'} |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--fhir-url", default=os.environ.get("FHIR_BASE_URL", "http://127.0.0.1:8080/fhir"))
    parser.add_argument("--workers", default="1,2", help="comma-separated uvicorn worker counts")
    parser.add_argument("--rate", type=int, default=100, help="requests per second for the latency target")
    parser.add_argument("--duration", type=int, default=30, help="seconds at --rate")
    parser.add_argument("--steps", default="100,150,200,250,300,400", help="rising rates for the maximum")
    parser.add_argument("--step-duration", type=int, default=10)
    parser.add_argument("--no-prefetch-rounds", type=int, default=40)
    parser.add_argument("--quick", action="store_true", help="a smoke run: short attacks, few rounds")
    args = parser.parse_args()
    args.steps = [int(x) for x in args.steps.split(",") if x.strip()]
    if args.quick:
        args.duration, args.step_duration, args.steps, args.no_prefetch_rounds = 5, 3, args.steps[:2], 6
    worker_counts = [int(x) for x in args.workers.split(",") if x.strip()]

    vegeta = vegeta_binary()
    private_key = ec.generate_private_key(ec.SECP384R1())
    public_jwk = {**json.loads(jwt.get_algorithm_by_name("ES384").to_jwk(private_key.public_key())), "kid": KID}

    out = [
        "### CDS Hooks patient-view under load (`bench/cds_bench.py`)",
        "",
        f"Measured {datetime.now(UTC).date().isoformat()} on {machine()}. Service: `rls-screen serve --workers N` "
        "(uvicorn, ES384 JWT verified per call, jti replay cache shared by the workers in SQLite). Load: vegeta, "
        f"open loop, one fresh JWT per request, on the same cores. Each answer carries {EXPECTED_CARDS} cards. "
        f"Sustained = all 200, throughput >= {SUSTAINED_SHARE:.0%} of the offered rate, "
        f"p99 < {SUSTAINED_P99_MS:.0f} ms.",
        "",
        "| run | workers | offered req/s | seconds | requests | non-200 | achieved req/s | p50 ms | p90 ms | p99 ms "
        "| max ms | sustained |",
        "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    best: dict[int, Attack | None] = {}
    for workers in worker_counts:
        at_target, steps = full_prefetch(vegeta, workers, private_key, public_jwk, args)
        out.append(attack_row(at_target, f"target rate, {args.duration} s"))
        out += [attack_row(step, "rising rate") for step in steps]
        best[workers] = max((s for s in steps if s.sustained), key=lambda s: s.rate, default=None)
    out.append("")
    for workers, top in best.items():
        text = f"{top.rate} req/s (p99 {top.p99:.1f} ms)" if top else f"below {args.steps[0]} req/s"
        out.append(f"- Maximum sustained throughput, {workers} worker(s): {text}.")
    out.append("")

    if fhir_answers(args.fhir_url):
        result = no_prefetch(private_key, public_jwk, args.fhir_url, args.no_prefetch_rounds)
        cds, direct = result["cds_ms"], result["direct_ms"]
        ratio = statistics.median(cds) / statistics.median(direct)
        out += [
            "**No prefetch**: the service reads from the local HAPI server. FHIR requests per call: "
            f"{len(result['requests'])} ({'; '.join(result['requests'])}; the service's log says "
            f"fhir_requests={result['fhir_requests_logged']}).",
            "",
            "| side | calls | p50 ms | p90 ms |",
            "|---|---:|---:|---:|",
            f"| CDS call (JWT, reads, engine, cards) | {len(cds)} | {statistics.median(cds):.1f} | "
            f"{quantile(cds, 0.9):.1f} |",
            f"| the same FHIR requests sent directly | {len(direct)} | {statistics.median(direct):.1f} | "
            f"{quantile(direct, 0.9):.1f} |",
            "",
            f"Ratio CDS call / direct queries (medians, interleaved call by call): **{ratio:.2f}**.",
            "",
        ]
    else:
        out += [f"_No-prefetch comparison skipped: no FHIR server answers at {args.fhir_url}._", ""]
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
