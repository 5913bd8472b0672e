"""CDS Hooks patient-view through HAProxy in front of two ``rls-screen serve`` replicas on one shared state store,
side by side with one replica alone, at the same open-loop rate.

    python bench/replicas_bench.py [--rate 200] [--duration 30] [--rounds 1] [--postgres URL] [--quick] > fragment.md

Each replica is ``python -m rls_screen.cli serve`` (one worker; ES384 JWT verified per call; the jti replay
cache and the feedback store shared). The state store: with ``--postgres SERVER_URL`` (``make db-up`` prints
it) a fresh schema per arm on that PostgreSQL (``RLS_SCREEN_STATE_URL``, migrated by ``rls-screen state
migrate`` first, dropped afterwards), else one SQLite file all processes open (one host, WAL).
The balancer is HAProxy from deploy/lb-up.sh (round robin, health check GET /ready, retries on connection
failure only). Load, tokens, body and percentiles are bench/cds_bench.py's (vegeta, one fresh JWT per
request, ``aud`` = the balancer's URL). Three arms run in turn, the order reversed every round, so machine
noise falls on all: the pair; one replica with one worker; one replica with ``--workers 2`` (the pair's
process count: this isolates the balancer's hop). Client, balancer and replicas share the machine's
cores. Output: a markdown fragment on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
import requests
from cryptography.hazmat.primitives.asymmetric import ec

from cds_bench import (
    EXPECTED_CARDS,
    ISSUER,
    KID,
    Attack,
    Service,
    attack,
    call,
    patient_resources,
    request_body,
    vegeta_binary,
)
from run import machine

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.replicas.cluster import Balancer, Replica, free_port  # noqa: E402  (the repo root is on the path now)
from tests.support.postgres import schema_url  # noqa: E402


@contextmanager
def state_url_on(postgres: str | None) -> Iterator[str | None]:
    """A fresh PostgreSQL schema's state URL, migrated; dropped afterwards. None: the SQLite state file."""
    if postgres is None:
        yield None
        return
    import psycopg

    schema = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres, autocommit=True) as connection:
        connection.execute(f'CREATE SCHEMA "{schema}"')
    try:
        url = schema_url(postgres, schema)
        subprocess.run(
            [sys.executable, "-m", "rls_screen.cli", "state", "migrate"],
            env={**os.environ, "RLS_SCREEN_STATE_URL": url},
            check=True,
            capture_output=True,
            timeout=120,
        )
        yield url
    finally:
        with psycopg.connect(postgres, autocommit=True) as connection:
            connection.execute(f'DROP SCHEMA "{schema}" CASCADE')


@contextmanager
def replicas(
    count: int, public_jwk: dict[str, Any], state_url: str | None, behind_lb: bool, workers: int = 1
) -> Iterator[Service]:
    """``count`` replicas on one state store; with ``behind_lb``, HAProxy in front (its URL is the public one)."""
    with tempfile.TemporaryDirectory() as tmp:
        issuers = Path(tmp) / "issuers.json"
        issuers.write_text(json.dumps({ISSUER: {"jwks": {"keys": [public_jwk]}}}), encoding="utf-8")
        ports = [free_port() for _ in range(count)]
        balancer = Balancer(free_port(), ports, Path(tmp) / "lb") if behind_lb else None
        public = balancer.url if balancer else f"http://127.0.0.1:{ports[0]}"
        env = {
            "RLS_SCREEN_PUBLIC_URL": public,
            "RLS_SCREEN_CDS_TRUSTED_ISSUERS_FILE": str(issuers),
            "RLS_SCREEN_CDS_SUBJECT_SALT": "bench",
            "RLS_SCREEN_CDS_DEADLINE_MS": "10000",
            "RLS_SCREEN_STATE_DIR": str(Path(tmp) / "state"),
            **({"RLS_SCREEN_STATE_URL": state_url} if state_url else {}),
        }
        flags = ["--log-level", "warning", "--workers", str(workers)]
        started = [Replica(port, env, Path(tmp) / f"replica-{port}.log", flags) for port in ports]
        try:
            for replica in started:
                replica.start()
            for replica in started:
                replica.wait_ready()
            if balancer:
                balancer.start().wait_all_up()
            yield Service(public, started[0].log_path)
        finally:
            if balancer:
                balancer.stop()
            for replica in started:
                replica.stop()


