"""Fixtures of the CDS service tests: keys, trusted issuers, and ``cds_server`` (one live app per call).

``cds_server(**overrides)`` starts uvicorn with ``create_app`` on a free loopback port, with a fresh
SQLite file and trusted issuers holding the session's ES384 and RS384 keys; it returns the server and
an ``Ehr`` client signing with the ES384 key. Helpers are in helpers.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from tests.api.helpers import ES_KID, ISSUER, RS_KID, SPEC_ISSUER, Ehr, LiveServer, ServerFactory, SigningKey, jwk

from rls_screen.cds import create_app
from rls_screen.cds.settings import CdsSettings
from rls_screen.knowledge import Knowledge, load_knowledge
from rls_screen.settings import Settings


@pytest.fixture(scope="session")
def es_key() -> SigningKey:
    private = ec.generate_private_key(ec.SECP384R1())
    return SigningKey(ES_KID, "ES384", private, jwk(private.public_key(), ES_KID, "ES384"))


@pytest.fixture(scope="session")
def rs_key() -> SigningKey:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return SigningKey(RS_KID, "RS384", private, jwk(private.public_key(), RS_KID, "RS384"))


@pytest.fixture(scope="session")
def spec_key() -> SigningKey:
    """A key under the spec example's kid, so its issuer is trusted and only the expiry can fail."""
    private = ec.generate_private_key(ec.SECP384R1())
    return SigningKey("example-kid", "ES384", private, jwk(private.public_key(), "example-kid", "ES384"))


@pytest.fixture
def issuers_file(tmp_path: Path, es_key: SigningKey, rs_key: SigningKey, spec_key: SigningKey) -> Path:
    path = tmp_path / "trusted-issuers.json"
    path.write_text(
        json.dumps(
            {
                ISSUER: {"jwks": {"keys": [es_key.jwk, rs_key.jwk]}},
                # The spec example JWT names this jku; listed so that only its expiry can fail it.
                SPEC_ISSUER: {"jwks": {"keys": [spec_key.jwk]}, "jku": ["https://fhir-ehr.example.com/jwk_uri"]},
            }
        ),
        encoding="utf-8",
    )
    return path


@pytest.fixture(scope="session")
def knowledge() -> Knowledge:
    """Loaded once: every test's app shares the (read-only) rule set and terminology."""
    return load_knowledge()


@pytest.fixture
def cds_server(tmp_path: Path, issuers_file: Path, es_key: SigningKey, knowledge: Knowledge) -> Iterator[ServerFactory]:
    """Start a CDS server; keyword arguments override CdsSettings; ``fhir_base_url`` and ``fhir_allowlist``
    (comma-separated) are the FHIR servers it may call; ``state_url`` is RLS_SCREEN_STATE_URL."""
    servers: list[LiveServer] = []

    def start(
        *,
        fhir_base_url: str = "http://127.0.0.1:8080/fhir",
        fhir_allowlist: str = "",
        issuers: Path | None = None,
        state_url: str | None = None,
        **overrides: Any,
    ) -> tuple[LiveServer, Ehr]:
        server = LiveServer()
        servers.append(server)
        values: dict[str, Any] = {
            "public_url": server.base_url,
            "cds_trusted_issuers_file": issuers or issuers_file,
            "cds_feedback_db": tmp_path / f"cds-{len(servers)}.sqlite3",
            "cds_subject_salt": "test-salt",
            **overrides,
        }
        base_settings = Settings(
            FHIR_BASE_URL=fhir_base_url,
            fhir_allowlist=fhir_allowlist,
            state_dir=tmp_path,
            fhir_max_retries=0,
            state_url=state_url,
        )
        server.start(create_app(CdsSettings(**values), base_settings, knowledge=knowledge))
        return server, Ehr(server.base_url, es_key)

    yield start
    for server in servers:
        server.stop()
