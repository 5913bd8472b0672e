"""Helpers of the CDS service tests: a live uvicorn server, a JWT-signing EHR client, FHIR builders.

``LiveServer`` runs one app in a daemon thread on a socket bound first (so the app knows its own
URL); ``Ehr`` mints spec-shaped JWTs (aud = the endpoint URL) and sends CDS Hooks requests; the rest
builds Bundles and requests from tests/support/fhir_data. Fixtures live in conftest.py.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import requests
import uvicorn
from tests.support.fhir_data import observation, patient

ISSUER = "https://ehr.example.test"
ISSUER_BY_URI = "https://ehr-uri.example.test"
SPEC_ISSUER = "https://fhir-ehr.example.com/"
ES_KID, RS_KID = "es384-key", "rs384-key"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SNOMED = "http://snomed.info/sct"
PATIENT_VIEW = "rls-secondary-causes"
ORDER_SELECT = "rls-order-check-select"
ORDER_SIGN = "rls-order-check-sign"


@dataclass(frozen=True)
class SigningKey:
    kid: str
    alg: str
    private: Any
    jwk: dict[str, Any]


def jwk(public_key: Any, kid: str, alg: str) -> dict[str, Any]:
    algorithm = jwt.get_algorithm_by_name(alg)
    key: dict[str, Any] = json.loads(algorithm.to_jwk(public_key))
    return {**key, "kid": kid, "alg": alg, "use": "sig"}


def compact_jws(header: str, payload: str, key: SigningKey) -> str:
    """A JWS signed with ``key`` over header and payload given as JSON text (NaN, huge ints, any types)."""

    def b64(text: str) -> str:
        return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()

    signing_input = f"{b64(header)}.{b64(payload)}"
    signature = jwt.get_algorithm_by_name(key.alg).sign(signing_input.encode(), key.private)
    return f"{signing_input}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


class LiveServer:
    """uvicorn in a daemon thread on a socket bound first, so the app can know its own URL."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.base_url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server: uvicorn.Server | None = None
        self.thread: threading.Thread | None = None

    def start(self, app: Any) -> LiveServer:
        config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False, ws="none")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the CDS server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self.server is not None and self.thread is not None:
            self.server.should_exit = True
            self.thread.join(timeout=10)
        self.sock.close()


@dataclass
class Ehr:
    """A CDS client: signs JWTs for this service and sends spec-shaped requests."""

    base_url: str
    key: SigningKey
    issuer: str = ISSUER
    session: requests.Session = field(default_factory=requests.Session)

    def token(
        self, path: str, *, key: SigningKey | None = None, headers: dict[str, Any] | None = None, **claims: Any
    ) -> str:
        key = key or self.key
        now = int(time.time())
        payload = {
            "iss": self.issuer,
            "aud": self.base_url + path,
            "exp": now + 300,
            "iat": now,
            "jti": str(uuid.uuid4()),
            **claims,
        }
        payload = {k: v for k, v in payload.items() if v is not None}
        return jwt.encode(
            payload, key.private, algorithm=key.alg, headers={"kid": key.kid, "typ": "JWT", **(headers or {})}
        )

    def post(
        self, path: str, body: Any, *, token: str | None = None, raw: bytes | None = None, **kwargs: Any
    ) -> requests.Response:
        headers = {"Authorization": f"Bearer {token or self.token(path)}", "Content-Type": "application/json"}
        headers.update(kwargs.pop("headers", {}))
        data = raw if raw is not None else json.dumps(body).encode()
        return self.session.post(self.base_url + path, data=data, headers=headers, timeout=60, **kwargs)

    def get(self, path: str, *, token: str | None = None, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {token or self.token(path)}", **kwargs.pop("headers", {})}
        return self.session.get(self.base_url + path, headers=headers, timeout=60, **kwargs)

    def call(self, service: str, body: dict[str, Any], **kwargs: Any) -> requests.Response:
        return self.post(f"/cds-services/{service}", body, **kwargs)


ServerFactory = Callable[..., tuple[LiveServer, Ehr]]


# --- FHIR data builders ---------------------------------------------------------------------------


def days_ago(n: int) -> str:
    return (datetime.now(UTC).date() - timedelta(days=n)).isoformat()


def rls_condition(prefix: str, code: tuple[str, str] = (SNOMED, "32914008"), status: str = "active") -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": f"{prefix}-rls",
        "clinicalStatus": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": status}]
        },
        "verificationStatus": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]
        },
        "code": {"coding": [{"system": code[0], "code": code[1]}]},
        "subject": {"reference": f"Patient/{prefix}"},
    }


