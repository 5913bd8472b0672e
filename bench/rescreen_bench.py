"""Result-to-Flag latency of the event-driven re-screen (issue 16): p50/p95 over N new results.

    python bench/rescreen_bench.py [--patients 100] [--rate 2] [--debounce 2] [--workers 2]

What it does, against the FHIR server at FHIR_BASE_URL (default the local HAPI; rest-hook Subscriptions on):
1. starts ``rls-screen serve`` with the re-screen on (its own port and state dir) and registers the
   Subscriptions with ``rls-screen subscribe --filter subject=<the bench's patients>`` (other writes on a
   shared server do not notify it);
2. loads N iron-deficient patients (ferritin 9): the service screens each on that first notification,
   giving each an active iron-deficiency Flag (warm-up; not measured);
3. writes one new ferritin of 120 per patient, ``--rate`` per second, and waits until every Flag is inactive;
4. latency per patient = the Flag's ``meta.lastUpdated`` minus the new Observation's ``meta.lastUpdated``
   (both the server's clock, so polling adds nothing): write -> HAPI matches -> notification -> debounce
   -> queue -> read, evaluate, write back. Prints p50, p95 and max, and the debounce they include.
The Subscriptions are deleted at the end. Ids are prefixed ``rb<time>`` (test data).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import requests

SECRET = "rescreen-bench-secret-0123456789abcdef"
LOINC, UCUM = "http://loinc.org", "http://unitsofmeasure.org"


def ferritin(patient: str, n: int, value: float, day: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": f"{patient}-f{n}",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "2276-4"}]},
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": day,
        "valueQuantity": {"value": value, "unit": "ug/L", "system": UCUM, "code": "ug/L"},
    }


def put(base: str, resources: list[dict[str, Any]]) -> None:
    entries = [
        {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in resources
    ]
    response = requests.post(
        base,
        json={"resourceType": "Bundle", "type": "transaction", "entry": entries},
        headers={"Content-Type": "application/fhir+json"},
        timeout=120,
    )
    response.raise_for_status()


def flags(base: str, patient: str) -> list[dict[str, Any]]:
    response = requests.get(
        f"{base}/Flag", params={"subject": f"Patient/{patient}"}, headers={"Cache-Control": "no-cache"}, timeout=30
    )
    response.raise_for_status()
    return [e["resource"] for e in response.json().get("entry", [])]


def iron_flag(base: str, patient: str) -> dict[str, Any] | None:
    return next((f for f in flags(base, patient) if f["identifier"][0]["value"].endswith(".iron-deficiency")), None)


def stamp(resource: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(resource["meta"]["lastUpdated"].replace("Z", "+00:00"))


def wait_until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"rescreen_bench: not within {timeout:g} s: {what}")
        time.sleep(1.0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--patients", type=int, default=100)
    parser.add_argument("--rate", type=float, default=2.0, help="new results per second")
    parser.add_argument("--debounce", type=float, default=2.0)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    base = os.environ.get("FHIR_BASE_URL", "http://127.0.0.1:8080/fhir").rstrip("/")
    prefix = f"rb{int(time.time())}"
    patients = [f"{prefix}-{n}" for n in range(args.patients)]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    callback = f"http://127.0.0.1:{port}/rescreen/notification"
    state = Path(tempfile.mkdtemp(prefix="rescreen-bench-"))
    env = {
        **os.environ,
        "FHIR_BASE_URL": base,
        "RLS_SCREEN_STATE_DIR": str(state),
        "RLS_SCREEN_CDS_DEV_MODE": "true",
        "RLS_SCREEN_RESCREEN_SECRET": SECRET,
        "RLS_SCREEN_RESCREEN_DEBOUNCE_S": str(args.debounce),
        "RLS_SCREEN_RESCREEN_WORKERS": str(args.workers),
        "RLS_SCREEN_RESCREEN_CALLBACK_ALLOWLIST": callback,
    }
    cli = [sys.executable, "-m", "rls_screen.cli"]
    with (state / "serve.log").open("ab") as log:
        serve = subprocess.Popen(
            [*cli, "serve", "--port", str(port), "--no-access-log"], env=env, stdout=log, stderr=log
        )
    ids: list[str] = []
    try:
        wait_until(lambda: _answers(f"http://127.0.0.1:{port}/health"), 60, "service up")
        watched = ",".join(f"Patient/{p}" for p in patients)
        out = subprocess.run(
            [*cli, "subscribe", "--callback", callback, "--filter", f"subject={watched}"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        ids = [line.split("Subscription/", 1)[1].split()[0] for line in out.splitlines() if "Subscription/" in line]
        wait_until(lambda: all(_status(base, i) == "active" for i in ids), 60, "Subscriptions active")
        time.sleep(2)
        old = (date.today() - timedelta(days=30)).isoformat()
        for chunk in range(0, len(patients), 20):
            put(
                base,
                [
                    r
                    for p in patients[chunk : chunk + 20]
                    for r in (
                        {"resourceType": "Patient", "id": p, "gender": "female", "birthDate": "1970-03-02"},
                        ferritin(p, 1, 9, old),
                    )
                ],
            )
        print(f"warm-up: {len(patients)} iron-deficient patients loaded; waiting for their first re-screen ...")
        wait_until(lambda: all(iron_flag(base, p) is not None for p in patients), 900, "warm-up Flags")
        today = date.today().isoformat()
        for p in patients:
            put(base, [ferritin(p, 2, 120, today)])
            time.sleep(1 / args.rate)
        wait_until(
            lambda: all((f := iron_flag(base, p)) is not None and f["status"] == "inactive" for p in patients),
            900,
            "every Flag inactive",
        )
        latencies = []
        for p in patients:
            observation = requests.get(f"{base}/Observation/{p}-f2", timeout=30).json()
            flag = iron_flag(base, p)
            assert flag is not None
            latencies.append((stamp(flag) - stamp(observation)).total_seconds())
        latencies.sort()
        p50 = statistics.median(latencies)
        p95 = latencies[max(0, round(0.95 * len(latencies)) - 1)]
        print(
            f"result -> Flag inactive over {len(latencies)} results ({args.rate:g}/s, debounce {args.debounce:g} s, "
            f"{args.workers} workers): p50 {p50:.2f} s, p95 {p95:.2f} s, max {latencies[-1]:.2f} s, "
            f"min {latencies[0]:.2f} s"
        )
    finally:
        serve.terminate()
        serve.wait(timeout=30)
        for subscription_id in ids:
            requests.delete(f"{base}/Subscription/{subscription_id}", timeout=30)
    return 0


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def _status(base: str, subscription_id: str) -> str | None:
    response = requests.get(f"{base}/Subscription/{subscription_id}", timeout=10)
    return response.json().get("status") if response.ok else None


if __name__ == "__main__":
    sys.exit(main())
