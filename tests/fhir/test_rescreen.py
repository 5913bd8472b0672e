"""Re-screen on FHIR Subscriptions, end to end against the real HAPI server and a real `rls-screen serve`.

The module runs one service process (its own port and state file) and one set of Subscriptions, narrowed with
``--filter subject=<the module's patients>`` so that other tests' writes on the shared server never notify it,
and removed at the end; each test has its own patient, first screened by the service on its first write.
Bound stated for the re-screen: the Flag changes within ``BOUND_S`` of the write (the
debounce is 2 s; docs/benchmarks.md has the measured latency).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from tests.support.fhir_data import count, observation, patient, put_all, search

from rls_screen.rescreen.endpoint import SECRET_HEADER
from rls_screen.rescreen.queue import QueueEntry, StateRescreenQueue, Timing

BOUND_S = 30.0
SECRET = "rescreen-test-secret-0123456789abcdef"
DEBOUNCE_S = 2.0
REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: Callable[[], Any], timeout: float, what: str, every: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        time.sleep(every)


@dataclass
class Service:
    """One `rls-screen serve` with the re-screen on, and the Subscriptions for one patient."""

    fhir: str
    patient: str
    state_dir: Path
    port: int
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    baseline: QueueEntry | None = None
    """The patient's queue entry after their first (notified) screen."""

    @property
    def callback(self) -> str:
        return f"http://127.0.0.1:{self.port}/rescreen/notification"

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "rls_screen.cli", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    def start(self) -> None:
        with (self.state_dir / "serve.log").open("ab") as log:  # the child keeps its own descriptor
            self.process = subprocess.Popen(
                [sys.executable, "-m", "rls_screen.cli", "serve", "--port", str(self.port), "--no-access-log"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for(self._healthy, 60, "the service answers /health")

    def _healthy(self) -> bool:
        try:
            return requests.get(f"http://127.0.0.1:{self.port}/health", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)
            self.process = None

    def entry(self) -> QueueEntry | None:
        queue = StateRescreenQueue(self.state_dir / "rescreen.sqlite3", Timing(1, 1, 60), clock=time.time)
        try:
            return queue.entry(self.patient)
        finally:
            queue.close()

    def notify(self, resource: dict[str, Any], secret: str = SECRET) -> requests.Response:
        """What HAPI sends for a written resource (PUT <callback>/<type>/<id>)."""
        return requests.put(
            f"{self.callback}/{resource['resourceType']}/{resource['id']}",
            json=resource,
            headers={SECRET_HEADER: secret, "Content-Type": "application/fhir+json"},
            timeout=10,
        )


PATIENTS = ("ferritin", "transaction", "duplicate", "secret", "down")
"""One patient per test (a word of its name), all watched by the module's one service and Subscriptions."""


@pytest.fixture(scope="module")
def module_service(fhir_base_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """One service and one set of Subscriptions for the module (HAPI activates them in a few seconds each time),
    narrowed to this module's patients."""
    prefix = f"t{uuid.uuid4().hex[:8]}"
    tmp_path = tmp_path_factory.mktemp("rescreen")
    port = free_port()
    env = {
        **os.environ,
        "FHIR_BASE_URL": fhir_base_url,
        "RLS_SCREEN_STATE_DIR": str(tmp_path),
        "RLS_SCREEN_CDS_DEV_MODE": "true",  # the CDS routes' JWT is not under test; the notification secret is
        "RLS_SCREEN_RESCREEN_SECRET": SECRET,
        "RLS_SCREEN_RESCREEN_DEBOUNCE_S": str(DEBOUNCE_S),
        "RLS_SCREEN_RESCREEN_CALLBACK_ALLOWLIST": f"http://127.0.0.1:{port}/rescreen/notification",
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    svc = Service(fhir_base_url, prefix, tmp_path, port, env)  # .patient: the prefix of the module's patients
    svc.start()
    watched = ",".join(f"Patient/{prefix}-{name}" for name in PATIENTS)
    subscribed = svc.cli("subscribe", "--callback", svc.callback, "--filter", f"subject={watched}")
    assert subscribed.returncode == 0, subscribed.stderr
    assert subscribed.stdout.count(" created") == 3, subscribed.stdout
    ids = [line.split("Subscription/", 1)[1].split()[0] for line in subscribed.stdout.splitlines()]
    again = svc.cli("subscribe", "--callback", svc.callback, "--filter", f"subject={watched}")
    assert again.stdout.count(" unchanged") == 3, again.stdout  # idempotent
    wait_for(lambda: all(_status(fhir_base_url, i) == "active" for i in ids), 60, "Subscriptions active")
    time.sleep(1.0)  # HAPI registers an activated Subscription with its delivery channel just after
    try:
        yield svc
    finally:
        svc.stop()
        svc.cli("subscribe", "--callback", svc.callback, "--off")
        for subscription_id in ids:
            requests.delete(f"{fhir_base_url}/Subscription/{subscription_id}", timeout=30)


@pytest.fixture
def service(module_service: Service, request: pytest.FixtureRequest) -> Service:
    """The module's service, for this test's own patient (iron deficient, screened once by `screen`)."""
    name = next(n for n in PATIENTS if n in request.node.name)
    if module_service.process is None or module_service.process.poll() is not None:
        module_service.start()  # the service-down test stopped it
    svc = replace(module_service, patient=f"{module_service.patient}-{name}")
    put_all(svc.fhir, iron_deficient(svc.patient))
    wait_for(lambda: (e := svc.entry()) is not None and e.state == "done", BOUND_S, "first screen")
    entry = svc.entry()
    assert entry is not None
    svc.baseline = entry
    return svc


def _status(fhir_base_url: str, subscription_id: str) -> str | None:
    response = requests.get(f"{fhir_base_url}/Subscription/{subscription_id}", timeout=10)
    return response.json().get("status") if response.ok else None


def iron_deficient(prefix: str) -> list[dict[str, Any]]:
    old = (date.today() - timedelta(days=30)).isoformat()
    return [
        patient(prefix),
        observation(prefix, 1, "2276-4", 9, "ug/L", old),  # ferritin 9: iron deficiency
        observation(prefix, 2, "718-7", 13.1, "g/dL", old),
    ]


def flags(svc: Service) -> dict[str, dict[str, Any]]:
    return {
        f["identifier"][0]["value"].rsplit(".", 1)[-1]: f
        for f in search(svc.fhir, "Flag", subject=f"Patient/{svc.patient}")
    }


def written(svc: Service) -> dict[str, int]:
    return {
        "RiskAssessment": count(svc.fhir, "RiskAssessment", subject=f"Patient/{svc.patient}"),
        "Provenance": count(svc.fhir, "Provenance", target=f"Patient/{svc.patient}"),
        "Flag versions": sum(int(f["meta"]["versionId"]) for f in flags(svc).values()),
    }


def new_ferritin(svc: Service, n: int, value: float) -> dict[str, Any]:
    return observation(svc.patient, n, "2276-4", value, "ug/L", date.today().isoformat())


def test_a_new_ferritin_of_120_makes_the_iron_deficiency_flag_inactive_within_the_bound(service: Service) -> None:
    assert flags(service)["iron-deficiency"]["status"] == "active"
    before = written(service)
    started = time.monotonic()
    put_all(service.fhir, [new_ferritin(service, 10, 120)])
    flag = wait_for(
        lambda: (f := flags(service)["iron-deficiency"])["status"] == "inactive" and f, BOUND_S, "Flag inactive"
    )
    elapsed = time.monotonic() - started
    assert flag["period"]["end"] == date.today().isoformat()
    assert written(service)["RiskAssessment"] == before["RiskAssessment"] + 1
    entry = service.entry()
    assert entry is not None
    assert service.baseline is not None
    assert (entry.state, entry.screens, entry.writes) == (
        "done",
        service.baseline.screens + 1,
        service.baseline.writes + 1,
    )
    print(f"notification to Flag: {elapsed:.1f} s (bound {BOUND_S:g} s)")


def test_ten_results_in_one_transaction_give_one_rescreen(service: Service) -> None:
    today = date.today().isoformat()
    panel = [
        observation(service.patient, 20 + n, code, value, unit, today)
        for n, (code, value, unit) in enumerate(
            [
                ("2276-4", 110, "ug/L"),
                ("718-7", 13.5, "g/dL"),
                ("2498-4", 90, "ug/dL"),
                ("2500-7", 300, "ug/dL"),
                ("2502-3", 30, "%"),
                ("2823-3", 4.2, "mmol/L"),
                ("19123-9", 0.9, "mmol/L"),
                ("17861-6", 9.4, "mg/dL"),
                ("2160-0", 0.9, "mg/dL"),
                ("98979-8", 85, "mL/min/{1.73_m2}"),
            ]
        )
    ]
    assert service.baseline is not None
    noted, screens = service.baseline.noted, service.baseline.screens
    put_all(service.fhir, panel)
    entry = wait_for(
        lambda: (e := service.entry()) is not None and e.noted == noted + 10 and e.state == "done" and e,
        BOUND_S,
        "screened",
    )
    time.sleep(DEBOUNCE_S + 2)  # nothing further comes
    entry = service.entry()
    assert entry is not None
    assert (entry.noted, entry.screens, entry.state) == (noted + 10, screens + 1, "done")


def test_a_duplicate_notification_writes_nothing(service: Service) -> None:
    assert service.baseline is not None
    screens, writes = service.baseline.screens, service.baseline.writes
    ferritin = new_ferritin(service, 30, 120)
    put_all(service.fhir, [ferritin])
    wait_for(
        lambda: (e := service.entry()) is not None and e.state == "done" and e.screens == screens + 1, BOUND_S, "screen"
    )
    before = written(service)
    stored = requests.get(f"{service.fhir}/Observation/{ferritin['id']}", timeout=10).json()
    assert service.notify(stored).status_code == 200  # the same delivery again, as a retrying server sends it
    entry = wait_for(
        lambda: (e := service.entry()) is not None and e.screens == screens + 2 and e, BOUND_S, "second screen"
    )
    assert entry.writes == writes + 1
    assert written(service) == before


def test_a_wrong_secret_is_refused_and_changes_nothing(service: Service) -> None:
    before, entry_before = written(service), service.entry()
    ferritin = new_ferritin(service, 40, 120)
    for secret in ("x" * len(SECRET), SECRET[:-1] + "?"):
        response = service.notify(ferritin, secret)
        assert response.status_code == 403
        assert response.json()["resourceType"] == "OperationOutcome"
    missing = requests.put(f"{service.callback}/Observation/{ferritin['id']}", json=ferritin, timeout=10)
    assert missing.status_code == 401
    assert missing.json()["resourceType"] == "OperationOutcome"
    time.sleep(DEBOUNCE_S + 2)
    assert service.entry() == entry_before
    assert written(service) == before
    assert flags(service)["iron-deficiency"]["status"] == "active"


def test_with_the_service_down_since_catches_up_and_remembers_where_it_got_to(service: Service) -> None:
    service.stop()
    since = datetime.now(UTC) - timedelta(seconds=5)
    put_all(service.fhir, [new_ferritin(service, 50, 120)])
    panel = service.state_dir / "panel.txt"
    panel.write_text(f"{service.patient}\n", encoding="utf-8")
    caught_up = service.cli("batch", "--since", since.strftime("%Y-%m-%dT%H:%M:%SZ"), "--patients", str(panel))
    assert caught_up.returncode == 0, caught_up.stdout + caught_up.stderr
    assert "Changed since" in caught_up.stdout
    assert "1 patient(s)" in caught_up.stdout
    flag = flags(service)["iron-deficiency"]
    assert flag["status"] == "inactive"
    assert flag["period"]["end"] == date.today().isoformat()
    again = service.cli("batch", "--since", "last", "--patients", str(panel))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "Next 'batch --since last' starts at" in again.stdout


def test_the_local_server_calls_only_loopback_endpoints(fhir_base_url: str) -> None:
    """deploy/fhir-server: fhir.subscription.resthook-endpoint-regex is the server's allowlist of endpoints."""
    subscription = {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "rls-screen test: must be refused",
        "criteria": "Observation?code=http://loinc.org|2276-4&subject=Patient/none",
        "channel": {
            "type": "rest-hook",
            "endpoint": "https://elsewhere.example/hook",
            "payload": "application/fhir+json",
        },
    }
    response = requests.post(f"{fhir_base_url}/Subscription", json=subscription, timeout=30)
    if response.status_code == 201:  # clean up before failing
        requests.delete(f"{fhir_base_url}/Subscription/{response.json()['id']}", timeout=30)
    assert response.status_code in (400, 422), response.text[:300]
    assert response.json()["resourceType"] == "OperationOutcome"
