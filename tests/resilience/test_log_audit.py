"""Log audit: no patient names, identifiers, birth dates, patient ids or tokens in what the module logs.

What counts as a log (docs/resilience.md):
- ``rls-screen`` CLI commands (run as real processes with ``-v``, so INFO and up): every line on
  stderr. The one exception is the command's own one-line answer to an error (``rls-screen screen:
  ...``), which may name the patient id the caller passed on the command line and nothing else.
- stdout is the command's output, not a log: ``batch`` prints counts and paths (checked: no patient
  data at all); ``screen`` prints the clinical text for the patient it was asked about (checked: it
  may carry that patient's id, never a name, identifier, birth date or token).
- ``rls-screen serve`` (the CDS service under uvicorn, access log on): every line it writes, stdout
  and stderr.
- Files a batch leaves behind (job database, HTML and CSV report) may hold patient ids by design,
  never names, identifiers, birth dates or tokens.

Both log forms are audited: JSON events (one per line, the default when stderr is not a terminal)
and text lines (RLS_SCREEN_LOG_FORMAT=text, what a terminal gets). In the JSON form every line must
be one JSON object, the needles are searched in the raw lines and in the decoded messages, and the
correlation ids are checked: a batch's events carry its jobId, a CDS call's its hookInstance.

The panel's Patients get distinctive names and MRNs so that a hit cannot be a coincidence. The runs
go through the fault proxy with a few faults so that the retry, failure and deadline paths log too,
and each corpus is checked to contain the log lines expected from those paths (a silent log would
pass an audit vacuously).
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from tests.api.helpers import ES_KID, ISSUER, ORDER_SELECT, ORDER_SIGN, PATIENT_VIEW, Ehr, SigningKey, jwk, searchset
from tests.resilience.hapi_instance import free_port
from tests.resilience.helpers import AS_OF, batch_args, cli_env, load_panel, make_panel, run_cli
from tests.support.fault_proxy import Fault, FaultProxy
from tests.support.scripted_server import Reply, base_url, scripted_server

from rls_screen.synth import Panel

pytestmark = [pytest.mark.fhir, pytest.mark.slow]

PRAMIPEXOLE = {
    "system": "http://www.nlm.nih.gov/research/umls/rxnorm",
    "code": "859046",
    "display": "pramipexole dihydrochloride 0.25 MG Oral Tablet",
}
RLS = {"system": "http://snomed.info/sct", "code": "32914008"}
COMMAND_ANSWER_PREFIX = "rls-screen "
CDS_DEADLINE_MS = 3000


@dataclass(frozen=True)
class Needle:
    kind: str
    value: str
    patient_id: str | None = None


@dataclass
class Secrets:
    """Everything that must never reach a log."""

    needles: list[Needle]

    def add(self, kind: str, value: str, patient_id: str | None = None) -> str:
        self.needles.append(Needle(kind, value, patient_id))
        return value

    def leaks(self, where: str, text: str, *, allowed_ids: Iterable[str] = ()) -> list[str]:
        """Each line of ``text`` holding a needle (case-insensitive), except the allowed patient ids."""
        allowed = set(allowed_ids)
        found = []
        for number, line in enumerate(text.splitlines(), 1):
            lowered = line.lower()
            for needle in self.needles:
                if needle.kind == "patient id" and needle.value in allowed:
                    continue
                if needle.value.lower() in lowered:
                    found.append(f"{where}:{number}: {needle.kind} ({needle.patient_id or '-'}): {line[:240]}")
        return found


def distinctive_identities(panel: Panel, seed: str, secrets: Secrets) -> None:
    """Give every Patient a name and MRN found nowhere else, and register them (and ids, birth dates)."""
    rng = random.Random(seed)
    for record in panel.patients:
        pid = record.patient_id
        given = secrets.add("given name", f"Ottoline{rng.randrange(16**6):06x}", pid)
        family = secrets.add("family name", f"Quarrendon{rng.randrange(16**6):06x}", pid)
        record.patient["name"] = [{"use": "official", "text": f"{given} {family}", "family": family, "given": [given]}]
        secrets.add("name text", f"{given} {family}", pid)
        record.patient["identifier"][0]["value"] = secrets.add("MRN", f"MRN{rng.randrange(10**9):09d}", pid)
        record.patient["telecom"] = [
            {"system": "phone", "value": secrets.add("phone", f"+1-555-{rng.randrange(10**7):07d}", pid)}
        ]
        secrets.add("birth date", record.patient["birthDate"], pid)
        secrets.add("patient id", pid, pid)


LOG_FORMATS = pytest.mark.parametrize("log_format", ["json", "text"])


def log_events(log: str, log_format: str) -> list[dict[str, Any]]:
    """The log's events: each line one JSON object (checked) in the JSON form; text lines as messages."""
    if log_format == "text":
        return [{"message": line} for line in log.splitlines()]
    events = [json.loads(line) for line in log.splitlines() if line.strip()]
    assert all(isinstance(event, dict) and "message" in event for event in events)
    return events


