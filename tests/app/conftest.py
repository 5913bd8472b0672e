"""Fixtures of the SMART app tests: the real authorization server (deploy/auth-up.sh: oidc-provider from
npm) on a free port, the module's app on another, both against the shared local HAPI server.

``smart_stack`` (session) starts the auth server with a client registered for the app's callback,
then ``rls-screen``'s FastAPI app with the SMART app on. ``ehr_launch(patient)`` plays the EHR: it
mints a launch context in the auth server (POST /ehr/launch with the admin token) and returns the
launch id. ``seed_patient`` writes a patient with labs and screens it (the module's own write-back),
so Flags, a RiskAssessment and, when iron studies are missing, a proposal exist.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import requests

from rls_screen.app.settings import AppSettings
from rls_screen.cds import create_app
from rls_screen.cds.settings import CdsSettings
from rls_screen.fhir_client import FhirClient
from rls_screen.knowledge import Knowledge, load_knowledge
from rls_screen.screening import screen_patient
from rls_screen.settings import Settings
from rls_screen.urls import Allowlist
from tests.api.helpers import LiveServer
from tests.support.fhir_data import observation, patient, put_all

REPO = Path(__file__).resolve().parents[2]
CLIENT_ID = "rls-workup-summary-test"
USER, PASSWORD = "dr-rees", "local-test-only"
PRACTITIONER = "prac-smart-rees"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class SmartStack:
    app_url: str
    auth_url: str
    fhir_base_url: str
    admin_token: str
    knowledge: Knowledge

    def ehr_launch(self, patient_id: str) -> str:
        response = requests.post(
            f"{self.auth_url}/ehr/launch",
            json={"patient": patient_id},
            headers={"Authorization": f"Bearer {self.admin_token}"},
            timeout=10,
        )
        response.raise_for_status()
        return str(response.json()["launch"])


@pytest.fixture(scope="session")
def smart_stack(fhir_base_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SmartStack]:
    if shutil.which("node") is None:
        pytest.fail("node is required for the local authorization server (deploy/auth-up.sh)")
    run_dir = tmp_path_factory.mktemp("auth-server")
    live = LiveServer()
    clients = run_dir / "clients.json"
    clients.write_text(
        json.dumps(
            [
                {
                    "client_id": CLIENT_ID,
                    "token_endpoint_auth_method": "none",
                    "grant_types": ["authorization_code"],
                    "response_types": ["code"],
                    "redirect_uris": [f"{live.base_url}/app/callback"],
                }
            ]
        ),
        encoding="utf-8",
    )
    port = free_port()
    env = {
        **os.environ,
        "AUTH_PORT": str(port),
        "AUTH_RUN_DIR": str(run_dir),
        "AUTH_CLIENTS_FILE": str(clients),
        "AUTH_FHIR_BASES": fhir_base_url,
    }
    subprocess.run([str(REPO / "deploy" / "auth-up.sh")], check=True, env=env, timeout=300)
    try:
        yield _start_app(live, fhir_base_url, f"http://127.0.0.1:{port}", run_dir, tmp_path_factory)
    finally:
        live.stop()
        subprocess.run([str(REPO / "deploy" / "auth-down.sh")], check=False, env=env, timeout=60)


def _start_app(
    live: LiveServer, fhir_base_url: str, auth_url: str, run_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> SmartStack:
    knowledge = load_knowledge()
    state = tmp_path_factory.mktemp("app-state")
    app = create_app(
        CdsSettings(cds_dev_mode=True, public_url=live.base_url, cds_feedback_db=state / "cds.sqlite3"),
        Settings(FHIR_BASE_URL=fhir_base_url, state_dir=state, fhir_max_retries=0),
        knowledge=knowledge,
        app_settings=AppSettings(
            client_id=CLIENT_ID,
            auth_servers=auth_url,
            smart_configuration_url=f"{auth_url}/.well-known/smart-configuration",
        ),
    )
    live.start(app)
    put_all(fhir_base_url, [{"resourceType": "Practitioner", "id": PRACTITIONER, "name": [{"text": "Dr Alys Rees"}]}])
    return SmartStack(live.base_url, auth_url, fhir_base_url, (run_dir / "admin-token").read_text().strip(), knowledge)


AS_OF = datetime.now(UTC).date()


def _day(days_ago: int) -> str:
    return date.fromordinal(AS_OF.toordinal() - days_ago).isoformat()


@pytest.fixture
def seed_patient(smart_stack: SmartStack, unique_prefix: str) -> Callable[..., str]:
    """A patient with ferritin 40 µg/L and TSAT 15 % (iron insufficient for RLS) and older results
    for the trend charts, screened and written back by the module. Returns the patient id."""

    def seed(*, iron_studies: bool = True) -> str:
        pid = f"{unique_prefix}-smart"
        person = {**patient(pid), "name": [{"family": "Morgan", "given": ["Carys"]}]}
        resources = [person, *_labs(pid, iron_studies), _sertraline(pid)]
        put_all(smart_stack.fhir_base_url, resources)
        client = FhirClient(smart_stack.fhir_base_url, allowlist=Allowlist((smart_stack.fhir_base_url,)), max_retries=0)
        screen_patient(client, pid, knowledge=smart_stack.knowledge, as_of=AS_OF, recorded=datetime.now(UTC))
        return pid

    return seed


def _sertraline(pid: str) -> dict[str, object]:
    """An active prescription of a medicine that may aggravate RLS (ValueSet aggravating-ssri-snri)."""
    return {
        "resourceType": "MedicationRequest",
        "id": f"{pid}-mr1",
        "status": "active",
        "intent": "order",
        "subject": {"reference": f"Patient/{pid}"},
        "authoredOn": _day(60),
        "medicationCodeableConcept": {
            "coding": [
                {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "36437", "display": "sertraline"}
            ]
        },
    }


def _labs(pid: str, iron_studies: bool) -> list[dict[str, object]]:
    labs = [
        observation(pid, 1, "718-7", 118, "g/L", _day(20)),  # Hb
        observation(pid, 2, "718-7", 126, "g/L", _day(400)),
        observation(pid, 3, "2823-3", 4.1, "mmol/L", _day(20)),  # K
        observation(pid, 4, "19123-9", 0.8, "mmol/L", _day(20)),  # Mg
    ]
    if iron_studies:
        labs += [
            observation(pid, 5, "2276-4", 40, "ug/L", _day(20)),  # ferritin
            observation(pid, 6, "2276-4", 90, "ug/L", _day(500)),
            observation(pid, 7, "2502-3", 15, "%", _day(20)),  # TSAT
            observation(pid, 8, "2276-4", 3, "mmol/L", _day(30)),  # ferritin in a unit it cannot be in: not used
        ]
    return labs
