"""Mounting the app in ``rls-screen serve``: off without a client id (then /app/* needs a CDS JWT like every
other path), on with one (then /app/* is signed in by SMART, and the CDS routes still need their JWT), and
start-up refused without RLS_SCREEN_PUBLIC_URL or an allowed authorization server."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from rls_screen.app.settings import AppSettings
from rls_screen.cds import create_app
from rls_screen.cds.settings import CdsSettings
from rls_screen.errors import ConfigurationError
from rls_screen.knowledge import Knowledge, load_knowledge
from rls_screen.settings import Settings
from tests.api.helpers import LiveServer

pytestmark = [pytest.mark.net]

AUTH = "http://127.0.0.1:9"  # never called by these tests


@pytest.fixture(scope="module")
def knowledge() -> Knowledge:
    return load_knowledge()


def settings(tmp_path: Path, public_url: str | None) -> tuple[CdsSettings, Settings]:
    issuers = tmp_path / "issuers.json"
    issuers.write_text(json.dumps({"https://ehr.example.org": {"jwks": {"keys": [{"kty": "oct", "k": "AA"}]}}}))
    cds = CdsSettings(public_url=public_url, cds_trusted_issuers_file=issuers, cds_feedback_db=tmp_path / "c.sqlite3")
    return cds, Settings(state_dir=tmp_path)


@pytest.fixture
def serve(tmp_path: Path, knowledge: Knowledge) -> Iterator[Callable[[AppSettings], str]]:
    servers: list[LiveServer] = []

    def start(app_settings: AppSettings) -> str:
        server = LiveServer()
        servers.append(server)
        cds, base = settings(tmp_path, server.base_url)
        server.start(create_app(cds, base, knowledge=knowledge, app_settings=app_settings))
        return server.base_url

    yield start
    for server in servers:
        server.stop()


def test_app_off_means_app_paths_need_a_cds_jwt(serve: Callable[[AppSettings], str]) -> None:
    base = serve(AppSettings())
    assert requests.get(f"{base}/app/launch", params={"iss": "x"}, timeout=10).status_code == 401


def test_app_on_opens_app_paths_only(serve: Callable[[AppSettings], str]) -> None:
    base = serve(AppSettings(client_id="app", auth_servers=AUTH))
    launch = requests.get(f"{base}/app/launch", timeout=10)
    assert launch.status_code == 400
    assert "the launch has no iss" in launch.text
    assert launch.headers["content-security-policy"].startswith("default-src 'none'")
    assert requests.get(f"{base}/cds-services", timeout=10).status_code == 401
    assert requests.get(f"{base}/application", timeout=10).status_code == 401


@pytest.mark.parametrize(
    ("public_url", "app_settings", "message"),
    [
        (None, AppSettings(client_id="app", auth_servers=AUTH), "RLS_SCREEN_PUBLIC_URL is required"),
        ("http://127.0.0.1:1", AppSettings(client_id="app"), "RLS_SCREEN_APP_AUTH_SERVERS is required"),
    ],
)
def test_app_on_refuses_to_start_half_configured(
    tmp_path: Path, knowledge: Knowledge, public_url: str | None, app_settings: AppSettings, message: str
) -> None:
    cds, base = settings(tmp_path, public_url)
    cds = cds.model_copy(update={"cds_dev_mode": True})
    with pytest.raises(ConfigurationError, match=message):
        create_app(cds, base, knowledge=knowledge, app_settings=app_settings)
