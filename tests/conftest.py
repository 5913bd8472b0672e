"""Shared fixtures: the FHIR server for tests marked ``fhir``, and markers by folder.

Tests under tests/unit are pure (marker ``unit``); tests under tests/fhir talk to a real HAPI FHIR
server (marker ``fhir``). The server is the one answering at FHIR_BASE_URL; when none answers and the
URL is the local default, the session starts deploy/fhir-up.sh and stops it at the end.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

# browser, new_page, page, axe: one Chromium per test session; postgres_server, postgres_url, state_url
pytest_plugins = ["tests.support.browser", "tests.support.postgres"]

REPO = Path(__file__).resolve().parents[1]
DEFAULT_BASE_URL = "http://127.0.0.1:8080/fhir"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).relative_to(REPO).parts
        if "unit" in parts:
            item.add_marker(pytest.mark.unit)
        elif "net" in parts or "deploy" in parts:
            item.add_marker(pytest.mark.net)
        elif "fhir" in parts or "e2e" in parts:
            item.add_marker(pytest.mark.fhir)
        callspec = getattr(item, "callspec", None)
        if "postgres_server" in getattr(item, "fixturenames", ()) or (
            callspec is not None and callspec.params.get("state_url") == "postgresql"
        ):
            item.add_marker(pytest.mark.postgres)


def _answers(base_url: str) -> bool:
    try:
        return requests.get(f"{base_url}/metadata", timeout=(2, 10)).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture(scope="session")
def fhir_base_url() -> Iterator[str]:
    """A running FHIR R4 server: FHIR_BASE_URL if it answers, else the local HAPI started here."""
    base_url = os.environ.get("FHIR_BASE_URL", DEFAULT_BASE_URL).rstrip("/")
    if _answers(base_url):
        yield base_url
        return
    parsed = urlsplit(base_url)
    if parsed.hostname not in ("127.0.0.1", "localhost"):
        pytest.fail(f"no FHIR server answers at {base_url} and it is not the local server this suite can start")
    env = {**os.environ, "FHIR_PORT": str(parsed.port or 80)}
    subprocess.run([str(REPO / "deploy" / "fhir-up.sh")], check=True, env=env, timeout=900)
    try:
        yield base_url
    finally:
        subprocess.run([str(REPO / "deploy" / "fhir-down.sh")], check=False, env=env, timeout=120)


@pytest.fixture
def unique_prefix() -> str:
    """An id prefix no other test uses: tests share one server, so each test owns its ids."""
    return f"t{uuid.uuid4().hex[:10]}"