def messages(log: str, log_format: str) -> str:
    return "\n".join(event["message"] for event in log_events(log, log_format))


def command_answers_and_logs(stderr: str) -> tuple[str, str]:
    """Split a CLI's stderr into its one-line answers (``rls-screen <command>: ...``) and its log."""
    answers = [line for line in stderr.splitlines() if line.startswith(COMMAND_ANSWER_PREFIX)]
    logs = [line for line in stderr.splitlines() if not line.startswith(COMMAND_ANSWER_PREFIX)]
    return "\n".join(answers), "\n".join(logs)


def pem_lines(private_key: ec.EllipticCurvePrivateKey) -> tuple[bytes, list[str]]:
    pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return pem, [line for line in pem.decode().splitlines() if line and not line.startswith("-----")]


@pytest.fixture
def secrets() -> Secrets:
    return Secrets([])


@LOG_FORMATS
def test_batch_and_screen_logs_hold_no_patient_data_or_tokens(
    fhir_base_url: str, proxy: FaultProxy, unique_prefix: str, tmp_path: Path, secrets: Secrets, log_format: str
) -> None:
    panel = make_panel(unique_prefix, 12, seed=21)
    distinctive_identities(panel, unique_prefix, secrets)
    missing = secrets.add("patient id", f"{unique_prefix}-p9999", f"{unique_prefix}-p9999")
    load_panel(fhir_base_url, panel)
    # The whole panel plus one patient the server does not have, so the not-found path logs too.
    patients_file = tmp_path / "patients.txt"
    patients_file.write_text("\n".join([*(r.patient_id for r in panel.patients), missing]) + "\n")
    token = secrets.add("bearer token", f"static-{uuid.uuid4().hex}")
    proxy.set_faults(
        Fault.unavailable(method="GET", path=r"/fhir/Patient/", times=1),
        Fault.too_many_requests("0", method="GET", path=r"/fhir/Observation\?", times=1),
        Fault.reset(method="GET", path=r"/fhir/Condition\?", times=1),
        Fault.drop_response(method="POST", bundle_type="transaction", times=1),
    )
    env = cli_env(
        tmp_path / "state", proxy.base_url, RLS_SCREEN_FHIR_BEARER_TOKEN=token, RLS_SCREEN_LOG_FORMAT=log_format
    )
    job_db, reports = tmp_path / "jobs.sqlite", tmp_path / "reports"

    batch = run_cli(["-v", *batch_args(patients_file, job_db, reports)], env)
    assert batch.returncode == 1, batch.stdout + batch.stderr  # the missing member fails, the rest is done
    assert "12 screened, 1 failed" in batch.stdout
    first = panel.patients[0].patient_id
    screen = run_cli(["-v", "screen", "--patient", first, "--as-of", AS_OF.isoformat()], env)
    assert screen.returncode == 0, screen.stdout + screen.stderr
    not_found = run_cli(["-v", "screen", "--patient", missing, "--as-of", AS_OF.isoformat()], env)
    assert not_found.returncode == 4, not_found.stdout + not_found.stderr

    # SMART Backend Services instead of the static token, against a real token endpoint.
    key = ec.generate_private_key(ec.SECP384R1())
    pem, key_lines = pem_lines(key)
    for line in key_lines:
        secrets.add("private key", line)
    (tmp_path / "smart-key.pem").write_bytes(pem)
    access_token = secrets.add("SMART access token", f"smart-{uuid.uuid4().hex}")
    token_reply = {"access_token": access_token, "token_type": "bearer", "expires_in": 300}
    with scripted_server(lambda received: Reply(200, token_reply, {"Content-Type": "application/json"})) as tokens:
        smart_env = {
            **env,
            "RLS_SCREEN_SMART_TOKEN_URL": base_url(tokens, "/token"),
            "RLS_SCREEN_SMART_CLIENT_ID": "rls-screen-client",
            "RLS_SCREEN_SMART_PRIVATE_KEY_FILE": str(tmp_path / "smart-key.pem"),
            "RLS_SCREEN_SMART_ALGORITHM": "ES384",
        }
        second = panel.patients[1].patient_id
        smart = run_cli(["-v", "screen", "--patient", second, "--as-of", AS_OF.isoformat()], smart_env)
        assertions = [parse_qs(r.body.decode())["client_assertion"][0] for r in tokens.received]
    assert smart.returncode == 0, smart.stdout + smart.stderr
    for assertion in assertions:
        secrets.add("SMART client assertion", assertion)

    # The audit is not vacuous: the tokens were used, the faults fired and the paths logged.
    assert {e.authorization for e in proxy.events} >= {f"Bearer {token}", f"Bearer {access_token}"}
    assert len(proxy.fired()) == 4
    batch_answers, batch_log = command_answers_and_logs(batch.stderr)
    batch_text = messages(batch_log, log_format)
    assert "fhir GET Patient -> 200" in batch_text
    assert "HTTP 503, retry 1" in batch_text
    # the lost transaction answer: its whole group of patients is retried (a fresh read writes nothing twice)
    assert re.search(r"retrying [1-9]\d* patient\(s\) after transient errors", batch_text)
    assert "batch progress: 13/13 patients (" in batch_text  # no terminal: progress as log lines
    assert batch_answers == ""
    if log_format == "json":  # every event of the batch process names its job
        (job_id,) = {line.split()[1].rstrip(":") for line in batch.stdout.splitlines() if line.startswith("Job ")}
        fhir_events = [e for e in log_events(batch_log, log_format) if e["message"].startswith("fhir ")]
        assert fhir_events
        assert {e.get("jobId") for e in fhir_events} == {job_id}

    leaks = secrets.leaks("batch stderr", batch_log) + secrets.leaks("batch stdout", batch.stdout)
    leaks += secrets.leaks("batch messages", batch_text)
    for name, run, asked in (
        ("screen", screen, first),
        ("screen-missing", not_found, missing),
        ("smart", smart, second),
    ):
        answers, log = command_answers_and_logs(run.stderr)
        assert "fhir GET Patient" in messages(log, log_format)
        leaks += secrets.leaks(f"{name} stderr", log) + secrets.leaks(f"{name} messages", messages(log, log_format))
        leaks += secrets.leaks(f"{name} answer", answers, allowed_ids=[asked])
        leaks += secrets.leaks(f"{name} stdout", run.stdout, allowed_ids=[asked])
    ids = [n.value for n in secrets.needles if n.kind == "patient id"]
    written = [*tmp_path.glob("jobs.sqlite*"), *reports.rglob("*"), *(tmp_path / "state").rglob("*")]
    assert any(path.suffix == ".csv" for path in written)
    for path in (p for p in written if p.is_file()):  # job database (and WAL), reports, state
        leaks += secrets.leaks(path.name, path.read_bytes().decode("utf-8", "replace"), allowed_ids=ids)
    assert not leaks, "\n".join(leaks)


