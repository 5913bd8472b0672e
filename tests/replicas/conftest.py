"""Fixtures of the replica tests: the shared state backend, trusted issuers, and ``pair`` (two replicas + HAProxy).

``state_envs`` points the replicas at one shared state store, a parameter: ``sqlite-shared-file`` (one
state directory, so both processes open the same SQLite file in WAL mode) and ``postgresql``
(``RLS_SCREEN_STATE_URL`` on a fresh schema of the local PostgreSQL, tests/support/postgres.py, brought
up to date by ``rls-screen state migrate`` first, as the chart's init container does): the variant that
matters for a deployment on several hosts. ``pair`` starts two ``rls-screen serve``
processes on free ports, both with the balancer's URL as their public URL (the JWT ``aud``), and HAProxy
from deploy/lb-up.sh in front of them, and waits until HAProxy sees both up.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec
from tests.api.helpers import ES_KID, ISSUER, Ehr, SigningKey, jwk
from tests.replicas.cluster import Balancer, Replica, free_port

STATE_URL_ENV = "RLS_SCREEN_STATE_URL"


@pytest.fixture(scope="session")
def es_key() -> SigningKey:
    private = ec.generate_private_key(ec.SECP384R1())
    return SigningKey(ES_KID, "ES384", private, jwk(private.public_key(), ES_KID, "ES384"))


@pytest.fixture
def issuers_file(tmp_path: Path, es_key: SigningKey) -> Path:
    path = tmp_path / "trusted-issuers.json"
    path.write_text(json.dumps({ISSUER: {"jwks": {"keys": [es_key.jwk]}}}), encoding="utf-8")
    return path


@pytest.fixture(params=["sqlite-shared-file", "postgresql"])
def state_envs(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """Each replica's environment for one shared state store.

    sqlite-shared-file: one state directory for both (one SQLite file, WAL, on one host). postgresql: a
    fresh schema (tests/support/postgres.py) and a state directory of its own per replica, so whatever
    the replicas share can only have gone through PostgreSQL.
    """
    if request.param == "sqlite-shared-file":
        shared = {"RLS_SCREEN_STATE_DIR": str(tmp_path / "state")}
        return shared, dict(shared)
    url = str(request.getfixturevalue("postgres_url"))
    return (
        {"RLS_SCREEN_STATE_DIR": str(tmp_path / "state-a"), STATE_URL_ENV: url},
        {"RLS_SCREEN_STATE_DIR": str(tmp_path / "state-b"), STATE_URL_ENV: url},
    )


def replica_env(issuers_file: Path, public_url: str, **extra: str) -> dict[str, str]:
    """JWT verification on (ES384, one trusted issuer); the rest as a deployment sets it."""
    return {
        "RLS_SCREEN_PUBLIC_URL": public_url,
        "RLS_SCREEN_CDS_TRUSTED_ISSUERS_FILE": str(issuers_file),
        "RLS_SCREEN_CDS_SUBJECT_SALT": "replica-test-salt",
        "RLS_SCREEN_CDS_DEADLINE_MS": "10000",
        "RLS_SCREEN_LOG_FORMAT": "text",
        **extra,
    }


@dataclass
class Pair:
    a: Replica
    b: Replica
    balancer: Balancer
    ehr: Ehr
    """Sends to the balancer; its tokens' ``aud`` is the balancer's URL, the replicas' public URL."""

    def post_to(self, replica: Replica, path: str, body: object, *, token: str | None = None) -> requests.Response:
        """Straight to one replica, with a token for the public URL (as the balancer forwards it)."""
        headers = {"Authorization": f"Bearer {token or self.ehr.token(path)}", "Content-Type": "application/json"}
        return self.ehr.session.post(replica.url + path, data=json.dumps(body), headers=headers, timeout=60)

    def logs(self) -> str:
        parts = {"replica a": self.a.log(), "replica b": self.b.log(), "haproxy": self.balancer.log()}
        return "\n".join(f"--- {name}\n{text[-2000:]}" for name, text in parts.items())


@pytest.fixture
def replica_args() -> list[str]:
    """Extra ``rls-screen serve`` arguments of both replicas (a test parametrizes it to change them)."""
    return []


@pytest.fixture
def pair(
    tmp_path: Path,
    issuers_file: Path,
    es_key: SigningKey,
    state_envs: tuple[dict[str, str], dict[str, str]],
    replica_args: list[str],
) -> Iterator[Pair]:
    lb_port, port_a, port_b = free_port(), free_port(), free_port()
    balancer = Balancer(lb_port, [port_a, port_b], tmp_path / "lb")
    replicas = [
        Replica(
            port, {**replica_env(issuers_file, balancer.url), **state}, tmp_path / f"replica-{port}.log", replica_args
        )
        for port, state in zip((port_a, port_b), state_envs, strict=True)
    ]
    if STATE_URL_ENV in state_envs[0]:  # as the chart's init container does, before any replica starts
        subprocess.run(
            [sys.executable, "-m", "rls_screen.cli", "state", "migrate"],
            env={**os.environ, **state_envs[0]},
            check=True,
            capture_output=True,
            timeout=120,
        )
    try:
        for replica in replicas:
            replica.start()
        for replica in replicas:
            replica.wait_ready()
        balancer.start().wait_all_up()
        yield Pair(replicas[0], replicas[1], balancer, Ehr(balancer.url, es_key))
    finally:
        balancer.stop()
        for replica in replicas:
            replica.stop()
