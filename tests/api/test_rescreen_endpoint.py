"""The notification endpoint in the CDS app (in process): the secret guards it, the JWT still guards the rest,
and a notification names the patients of its resources (nothing else is queued)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec
from tests.api.helpers import ES_KID, ISSUER, LiveServer, jwk

from rls_screen.cds import create_app
from rls_screen.cds.settings import CdsSettings
from rls_screen.knowledge import Knowledge
from rls_screen.rescreen.endpoint import SECRET_HEADER
from rls_screen.rescreen.queue import StateRescreenQueue
from rls_screen.rescreen.settings import RescreenSettings
from rls_screen.settings import Settings

SECRET = "a-notification-secret-of-forty-characters!"
BASE = "http://127.0.0.1:9/fhir"  # never called: the app runs without lifespan, so no worker starts


@dataclass
class Service:
    url: str
    queue: StateRescreenQueue


@pytest.fixture
def service(tmp_path: Path, knowledge: Knowledge) -> Iterator[Service]:
    issuers = tmp_path / "issuers.json"
    key = ec.generate_private_key(ec.SECP384R1())
    issuers.write_text(json.dumps({ISSUER: {"jwks": {"keys": [jwk(key.public_key(), ES_KID, "ES384")]}}}))
    app = create_app(
        CdsSettings(public_url="http://testserver", cds_trusted_issuers_file=issuers),
        Settings(FHIR_BASE_URL=BASE, state_dir=tmp_path),
        knowledge=knowledge,
        rescreen_settings=RescreenSettings(secret=SECRET, debounce_s=600, db=tmp_path / "rescreen.sqlite3"),
    )
    server = LiveServer().start(app)
    try:
        yield Service(server.base_url, app.state.rescreen.queue)
    finally:
        server.stop()


def observation(subject: str) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": "o1", "status": "final", "subject": {"reference": subject}}


def test_a_missing_or_wrong_secret_is_refused_with_an_operation_outcome_and_queues_nothing(service: Service) -> None:
    body = observation("Patient/p1")
    url = f"{service.url}/rescreen/notification/Observation/o1"
    missing = requests.put(url, json=body, timeout=10)
    wrong = requests.put(url, json=body, headers={SECRET_HEADER: "x" * 42}, timeout=10)
    assert (missing.status_code, wrong.status_code) == (401, 403)
    for response in (missing, wrong):
        assert response.json()["resourceType"] == "OperationOutcome"
    assert service.queue.counts()["pending"] == 0


def test_the_right_secret_queues_the_resources_patient(service: Service) -> None:
    response = requests.put(
        f"{service.url}/rescreen/notification/Observation/o1",
        json=observation("Patient/p1"),
        headers={SECRET_HEADER: SECRET},
        timeout=10,
    )
    assert response.status_code == 200
    entry = service.queue.entry("p1")
    assert entry is not None
    assert entry.state == "pending"


def test_the_cds_routes_still_need_a_jwt(service: Service) -> None:
    assert requests.get(f"{service.url}/cds-services", headers={SECRET_HEADER: SECRET}, timeout=10).status_code == 401


def test_without_a_secret_there_is_no_endpoint(tmp_path: Path, knowledge: Knowledge) -> None:
    app = create_app(
        CdsSettings(cds_dev_mode=True),
        Settings(FHIR_BASE_URL=BASE, state_dir=tmp_path),
        knowledge=knowledge,
        rescreen_settings=RescreenSettings(),
    )
    assert app.state.rescreen is None
    server = LiveServer().start(app)
    try:
        response = requests.put(f"{server.base_url}/rescreen/notification/Observation/o1", json={}, timeout=10)
    finally:
        server.stop()
    assert response.status_code == 404