# --- the CDS service ---------------------------------------------------------------------------------


@pytest.fixture
def served_cds(
    proxy: FaultProxy, tmp_path: Path, secrets: Secrets, log_format: str
) -> Iterator[tuple[Ehr, subprocess.Popen[str], Path]]:
    """``rls-screen serve`` in its own process, reading FHIR through the proxy; yields the EHR client."""
    key = ec.generate_private_key(ec.SECP384R1())
    signing = SigningKey(ES_KID, "ES384", key, jwk(key.public_key(), ES_KID, "ES384"))
    issuers = tmp_path / "issuers.json"
    issuers.write_text(json.dumps({ISSUER: {"jwks": {"keys": [signing.jwk]}}}))
    port = free_port()
    public_url = f"http://127.0.0.1:{port}"
    env = cli_env(
        tmp_path / "cds-state",
        proxy.base_url,
        RLS_SCREEN_PUBLIC_URL=public_url,
        RLS_SCREEN_CDS_TRUSTED_ISSUERS_FILE=str(issuers),
        RLS_SCREEN_CDS_SUBJECT_SALT=secrets.add("subject salt", f"salt-{uuid.uuid4().hex}"),
        RLS_SCREEN_CDS_DEADLINE_MS=str(CDS_DEADLINE_MS),
        RLS_SCREEN_LOG_FORMAT=log_format,
    )
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "rls_screen.cli", "serve", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log_path.read_text()
            try:
                if requests.get(f"{public_url}/health", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "the CDS service did not start"
            time.sleep(0.1)
        yield Ehr(public_url, signing), process, log_path
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)  # uvicorn's graceful shutdown
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def _fhir_context(fhir_server: str, access_token: str) -> dict[str, Any]:
    return {
        "fhirServer": fhir_server,
        "fhirAuthorization": {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "patient/*.read",
            "subject": "rls-screen",
        },
    }