def labs(prefix: str, **values: float) -> list[dict[str, Any]]:
    """Lab Observations 30 days old: ferritin (ug/L), tsat (%), hb (g/L), egfr, k, mg (mmol/L)."""
    codes = {
        "ferritin": ("2276-4", "ug/L"),
        "tsat": ("2502-3", "%"),
        "hb": ("718-7", "g/L"),
        "egfr": ("62238-1", "mL/min/{1.73_m2}"),
        "k": ("2823-3", "mmol/L"),
        "mg": ("2601-3", "mmol/L"),
        "ca": ("17861-6", "mmol/L"),
    }
    return [
        observation(prefix, n, codes[name][0], value, codes[name][1], days_ago(30))
        for n, (name, value) in enumerate(values.items(), 1)
    ]


NORMAL = {"ferritin": 120.0, "tsat": 30.0, "hb": 135.0, "egfr": 95.0, "k": 4.2, "mg": 0.85, "ca": 2.35}


def searchset(resources: list[dict[str, Any]], next_url: str | None = None) -> dict[str, Any]:
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "entry": [
            {"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": r, "search": {"mode": "match"}} for r in resources
        ],
    }
    if next_url:
        bundle["link"] = [{"relation": "next", "url": next_url}]
    return bundle


def patient_view_request(prefix: str, prefetch: dict[str, Any] | None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/doc-1", "patientId": prefix},
        **extra,
    }
    if prefetch is not None:
        body["prefetch"] = prefetch
    return body


def full_prefetch(
    prefix: str, observations: list[dict[str, Any]], *, rls: bool = True, **patient_args: Any
) -> dict[str, Any]:
    return {
        "patient": patient(prefix, **patient_args),
        "conditions": searchset([rls_condition(prefix)] if rls else []),
        "observations": searchset(observations),
        "procedures": searchset([]),
        "medications": searchset([]),
    }


def medication_request(
    prefix: str,
    n: int,
    *,
    code: str | None = None,
    display: str | None = None,
    text: str | None = None,
    reason: bool = False,
) -> dict[str, Any]:
    concept: dict[str, Any] = {}
    if code or display:
        coding: dict[str, Any] = {"system": RXNORM}
        if code:
            coding["code"] = code
        if display:
            coding["display"] = display
        concept["coding"] = [coding]
    if text:
        concept["text"] = text
    request: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "id": f"{prefix}-mr{n}",
        "status": "draft",
        "intent": "order",
        "subject": {"reference": f"Patient/{prefix}"},
        "medicationCodeableConcept": concept,
    }
    if reason:
        request["reasonCode"] = [{"coding": [{"system": SNOMED, "code": "32914008"}]}]
    return request


def order_request(
    hook: str,
    prefix: str,
    orders: list[dict[str, Any]],
    prefetch: dict[str, Any] | None,
    *,
    selections: list[str] | None = None,
) -> dict[str, Any]:
    context: dict[str, Any] = {
        "userId": "Practitioner/doc-1",
        "patientId": prefix,
        "draftOrders": {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": o} for o in orders]},
    }
    if hook == "order-select":
        context["selections"] = (
            selections if selections is not None else [f"MedicationRequest/{o['id']}" for o in orders]
        )
    body: dict[str, Any] = {"hook": hook, "hookInstance": str(uuid.uuid4()), "context": context}
    if prefetch is not None:
        body["prefetch"] = prefetch
    return body


def summaries(response: requests.Response) -> list[str]:
    return [card["summary"] for card in response.json()["cards"]]