ARMS = {
    "pair": "two replicas (1 worker each) behind HAProxy",
    "single": "one replica (1 worker), direct",
    "workers2": "one replica with --workers 2, direct",
}


def measure(vegeta: str, private_key: Any, public_jwk: dict[str, Any], args: argparse.Namespace, arm: str) -> Attack:
    patient_id = f"replbench-{uuid.uuid4().hex[:8]}"
    processes = 1 if arm == "single" else 2
    with (
        tempfile.TemporaryDirectory() as tmp,
        state_url_on(args.postgres) as state_url,
        replicas(
            2 if arm == "pair" else 1,
            public_jwk,
            state_url,
            behind_lb=arm == "pair",
            workers=2 if arm == "workers2" else 1,
        ) as service,
    ):
        body = request_body(patient_id, patient_resources(patient_id), None)
        body_file = Path(tmp) / "body.json"
        body_file.write_text(json.dumps(body), encoding="utf-8")
        answer = call(service.base, private_key, body, requests.Session())
        if answer.status_code != 200 or len(answer.json()["cards"]) != EXPECTED_CARDS:
            raise RuntimeError(f"the service did not answer as expected: {answer.status_code} {answer.text[:300]}")
        attack(vegeta, service, private_key, body_file, processes, 20, 3)  # warm-up: imports, caches, connections
        return attack(vegeta, service, private_key, body_file, processes, args.rate, args.duration)


def row(label: str, a: Attack) -> str:
    others = ", ".join(f"{k}: {v}" for k, v in sorted(a.status_codes.items()) if k != "200") or "none"
    return (
        f"| {label} | {a.rate} | {a.seconds} | {a.requests} | {a.ok} | {others} | {a.throughput:.0f} | "
        f"{a.p50:.1f} | {a.p90:.1f} | {a.p99:.1f} | {a.max:.1f} |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rate", type=int, default=200, help="requests per second offered")
    parser.add_argument("--duration", type=int, default=30, help="seconds per run")
    parser.add_argument("--rounds", type=int, default=1, help="pair/single rounds, alternated")
    parser.add_argument("--postgres", default=None, help="a PostgreSQL server URL for the state (else SQLite)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 5 s, one round")
    args = parser.parse_args()
    if args.quick:
        args.duration, args.rounds = 5, 1

    vegeta = vegeta_binary()
    private_key = ec.generate_private_key(ec.SECP384R1())
    public_jwk = {**json.loads(jwt.get_algorithm_by_name("ES384").to_jwk(private_key.public_key())), "kid": KID}
    results: dict[str, list[Attack]] = {arm: [] for arm in ARMS}
    for n in range(args.rounds):
        order = list(ARMS) if n % 2 == 0 else list(reversed(ARMS))
        for arm in order:
            results[arm].append(measure(vegeta, private_key, public_jwk, args, arm))

    store = "PostgreSQL (a fresh schema per arm)" if args.postgres else "one SQLite file shared by both (WAL)"
    out = [
        "| run | offered req/s | seconds | requests | 200 | non-200 | achieved req/s | p50 ms | p90 ms "
        "| p99 ms | max ms |",
        "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for n in range(args.rounds):
        out += [row(f"{label}, round {n + 1}", results[arm][n]) for arm, label in ARMS.items()]

    def ratio(arm: str, other: str, field: str) -> float:
        return statistics.median(getattr(a, field) for a in results[arm]) / statistics.median(
            getattr(a, field) for a in results[other]
        )

    ratios = [
        f"pair / one replica with 2 workers: p50 **{ratio('pair', 'workers2', 'p50'):.2f}**, "
        f"p99 **{ratio('pair', 'workers2', 'p99'):.2f}**",
        f"pair / one replica with 1 worker: p50 **{ratio('pair', 'single', 'p50'):.2f}**, "
        f"p99 **{ratio('pair', 'single', 'p99'):.2f}**",
    ]
    print(
        "\n".join(
            [
                f"Measured {datetime.now(UTC).date().isoformat()} on {machine()}. State store: {store}. "
                f"Each answer carries {EXPECTED_CARDS} card (checked before the load); "
                "every request has its own ES384 JWT.",
                "",
                *out,
                "",
                f"Ratios (medians over rounds): {'; '.join(ratios)}.",
                "",
            ]
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