def bundle_of(*resources: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}


def _hook(hook: str, patient_id: str, **extra: Any) -> dict[str, Any]:
    context = {"userId": "Practitioner/doc-1", "patientId": patient_id, **extra.pop("context", {})}
    return {"hook": hook, "hookInstance": str(uuid.uuid4()), "context": context, **extra}


@LOG_FORMATS
def test_cds_service_logs_hold_no_patient_data_or_tokens(
    fhir_base_url: str,
    proxy: FaultProxy,
    unique_prefix: str,
    secrets: Secrets,
    served_cds: tuple[Ehr, subprocess.Popen[str], Path],
    log_format: str,
) -> None:
    ehr, process, log_path = served_cds
    panel = make_panel(unique_prefix, 8, seed=4)
    distinctive_identities(panel, unique_prefix, secrets)
    load_panel(fhir_base_url, panel)
    with_rls = [r for r in panel.patients if r.manifest.rls]
    assert len(with_rls) >= 3, "the seed gives at least three patients with RLS"
    fetched, prefetched, slow = with_rls[:3]
    fhir_token = secrets.add("fhirAuthorization token", f"ehr-{uuid.uuid4().hex}")
    context = _fhir_context(proxy.base_url, fhir_token)
    proxy.set_faults(
        # The CDS service reads the Conditions, then the rest in one batch: a 503 on the first batch ...
        Fault.unavailable(method="POST", bundle_type="batch", times=1),
        # ... and the slow patient's first read stalls past the deadline.
        Fault.stall(CDS_DEADLINE_MS / 1000 + 3, method="GET", path=rf"/fhir/Condition\?.*{slow.patient_id}", times=1),
    )
    statuses: list[int] = []

    def call(service: str, body: dict[str, Any], **kwargs: Any) -> requests.Response:
        path = f"/cds-services/{service}"
        jwt_token = kwargs.pop("token", None) or secrets.add("CDS JWT", ehr.token(path))
        response = ehr.post(path, body, token=jwt_token, **kwargs)
        statuses.append(response.status_code)
        return response

    # Read from the FHIR server (no prefetch): a 503 on the first read, retried.
    cards = call(PATIENT_VIEW, _hook("patient-view", fetched.patient_id, **context)).json()["cards"]
    # Everything prefetched, names included.
    resources = prefetched.resources
    prefetch = {
        "patient": prefetched.patient,
        "conditions": searchset([r for r in resources if r["resourceType"] == "Condition"]),
        "observations": searchset([r for r in resources if r["resourceType"] == "Observation"]),
        "medications": searchset([]),
    }
    call(PATIENT_VIEW, _hook("patient-view", prefetched.patient_id, prefetch=prefetch, **context))
    # An order for an RLS drug, data read from the server.
    order = {
        "resourceType": "MedicationRequest",
        "id": f"{unique_prefix}-mr1",
        "status": "draft",
        "intent": "order",
        "subject": {"reference": f"Patient/{fetched.patient_id}"},
        "medicationCodeableConcept": {"coding": [PRAMIPEXOLE]},
    }
    call(
        ORDER_SELECT,
        _hook(
            "order-select",
            fetched.patient_id,
            context={"draftOrders": bundle_of(order), "selections": [f"MedicationRequest/{order['id']}"]},
            **context,
        ),
    )
    # The FHIR server stalls past the deadline: no cards, in time.
    started = time.monotonic()
    assert call(PATIENT_VIEW, _hook("patient-view", slow.patient_id, **context)).json() == {"cards": []}
    assert time.monotonic() - started < CDS_DEADLINE_MS / 1000 + 1.0
    # An RLS order for a patient the server does not have (412: the Patient is needed), a PHI-bearing
    # invalid body (400), a bad JWT (401).
    missing = secrets.add("patient id", f"{unique_prefix}-p9999", f"{unique_prefix}-p9999")
    for_rls = {**order, "subject": {"reference": f"Patient/{missing}"}, "reasonCode": [{"coding": [RLS]}]}
    call(ORDER_SIGN, _hook("order-sign", missing, context={"draftOrders": bundle_of(for_rls)}, **context))
    call(PATIENT_VIEW, _hook("patient-view", prefetched.patient["name"][0]["text"], **context))
    call(PATIENT_VIEW, _hook("patient-view", fetched.patient_id, **context), token="not.a.jwt")
    # Feedback on a card shown.
    if cards:
        feedback = {
            "feedback": [{"card": cards[0]["uuid"], "outcome": "accepted", "outcomeTimestamp": "2026-11-25T10:00:00Z"}]
        }
        call(f"{PATIENT_VIEW}/feedback", feedback)

    assert statuses[:4] == [200, 200, 200, 200]
    assert statuses[4:7] == [412, 400, 401]
    process.send_signal(signal.SIGINT)
    process.wait(timeout=20)
    raw = log_path.read_text()
    log = messages(raw, log_format)
    # Not vacuous: the calls, the retry, the deadline and the access log are all there.
    assert "cds: rls-secondary-causes patient-view hook_instance=" in log
    assert "HTTP 503, retry 1" in log
    assert f"passed the {CDS_DEADLINE_MS} ms deadline" in log
    assert '"POST /cds-services/rls-secondary-causes HTTP/1.1" 200' in log
    assert {e.authorization for e in proxy.events} == {f"Bearer {fhir_token}"}
    if log_format == "json":  # a call's events, its FHIR reads included, carry its hookInstance
        events = log_events(raw, log_format)
        retried = [e for e in events if "HTTP 503, retry 1" in e["message"]]
        assert retried
        assert all(e.get("hookInstance") for e in retried)
    leaks = secrets.leaks("serve log", raw) + secrets.leaks("serve messages", log)
    assert not leaks, "\n".join(leaks)
    assert os.path.getsize(log_path) > 0
